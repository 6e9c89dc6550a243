"""Hooks for timm's ResNet-family blocks (resnet, resnetd, resnext, wide_resnet, seresnet, ...).

The attention goes after the last BN of the residual branch, before the shortcut add: the placement of
the SE and CBAM papers, and the slot (``se``) timm's blocks already call. That BN absorbs the gain.

Blocks that receive an attention offering ``fusable_gates`` (SE, CBAM and its parts) become
:class:`GatedTailBasicBlock` / :class:`GatedTailBottleneck`: the same modules and state dict, timm's
forward, plus an eager inference route that applies the attention's gates, the shortcut add and the ReLU
in one pass over the feature map (:func:`gated_residual_tail`) where timm's forward makes three (gating,
add, ReLU). Tracers, exporters and compilers see timm's forward.
"""

from __future__ import annotations

import torch
from timm.models.resnet import BasicBlock, Bottleneck
from torch import nn

from attnzoo.attention.fused import runs_eagerly, watched
from attnzoo.attention.kernels import fused_ops
from attnzoo.surgery.registry import SurgeryHook, register_surgery, scale_


def gated_residual_tail(block: nn.Module, x: torch.Tensor, block_input: torch.Tensor, act: nn.Module) -> torch.Tensor | None:
    """``act(se(x) + shortcut)`` in one pass when the block is in eval mode, its activation a ReLU and its
    attention hands over its gates (``fusable_gates``); None where the block must run its own tail."""
    if block.training or type(act) is not nn.ReLU or not hasattr(block.se, "fusable_gates"):
        return None
    if watched(act) or (block.drop_path is not None and watched(block.drop_path)):
        return None  # the one pass would skip their hooks (feature capture)
    gates = block.se.fusable_gates(x)
    if gates is None:
        return None
    shortcut = block_input if block.downsample is None else block.downsample(block_input)
    if shortcut.shape != x.shape or shortcut.dtype != x.dtype or not shortcut.is_contiguous():
        channel_gate, spatial_gate = gates
        x = x.mul_(channel_gate.view(*x.shape[:2], 1, 1))
        return act((x if spatial_gate is None else x.mul_(spatial_gate)).add_(shortcut))
    return fused_ops().gate_add_relu_(x, *gates, shortcut)


class GatedTail:
    """The tail timm's ``BasicBlock`` and ``Bottleneck`` share after their last BN (attention, drop path,
    shortcut add, last activation), with the one-pass gated tail in eager inference (module docstring).

    The last activation is ``act2`` in a BasicBlock and ``act3`` in a Bottleneck (which has an ``act2`` too).
    TorchScript cannot take a module as an argument, but it decides ``hasattr(self, ...)`` while compiling,
    so each block compiles the one call it makes.
    """

    def _tail(self, x: torch.Tensor, shortcut: torch.Tensor) -> torch.Tensor:
        if not torch.jit.is_scripting() and runs_eagerly(x):
            tail = gated_residual_tail(self, x, shortcut, self.act3 if hasattr(self, "act3") else self.act2)
            if tail is not None:
                return tail

        if self.se is not None:
            x = self.se(x)
        if self.drop_path is not None:
            x = self.drop_path(x)
        if self.downsample is not None:
            shortcut = self.downsample(shortcut)
        x += shortcut
        if hasattr(self, "act3"):
            return self.act3(x)
        return self.act2(x)


# timm's class first: surgery swaps only blocks whose class is the gated tail's __base__
class GatedTailBasicBlock(BasicBlock, GatedTail):
    """timm's ``BasicBlock`` with the one-pass gated tail in eager inference (module docstring)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x

        x = self.conv1(x)
        x = self.bn1(x)
        x = self.drop_block(x)
        x = self.act1(x)
        x = self.aa(x)

        x = self.conv2(x)
        x = self.bn2(x)
        return self._tail(x, shortcut)


class GatedTailBottleneck(Bottleneck, GatedTail):
    """timm's ``Bottleneck`` with the one-pass gated tail in eager inference (module docstring)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x

        x = self.conv1(x)
        x = self.bn1(x)
        x = self.act1(x)

        x = self.conv2(x)
        x = self.bn2(x)
        x = self.drop_block(x)
        x = self.act2(x)
        x = self.aa(x)

        x = self.conv3(x)
        x = self.bn3(x)
        return self._tail(x, shortcut)


def _last_bn_hook(bn_name: str, gated_tail: type[nn.Module]) -> SurgeryHook:
    def last_bn(block: nn.Module) -> nn.BatchNorm2d:
        return getattr(block, bn_name)

    def compensate(block: nn.Module, gain: float) -> None:
        bn = last_bn(block)
        scale_(bn.weight, bn.bias, by=1 / gain)

    return SurgeryHook(
        channels=lambda block: last_bn(block).num_features,
        compensate=compensate,
        slot_input_is_temporary=True,
        gated_tail=gated_tail,
    )


register_surgery(BasicBlock, _last_bn_hook("bn2", GatedTailBasicBlock))
register_surgery(Bottleneck, _last_bn_hook("bn3", GatedTailBottleneck))
