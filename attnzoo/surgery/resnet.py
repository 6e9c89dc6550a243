"""Hooks for timm's ResNet-family blocks (resnet, resnetd, resnext, wide_resnet, seresnet, ...).

The attention goes after the last BN of the residual branch, before the shortcut add: the placement of
the SE and CBAM papers, and the slot (``se``) timm's blocks already call. That BN absorbs the gain.
"""

from __future__ import annotations

from timm.models.resnet import BasicBlock, Bottleneck
from torch import nn

from attnzoo.surgery.registry import SurgeryHook, register_surgery, scale_


def _last_bn_hook(bn_name: str) -> SurgeryHook:
    def last_bn(block: nn.Module) -> nn.BatchNorm2d:
        return getattr(block, bn_name)

    def compensate(block: nn.Module, gain: float) -> None:
        bn = last_bn(block)
        scale_(bn.weight, bn.bias, by=1 / gain)

    return SurgeryHook(
        channels=lambda block: last_bn(block).num_features, compensate=compensate, slot_input_is_temporary=True
    )


register_surgery(BasicBlock, _last_bn_hook("bn2"))
register_surgery(Bottleneck, _last_bn_hook("bn3"))
