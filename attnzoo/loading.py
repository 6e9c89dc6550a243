"""A model, or its weights, from wherever a user names it: a timm or attnzoo name, ``hf-hub:org/repo``,
or a checkpoint file.

This is the one layer that composes :mod:`attnzoo.models` (timm names, surgery, weight files) with
:mod:`attnzoo.hub` (Hub repos): the hub builds on models, so models cannot import it, and whatever
loads from both sits here, above them. Training, evaluation and the public :func:`attnzoo.build_model` load
through here.
"""

from __future__ import annotations

import inspect
import json
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from attnzoo import hub, models
from attnzoo.errors import CheckpointError
from attnzoo.hub_client import HUB_PREFIX
from attnzoo.models import (
    apply_build_surgery,
    check_model_name,
    load_state_dict_strict,
    model_from_config,
    read_weights,
)
from attnzoo.models.config_check import check_sizes
from attnzoo.models.io import CONFIG_KEY

_SURGERY_OPTIONS = frozenset(inspect.signature(apply_build_surgery).parameters) - {"model"}


def build_model(
    name: str,
    *,
    num_classes: int | None = None,
    in_chans: int | None = None,
    pretrained: bool = False,
    **options: Any,
) -> nn.Module:
    """:func:`attnzoo.models.build_model`, where ``name`` may also be ``hf-hub:org/repo[@revision]``.

    A Hub name loads with attnzoo's loader (:func:`attnzoo.hub.load_model`: safetensors only, any
    recorded surgery), then takes the surgery ``options`` (``attention``, ``stages``, ``preserve``,
    ``attn_kwargs``, ``small_input``, ``stem_stride``). With ``pretrained=True, attention=...,
    preserve=True`` a backbone's weights are kept and the attention starts as the identity. Other timm
    keyword arguments hand a Hub name to timm's own loader, which alone takes them.
    """
    if not name.startswith(HUB_PREFIX) or not _SURGERY_OPTIONS.issuperset(options):
        return models.build_model(name, num_classes=num_classes, in_chans=in_chans, pretrained=pretrained, **options)
    check_sizes(num_classes, in_chans)
    model = hub.load_model(name, num_classes=num_classes, in_chans=in_chans, pretrained=pretrained)
    return apply_build_surgery(model, **options)


def read_state_dict(source: str) -> dict[str, torch.Tensor]:
    """The weights in a safetensors file or an ``hf-hub:org/name[@revision]`` repo (safetensors only)."""
    if source.startswith(HUB_PREFIX):
        return hub.load_state_dict(source)
    return read_weights(source)[0]


def _arch(name: str) -> str:
    return name.split(".", 1)[0]


def load_eval_model(
    name: str,
    checkpoint: str | os.PathLike | None = None,
    *,
    num_classes: int | None = None,
    in_chans: int | None = None,
) -> nn.Module:
    """Build model ``name`` and load its weights, in eval mode.

    ``checkpoint`` is a safetensors file (a run's ``best.safetensors``, or any state dict of ``name``) or
    ``hf-hub:org/repo``; without it a name with a pretrained tag loads timm's weights and any other name is
    evaluated untrained (cost only). An attnzoo checkpoint carries its model config (small-input stem,
    in_chans, head), so the model is rebuilt from that and must be the architecture named. ``num_classes``
    resets the head when it differs from the weights' one.
    """
    if name.startswith(HUB_PREFIX):
        model = hub.load_model(name, num_classes=num_classes, in_chans=in_chans)
    elif checkpoint is not None and str(checkpoint).startswith(HUB_PREFIX):
        check_model_name(name)
        model = hub.load_model(str(checkpoint), num_classes=num_classes, in_chans=in_chans)
        _check_architecture(model.pretrained_cfg.get("architecture", ""), name, str(checkpoint))
    elif checkpoint is None and "." in name:
        model = build_model(name, pretrained=True, in_chans=in_chans)
    elif checkpoint is not None:
        check_model_name(name)
        model = _from_file(name, Path(checkpoint), num_classes=num_classes, in_chans=in_chans)
    else:
        model = build_model(name, num_classes=num_classes, in_chans=in_chans)
    if num_classes is not None and model.num_classes != num_classes:
        model.reset_classifier(num_classes)
    return model.eval()


def _check_architecture(found: str, name: str, source: str) -> None:
    if found and _arch(found) != _arch(name):
        raise CheckpointError(
            f"{source} holds a {found} model, which does not fit {name}; name the model {found}, e.g. "
            f"`attnzoo eval {found} --checkpoint {source}`"
        )


def _from_file(name: str, path: Path, *, num_classes: int | None, in_chans: int | None) -> nn.Module:
    state_dict, metadata = read_weights(path)
    if CONFIG_KEY in metadata:
        config = json.loads(metadata[CONFIG_KEY])
        _check_architecture(config["architecture"], name, str(path))
        model = model_from_config(config)
    else:
        model = build_model(name, num_classes=num_classes, in_chans=in_chans)
    load_state_dict_strict(model, state_dict, str(path))
    return model
