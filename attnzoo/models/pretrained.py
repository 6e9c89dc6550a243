"""Pretrained weights for registered names: timm's ``load_pretrained``, with the Hub file fetched by attnzoo.

timm's own Hub path falls back from ``model.safetensors`` to ``pytorch_model.bin`` (a pickle) when the
first is missing, waits through the client's retries twice (about 50 s) when the Hub cannot be reached,
and ends in the client's multi-line traceback. Fetching the cfg's file through :mod:`attnzoo.hub_client`
first and handing timm the local path keeps everything else timm's (head reset for a new
``num_classes``, first-convolution adaptation for a new ``in_chans``, ``features_only``), while a missing
repo, a pickle-only repo, an unreachable Hub or a cold offline cache fail in seconds, in one line. The
file itself is read by :func:`attnzoo.models.io.read_weights` (safetensors only) and handed to timm as a
state dict, so a missing, corrupt or ill-fitting file (the Hub's or a ``pretrained_cfg_overlay`` ``file``)
is a one-line :class:`CheckpointError` too, not timm's bare ``FileNotFoundError`` or torch's key listing.
"""

from __future__ import annotations

from typing import Any

from timm.models import FeatureDictNet, load_pretrained
from torch import nn

from attnzoo.errors import AttnzooError, CheckpointError, HubError
from attnzoo.hub_client import WEIGHTS_NAME, split_hub_name, weights_file

# timm reads these sources itself: a local-dir folder (its config.json names the file), a Hub id
_TIMM_READ_SOURCES = ("local-dir", "hf-hub")


def local_weights_cfg(pretrained_cfg: dict[str, Any], cache_dir: str | None = None) -> dict[str, Any]:
    """A copy of ``pretrained_cfg`` whose Hub weights are downloaded and named as a local ``file``.

    A cfg naming a local ``file`` or a ``state_dict`` (e.g. from ``pretrained_cfg_overlay``) comes back
    unchanged; one naming ``hf_hub_id`` has its safetensors file (``hf_hub_filename``, default
    ``model.safetensors``) downloaded first, never a pickle. Hub problems raise :class:`HubError` naming
    the model's tag.
    """
    cfg = dict(pretrained_cfg)
    if cfg.get("hf_hub_id") and not (cfg.get("file") or cfg.get("state_dict")):
        repo_id, revision = split_hub_name(cfg["hf_hub_id"])
        try:
            path, _ = weights_file(repo_id, revision, filename=cfg.get("hf_hub_filename") or WEIGHTS_NAME,
                                   cache_dir=cache_dir)
        except HubError as err:
            name = ".".join(filter(None, (cfg.get("architecture"), cfg.get("tag"))))
            raise HubError(f"pretrained weights of {name or repo_id}: {err}") from None
        cfg.update(file=str(path), source="")  # timm reads a local file before any Hub id
    return cfg


def load_pretrained_weights(
    model: nn.Module,
    pretrained_cfg: dict[str, Any],
    *,
    num_classes: int,
    in_chans: int,
    cache_dir: str | None = None,
    strict: bool = True,
) -> None:
    """Load ``pretrained_cfg``'s weights into ``model`` with ``timm.models.load_pretrained``, Hub files
    fetched by :func:`local_weights_cfg` (``model.pretrained_cfg`` keeps naming the Hub repo); a file that is
    missing, not safetensors, or does not fit ``model`` raises :class:`CheckpointError` in one line."""
    # io builds models from configs through the registry, which imports this module: import it when loading
    from attnzoo.models.io import mismatch_summary, read_weights

    cfg = local_weights_cfg(pretrained_cfg, cache_dir)
    file, state_dict = cfg.get("file"), cfg.get("state_dict")
    if file and state_dict is None and cfg.get("source", "") not in _TIMM_READ_SOURCES:
        state_dict, _ = read_weights(file)  # one-line CheckpointError if missing or not safetensors
        cfg["state_dict"] = state_dict
    if isinstance(model, FeatureDictNet) and isinstance(state_dict, dict):
        cfg.update(_as_feature_wrapper_names(model, state_dict, cfg.get("first_conv")))
    try:
        load_pretrained(model, cfg, num_classes=num_classes, in_chans=in_chans, strict=strict)
    except AttnzooError:
        raise
    except RuntimeError as err:  # torch's load_state_dict lists every key over many lines
        name = ".".join(filter(None, (cfg.get("architecture"), cfg.get("tag"))))
        parts = mismatch_summary(model.state_dict(), state_dict) if isinstance(state_dict, dict) else []
        detail = "; ".join(parts) or str(err).strip().splitlines()[0]
        raise CheckpointError(
            f"pretrained weights of {name} ({file or cfg.get('hf_hub_id')}) do not fit the model: {detail}; "
            "check that the weights are this model's, with the num_classes and in_chans they were saved with"
        ) from None


def _flattened(name: str, names: set[str]) -> str:
    """``name`` as timm's feature wrapper calls it: it flattens nested sequentials (``stages.0`` ->
    ``stages_0``) when the model's feature config asks for it; other names are unchanged."""
    head, _, rest = name.partition(".")
    sub, _, rest = rest.partition(".")
    flat = f"{head}_{sub}" + (f".{rest}" if rest else "")
    return flat if name not in names and flat in names else name


def _as_feature_wrapper_names(model: nn.Module, state_dict: dict, first_conv: Any) -> dict[str, Any]:
    """The whole model's weights and first conv named as in ``model``, a ``features_only`` wrapper."""
    keys, modules = set(model.state_dict()), {name for name, _ in model.named_modules()}
    convs = [first_conv] if isinstance(first_conv, str) else list(first_conv or ())
    return dict(
        state_dict={_flattened(key, keys): value for key, value in state_dict.items()},
        first_conv=[_flattened(conv, modules) for conv in convs] if first_conv else first_conv,
    )
