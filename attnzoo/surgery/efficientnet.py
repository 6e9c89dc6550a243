"""Hooks for timm's EfficientNet-family blocks (mobilenetv1/v2/v3, efficientnet, mixnet, ...).

The attention fills the blocks' ``se`` slot in the expanded (depthwise) channels, replacing any SE the
model had. As timm's own EfficientNet SE does, the reduction is relative to the block's *input* channels
(``rd_ratio`` of 1/4 by default), not the expanded ones. The activation before the slot may be ReLU6 or
hard-swish (not positively homogeneous), so the gain is absorbed by the projection conv after it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

# timm has no public name for its EfficientNet block classes; this is where its own efficientnet.py gets them.
from timm.models._efficientnet_blocks import DepthwiseSeparableConv, EdgeResidual, InvertedResidual
from torch import nn

from attnzoo.surgery.registry import SurgeryHook, register_surgery, scale_

EFFICIENTNET_RD_RATIO = 1 / 4


def _hook(input_conv: str, output_conv: str) -> SurgeryHook:
    def in_channels(block: nn.Module) -> int:
        return getattr(block, input_conv).in_channels

    def default_kwargs(block: nn.Module, kwargs: dict[str, Any]) -> dict[str, Any]:
        ratio = kwargs.get("rd_ratio", EFFICIENTNET_RD_RATIO)
        return {"rd_channels": max(1, round(in_channels(block) * ratio))}

    def compensate(block: nn.Module, gain: float) -> None:
        scale_(getattr(block, output_conv).weight, by=1 / gain)

    channels: Callable[[nn.Module], int] = lambda block: getattr(block, output_conv).in_channels
    return SurgeryHook(
        channels=channels, compensate=compensate, default_kwargs=default_kwargs, slot_input_is_temporary=True
    )


register_surgery(DepthwiseSeparableConv, _hook("conv_dw", "conv_pw"))
register_surgery(InvertedResidual, _hook("conv_pw", "conv_pwl"))
register_surgery(EdgeResidual, _hook("conv_exp", "conv_pwl"))
