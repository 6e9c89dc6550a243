"""Per-block-type surgery hooks.

A hook says, for one block class, which slot holds the attention, how many channels it sees, and which
neighbouring linear layer absorbs the attention's constant gain when the block's function must be kept
(:mod:`attnzoo.attention.identity`). Third parties register hooks for their own block types with
:func:`register_surgery`; :func:`attnzoo.inject` then works on any model built from them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from torch import nn


@dataclass(frozen=True)
class SurgeryHook:
    """How attention enters one block type.

    Attributes:
        channels: channels of the feature map at the slot.
        compensate: multiplies the block's function before the slot by ``1 / gain`` (or, where an
            activation that is not positively homogeneous sits between, the layer after the slot), so
            that an attention initialised to ``x * gain`` leaves the block's output unchanged.
        slot: attribute of the block that the block's forward already calls (timm's blocks call ``se``).
        default_kwargs: attention kwargs this block type implies given the user's kwargs, e.g. a reduction
            relative to the block's input channels; the user's kwargs take precedence over them.
        slot_input_is_temporary: the block feeds the slot a tensor it never reads again (true of timm's
            ResNet and EfficientNet blocks), so the attention may gate it in place at inference
            (:mod:`attnzoo.attention.fused`). Leave it False unless the block's forward guarantees it.
        gated_tail: a subclass of the block type with the same modules whose forward can take the
            attention's gates (``fusable_gates``) into its residual add and activation
            (:mod:`attnzoo.surgery.resnet`); surgery gives a block of exactly the base type this class
            when the attention offers its gates.
    """

    channels: Callable[[nn.Module], int]
    compensate: Callable[[nn.Module, float], None]
    slot: str = "se"
    default_kwargs: Callable[[nn.Module, dict[str, Any]], dict[str, Any]] = field(default=lambda block, kwargs: {})
    slot_input_is_temporary: bool = False
    gated_tail: type[nn.Module] | None = None


_HOOKS: dict[type[nn.Module], SurgeryHook] = {}


def register_surgery(block_type: type[nn.Module], hook: SurgeryHook) -> None:
    """Register ``hook`` for ``block_type`` (and its subclasses without a hook of their own)."""
    _HOOKS[block_type] = hook


def find_hook(block: nn.Module) -> SurgeryHook | None:
    """The hook of the nearest class in ``block``'s MRO that has one."""
    for cls in type(block).__mro__:
        if cls in _HOOKS:
            return _HOOKS[cls]
    return None


def supported_block_types() -> list[str]:
    """Names of the block classes that have hooks, for error messages."""
    return sorted(cls.__name__ for cls in _HOOKS)


def scale_(*params: nn.Parameter | None, by: float) -> None:
    """Multiply parameters in place (a power-of-two factor keeps this exact)."""
    for param in params:
        if param is not None:
            param.data.mul_(by)
