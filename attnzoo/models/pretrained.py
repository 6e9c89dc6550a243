"""Pretrained weights for registered names: timm's ``load_pretrained``, with the Hub file fetched by attnzoo.

timm's own Hub path falls back from ``model.safetensors`` to ``pytorch_model.bin`` (a pickle) when the
first is missing, waits through the client's retries twice (about 50 s) when the Hub cannot be reached,
and ends in the client's multi-line traceback. Fetching the cfg's file through :mod:`attnzoo.hub_client`
first and handing timm the local path keeps everything else timm's (head reset for a new
``num_classes``, first-convolution adaptation for a new ``in_chans``, ``features_only``), while a missing
repo, a pickle-only repo, an unreachable Hub or a cold offline cache fail in seconds, in one line.
"""

from __future__ import annotations

from typing import Any

from timm.models import load_pretrained
from torch import nn

from attnzoo.errors import HubError
from attnzoo.hub_client import WEIGHTS_NAME, split_hub_name, weights_file


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
    fetched by :func:`local_weights_cfg` (``model.pretrained_cfg`` keeps naming the Hub repo)."""
    load_pretrained(model, local_weights_cfg(pretrained_cfg, cache_dir), num_classes=num_classes,
                    in_chans=in_chans, strict=strict)
