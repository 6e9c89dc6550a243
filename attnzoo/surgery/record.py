"""The surgery record kept on a model, so that it can be saved and rebuilt."""

from __future__ import annotations

from typing import Any

from torch import nn

SURGERY_ATTR = "attnzoo_surgery"


def surgery_record(model: nn.Module) -> list[dict[str, Any]]:
    """The surgery applied to ``model`` so far, as JSON-able operations (empty if none)."""
    return getattr(model, SURGERY_ATTR, [])


def record_surgery(model: nn.Module, op: dict[str, Any]) -> None:
    """Append ``op`` to the model's surgery record (a plain attribute, so not in the state dict)."""
    object.__setattr__(model, SURGERY_ATTR, [*surgery_record(model), op])
