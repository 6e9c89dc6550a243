"""Hooks for timm's ResNet-family blocks (resnet, resnetd, resnext, wide_resnet, seresnet, ...).

The attention goes after the last BN of the residual branch, before the shortcut add: the placement of
the SE and CBAM papers, and the slot (``se``) timm's blocks already call. That BN absorbs the gain.

Blocks that receive an attention offering ``fusable_gates`` (SE, CBAM and its parts) become
:class:`GatedTailBasicBlock` / :class:`GatedTailBottleneck`: the same modules and state dict, timm's
forward, plus eager inference routes that apply the attention's gates, the shortcut add and the ReLU in
one pass over the feature map (:func:`gated_residual_tail`) where timm's forward makes three (gating,
add, ReLU), and for SE and CBAM fold the last BN in as well (:func:`batch_norm_folded_tail`). FX, TorchScript and
``torch.jit.trace`` (ONNX) see timm's forward; so do ``torch.compile`` and ``torch.export``, except in a
Bottleneck with SE, whose descriptor they compute from the last convolution's input where that reads less
(:func:`gated_through_pointwise_conv`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from timm.models.resnet import BasicBlock, Bottleneck
from torch import nn
from torch.fx.experimental.symbolic_shapes import statically_known_true

from attnzoo.attention.fused import runs_eagerly, watched, watched_globally
from attnzoo.attention.se import descriptor_linear, pointwise
from attnzoo.attention.kernels import fused_ops
from attnzoo.surgery.registry import SurgeryHook, register_surgery, scale_


def one_pass_fits(block: nn.Module, x: torch.Tensor, shortcut: torch.Tensor, act: nn.Module) -> bool:
    """Whether the block's tail may be one pass over ``x``: eval mode, a ReLU last, a shortcut the kernels
    add as it is, and no hook watching the activation or drop path (the pass would skip their hooks), nor a
    drop path left in train mode (stochastic depth at test time: the pass has no drop path)."""
    if block.training or type(act) is not nn.ReLU or watched(act):
        return False
    if shortcut.shape != x.shape or shortcut.dtype != x.dtype or not shortcut.is_contiguous():
        return False
    return block.drop_path is None or not (block.drop_path.training or watched(block.drop_path))


def batch_norm_folded_tail(
    block: nn.Module, x: torch.Tensor, shortcut: torch.Tensor, conv: nn.Module, bn: nn.Module, act: nn.Module
) -> torch.Tensor | None:
    """``act(se(bn(x)) + shortcut)`` from the last convolution's output ``x`` in one C++ call with the eval
    BatchNorm folded in, written over ``x``, where the attention offers it (``batch_norm_tail``: SE, CBAM); None
    where the block must run its BN and then its gated tail. A hook on ``conv`` may keep ``x``: then no."""
    if not hasattr(block.se, "batch_norm_tail") or not one_pass_fits(block, x, shortcut, act):
        return None
    if type(bn) is not nn.BatchNorm2d or bn.training or not bn.track_running_stats or watched(bn) or watched(conv):
        return None
    return block.se.batch_norm_tail(x, bn, shortcut)


def gated_residual_tail(block: nn.Module, x: torch.Tensor, shortcut: torch.Tensor, act: nn.Module) -> torch.Tensor | None:
    """``act(se(x) + shortcut)`` in one pass where the attention hands over its gates (``fusable_gates``);
    None where the block must run its own tail."""
    if not hasattr(block.se, "fusable_gates") or not one_pass_fits(block, x, shortcut, act):
        return None
    gates = block.se.fusable_gates(x)
    if gates is None:
        return None
    return fused_ops().gate_add_relu_(x, *gates, shortcut)


def gated_through_pointwise_conv(block: nn.Module, x: torch.Tensor, conv: nn.Module, bn: nn.Module) -> torch.Tensor | None:
    """``se(bn(conv(x)))`` with SE's descriptor, the mean of ``bn(conv(x))`` over positions, computed from the
    convolution's input ``x`` where that reads less; None where the block must run its attention on
    ``bn(conv(x))`` itself.

    Compiled graphs take this route. A 1x1 stride-1 convolution and an eval BatchNorm are the same affine
    map at every position, so the mean commutes with them: ``bn(conv(mean(x)))``. Pooling ``x`` (a
    Bottleneck's last convolution reads a quarter of the channels it writes) replaces a pass over the
    convolution's output, but projecting the mean reads the convolution's weights again, so small maps pool
    the output (:func:`pooling_the_input_reads_less`). Either way SE's MLP runs on vectors
    (:meth:`~attnzoo.attention.se.ChannelExcitation.mlp`), and inductor fuses the gating with the BatchNorm,
    the shortcut add and the ReLU as it does for the plain block. The sums run in another order, so values
    agree to float rounding.
    Steps aside where a hook watches the attention (it would not be called), the convolution or the BatchNorm
    (what a forward hook returns would not reach the descriptor, nor a backward hook see the gradient through
    it), or every module (:func:`~attnzoo.attention.fused.watched_globally`), for an attention gated by more
    than the mean (``gate_from_mean``: SE), and for a convolution or BatchNorm this identity does not hold for.
    """
    se = block.se
    if not hasattr(se, "gate_from_mean") or watched(se) or watched_globally() or not se.pointwise_mlp():
        return None
    if not (pointwise(conv) and conv.stride == (1, 1)) or watched(conv) or watched(bn):
        return None
    if type(bn) is not nn.BatchNorm2d or bn.training or not bn.track_running_stats:
        return None
    out = bn(conv(x))
    if pooling_the_input_reads_less(x, conv):
        projected = descriptor_linear(x.mean((2, 3)), conv.weight.flatten(1), conv.bias)
        mean = F.batch_norm(projected, bn.running_mean, bn.running_var, bn.weight, bn.bias, False, 0.0, bn.eps)
    else:
        mean = out.mean((2, 3))
    return out * se.gate_from_mean(mean)[:, :, None, None]


def pooling_the_input_reads_less(x: torch.Tensor, conv: nn.Conv2d) -> bool:
    """Whether pooling the convolution's input and projecting the mean reads fewer elements than pooling
    its output. The projection reads the convolution's weights again, which outweigh a small feature map:
    at batch 1 a ResNet-50's last two stages pool their output. Decided from shapes without adding a guard:
    where the batch size is unknown while compiling (``dynamic=True``, ``torch.export`` with a dynamic
    batch), the input is pooled only if that reads less at every batch size the graph allows."""
    read_before = x.numel() + conv.weight.numel()
    read_after = x.shape[0] * conv.out_channels * x.shape[2] * x.shape[3]
    return statically_known_true(read_before < read_after)


class GatedTail:
    """The tail timm's ``BasicBlock`` and ``Bottleneck`` share after their last convolution (last BN,
    attention, drop path, shortcut add, last activation), with the one-pass routes of eager inference
    (module docstring). The shortcut's downsample runs first, so each route receives the shortcut to add.

    The last BN and activation are ``bn2``/``act2`` in a BasicBlock and ``bn3``/``act3`` in a Bottleneck
    (which has an ``act2`` too). TorchScript cannot take a module as an argument, but it decides
    ``hasattr(self, ...)`` while compiling, so each block compiles the one call it makes.
    """

    def _tail(self, x: torch.Tensor, block_input: torch.Tensor) -> torch.Tensor:
        shortcut = self._shortcut(block_input)
        if not torch.jit.is_scripting() and runs_eagerly(x):
            if hasattr(self, "act3"):
                tail = batch_norm_folded_tail(self, x, shortcut, self.conv3, self.bn3, self.act3)
            else:
                tail = batch_norm_folded_tail(self, x, shortcut, self.conv2, self.bn2, self.act2)
            if tail is not None:
                return tail
        if hasattr(self, "act3"):
            x = self.bn3(x)
        else:
            x = self.bn2(x)

        if not torch.jit.is_scripting() and runs_eagerly(x):
            tail = gated_residual_tail(self, x, shortcut, self.act3 if hasattr(self, "act3") else self.act2)
            if tail is not None:
                return tail
        if self.se is not None:
            x = self.se(x)
        return self._add_shortcut(x, shortcut)

    def _shortcut(self, block_input: torch.Tensor) -> torch.Tensor:
        if self.downsample is not None:
            return self.downsample(block_input)
        return block_input

    def _add_shortcut(self, x: torch.Tensor, shortcut: torch.Tensor) -> torch.Tensor:
        """Drop path, shortcut add and last activation of the gated branch ``x``."""
        if self.drop_path is not None:
            x = self.drop_path(x)
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

        if not torch.jit.is_scripting() and torch.compiler.is_compiling():
            gated = gated_through_pointwise_conv(self, x, self.conv3, self.bn3)
            if gated is not None:
                return self._add_shortcut(gated, self._shortcut(shortcut))
        x = self.conv3(x)
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
