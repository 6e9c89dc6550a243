"""Import: ``hf-hub:org/name[@revision]`` -> a built model with the Hub weights, safetensors only.

Loading never unpickles by default. A repo that only has ``pytorch_model.bin`` (or ``.pth``) is refused
with a :class:`~attnzoo.errors.HubError`; ``allow_pickle=True`` opts in, and even then ``torch.load`` runs
with ``weights_only=True``. The model is rebuilt at the checkpoint's own shape (from attnzoo's surgery
record when the config has one, else from timm's ``architecture`` + ``model_args``), loaded strictly, then
adapted the way timm adapts pretrained weights: a fresh classifier for a new ``num_classes``, the first
convolution's weights folded or repeated for a new ``in_chans``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import timm
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from timm.models import adapt_input_conv
from torch import nn

from attnzoo.errors import AttnzooError, CheckpointError, HubError, UnknownModelError
from attnzoo.hub_client import HUB_PREFIX, check_revision, download, split_hub_name, weights_file
from attnzoo.models import load_state_dict_strict, model_from_config
from attnzoo.models.config_check import check_sizes


def _repo(name: str, revision: str | None) -> tuple[str, str | None]:
    repo_id, name_revision = split_hub_name(name)
    check_revision(revision)
    if revision and name_revision and revision != name_revision:
        raise HubError(f"{name!r} names revision {name_revision!r} but revision={revision!r} was passed; give one")
    return repo_id, revision or name_revision


def _where(repo_id: str, revision: str | None) -> str:
    return f"{HUB_PREFIX}{repo_id}" + (f"@{revision}" if revision else "")


def load_config(name: str, revision: str | None = None) -> dict[str, Any]:
    """The repo's ``config.json`` (timm's Hub format, plus attnzoo's ``attnzoo`` record when present)."""
    repo_id, revision = _repo(name, revision)
    path = download(repo_id, "config.json", revision)
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CheckpointError(f"config.json of {_where(repo_id, revision)} is not valid JSON ({err})") from None
    if not isinstance(config, dict) or "architecture" not in config:
        raise CheckpointError(
            f"config.json of {_where(repo_id, revision)} names no architecture, so it is not a timm model repo"
        )
    return config


def load_state_dict(name: str, revision: str | None = None, *, allow_pickle: bool = False) -> dict[str, torch.Tensor]:
    """The repo's weights as a CPU state dict (``model.safetensors``; pickles only with ``allow_pickle``)."""
    repo_id, revision = _repo(name, revision)
    path, pickled = weights_file(repo_id, revision, allow_pickle=allow_pickle)
    where = f"{path.name} of {_where(repo_id, revision)}"
    if pickled:
        try:
            return torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:  # torch raises several types for corrupt or unsafe pickles
            raise CheckpointError(f"{where} cannot be loaded safely ({str(err).splitlines()[0]})") from None
    try:
        return load_file(path, device="cpu")
    except (SafetensorError, OSError, ValueError) as err:
        raise CheckpointError(
            f"{where} is not a valid safetensors file ({str(err).splitlines()[0]}); the upload is corrupt or "
            "truncated: push it again, or delete the cached copy and download again"
        ) from None


def _skeleton(config: dict[str, Any], where: str, **overrides: int | None) -> nn.Module:
    """An untrained model as the config describes it; ``overrides`` (num_classes, in_chans) if not None."""
    overrides = {k: v for k, v in overrides.items() if v is not None}
    if "attnzoo" in config:
        try:
            return model_from_config({**config["attnzoo"], **overrides})
        except AttnzooError as err:
            raise type(err)(f"config.json of {where}: {err}") from None
    architecture = config["architecture"]
    if not timm.is_model(architecture):
        raise UnknownModelError(
            f"config.json of {where} names architecture {architecture!r}, which neither timm {timm.__version__} "
            "nor attnzoo knows; upgrade timm/attnzoo or check the repo"
        )
    model_args = {"num_classes": config.get("num_classes"), **(config.get("model_args") or {}), **overrides}
    check_sizes(model_args.get("num_classes"), model_args.get("in_chans"), f"config.json of {where}")
    return timm.create_model(architecture, pretrained=False, **model_args)


def _in_chans(model: nn.Module) -> int:
    return next(m for m in model.modules() if isinstance(m, nn.Conv2d)).in_channels


def _adapt_in_chans(model: nn.Module, in_chans: int, first_conv: str | None, where: str) -> None:
    try:
        conv = model.get_submodule(first_conv) if first_conv else None
    except AttributeError:
        conv = None
    if not isinstance(conv, nn.Conv2d):
        raise CheckpointError(
            f"cannot adapt {where} to in_chans={in_chans}: its pretrained_cfg names no first convolution "
            f"(first_conv={first_conv!r}); use the checkpoint's in_chans"
        )
    conv.weight = nn.Parameter(adapt_input_conv(in_chans, conv.weight.detach(), base_chans=conv.in_channels))
    conv.in_channels = in_chans


def load_model(
    name: str,
    *,
    revision: str | None = None,
    num_classes: int | None = None,
    in_chans: int | None = None,
    pretrained: bool = True,
    allow_pickle: bool = False,
) -> nn.Module:
    """Build the model published at ``hf-hub:org/name[@revision]``, with its weights if ``pretrained``.

    ``num_classes`` / ``in_chans`` different from the checkpoint's give a fresh classifier / an adapted
    first convolution, as ``timm.create_model(..., pretrained=True)`` does; everything else loads strictly.
    Unlike timm's own ``hf-hub:`` loading, this reads attnzoo's surgery record, so any surgery loads.
    """
    repo_id, revision = _repo(name, revision)
    where = _where(repo_id, revision)
    config = load_config(repo_id, revision)
    pretrained_cfg = dict(config.get("pretrained_cfg") or {})
    pretrained_cfg.update(
        architecture=config.get("attnzoo", config)["architecture"],
        hf_hub_id=f"{repo_id}@{revision}" if revision else repo_id,
        source="hf-hub",
    )
    if not pretrained:
        model = _skeleton(config, where, num_classes=num_classes, in_chans=in_chans)
    else:
        model = _skeleton(config, where)
        load_state_dict_strict(model, load_state_dict(repo_id, revision, allow_pickle=allow_pickle), where)
        if in_chans is not None and in_chans != _in_chans(model):
            _adapt_in_chans(model, in_chans, pretrained_cfg.get("first_conv"), where)
        if num_classes is not None and num_classes != model.num_classes:
            model.reset_classifier(num_classes)
    if in_chans is not None and "input_size" in pretrained_cfg:
        pretrained_cfg["input_size"] = (in_chans, *pretrained_cfg["input_size"][1:])
    model.pretrained_cfg = model.default_cfg = pretrained_cfg
    return model
