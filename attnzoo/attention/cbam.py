"""CBAM: Convolutional Block Attention Module (Woo et al., ECCV 2018).

Paper form: a channel gate from the average- and max-pooled descriptors passed through one shared MLP
(with bias) and summed, then a spatial gate from the channel-mean and channel-max maps through a 7x7 conv
(+BN, as in the authors' code). Names follow timm's ``CbamModule`` (``channel.fc1``, ``spatial.conv.conv``,
``spatial.conv.bn``) so its state dicts (built with ``mlp_bias=True``) load strictly.
"""

from __future__ import annotations

import torch
from timm.layers import ConvNormAct, create_act_layer
from torch import nn

from attnzoo.attention.fused import (
    ChannelPool,
    KernelCbam,
    channel_then_spatial_gate,
    fusion_kernels,
    may_gate_in_place,
    runs_eagerly,
    watched,
    spatial_mean,
    weighted_channel_mean,
)
from attnzoo.attention.identity import gate_for, zero_
from attnzoo.attention.kernels import kernels_for
from attnzoo.attention.registry import register_attention
from attnzoo.attention.se import ChannelExcitation, gate_gain


@register_attention("cbam_channel")
class CbamChannel(ChannelExcitation):
    """CBAM's channel gate alone; the bottleneck is exactly C/r, as in the paper's parameter counts."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not torch.jit.is_scripting() and runs_eagerly(x):  # TorchScript compiles only the plain form
            return self.forward_eager(x)
        return self.forward_plain(x)

    def forward_plain(self, x: torch.Tensor) -> torch.Tensor:
        """The paper's arithmetic in ordinary torch operators (what tracers and hooks see)."""
        return x * self.attention_maps(x)["channel"][:, :, None, None]

    def forward_eager(self, x: torch.Tensor) -> torch.Tensor:
        """``forward`` by the eager routes of :mod:`attnzoo.attention.fused` (same values)."""
        if watched(self):  # hooks inside: the plain formulation calls each submodule
            return self.forward_plain(x)
        ops = None if torch.is_grad_enabled() else kernels_for(x, self)
        if ops is not None:  # one pass for both descriptors, one for the gating
            c = self.gate_from_pooled(*ops.channel_stats(x))
            return ops.gate_(x, c, None) if may_gate_in_place(self, x, known_unwatched=True) else ops.gate(x, c, None)
        g = self.gate_of(x)[:, :, None, None]
        return x.mul_(g) if may_gate_in_place(self, x, known_unwatched=True) else x * g

    def fusable_gates(self, x: torch.Tensor) -> tuple[torch.Tensor, None] | None:
        """The gate for the holding block's one-pass tail (see :meth:`SqueezeExcite.fusable_gates`)."""
        ops = fusion_kernels(self, x)
        return None if ops is None else (self.gate_from_pooled(*ops.channel_stats(x)), None)

    def gate_of(self, x: torch.Tensor) -> torch.Tensor:
        """The channel gate (B, C) for input ``x`` by the fastest eager route."""
        if torch.is_grad_enabled():
            return self.gate_from_pooled(*ChannelPool.apply(x))
        ops = kernels_for(x, self)
        if ops is not None:
            return self.gate_from_pooled(*ops.channel_stats(x))
        return self.gate_from_pooled(spatial_mean(x), x.amax((2, 3)))

    def attention_maps(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """The channel gate for input ``x``, shape (B, C)."""
        return {"channel": self.gate_from_pooled(x.mean((2, 3)), x.amax((2, 3)))}

    def gate_from_pooled(self, mean: torch.Tensor, peak: torch.Tensor) -> torch.Tensor:
        """The gate (B, C) from the average- and max-pooled descriptors (B, C) each."""
        # Both descriptors go through the shared MLP in one call, stacked along the batch.
        batch = mean.shape[0]
        logits = self.mlp(torch.cat((mean, peak)))
        return self.gate(logits[:batch] + logits[batch:])


@register_attention("cbam_spatial")
class CbamSpatial(nn.Module):
    """CBAM's spatial gate alone (``channels`` is accepted for a uniform constructor and unused).

    ``gate_init="identity"``: the gate is ``2 * sigmoid`` with the BN's affine zeroed, exactly 1 at step 0.
    """

    def __init__(
        self,
        channels: int | None = None,
        kernel_size: int = 7,
        gate_layer: type[nn.Module] | str = "sigmoid",
        gate_init: str = "half",
    ) -> None:
        super().__init__()
        self.conv = ConvNormAct(2, 1, kernel_size, apply_act=False)
        scaled = gate_for(gate_init, gate_layer)
        self.gate = scaled if scaled is not None else create_act_layer(gate_layer)
        self.identity_gain = 0.5 if scaled is None else 1.0
        if scaled is not None:
            zero_(self.conv.bn)

    gate_in_place = False  # surgery sets it where the input is a temporary (attnzoo.attention.fused)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not torch.jit.is_scripting() and runs_eagerly(x):  # TorchScript compiles only the plain form
            return self.forward_eager(x)
        return self.forward_plain(x)

    def forward_plain(self, x: torch.Tensor) -> torch.Tensor:
        """The paper's arithmetic in ordinary torch operators (what tracers and hooks see)."""
        return x * self.attention_maps(x)["spatial"]

    def forward_eager(self, x: torch.Tensor) -> torch.Tensor:
        """``forward``, gating in place where :func:`~attnzoo.attention.fused.may_gate_in_place` allows."""
        if watched(self):  # hooks inside: the plain formulation calls each submodule
            return self.forward_plain(x)
        ops = None if torch.is_grad_enabled() else kernels_for(x, self)
        if ops is not None:  # one pass for both channel maps, one for the gating
            ones, s = self.kernel_gates(ops, x)
            return ops.gate_(x, ones, s) if may_gate_in_place(self, x, known_unwatched=True) else ops.gate(x, ones, s)
        g = self.attention_maps(x)["spatial"]
        return x.mul_(g) if may_gate_in_place(self, x, known_unwatched=True) else x * g

    def fusable_gates(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
        """The gates for the holding block's one-pass tail (see :meth:`SqueezeExcite.fusable_gates`)."""
        ops = fusion_kernels(self, x)
        return None if ops is None else self.kernel_gates(ops, x)

    def kernel_gates(self, ops, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """A unit channel gate (the kernels gate by channel and position) and the spatial gate."""
        ones = x.new_ones(x.shape[:2])
        return ones, self.gate_from_maps(ops.gated_channel_stats(x, ones))

    def attention_maps(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """The spatial gate for input ``x``, shape (B, 1, H, W)."""
        maps = torch.cat((x.mean(dim=1, keepdim=True), x.amax(dim=1, keepdim=True)), dim=1)
        return {"spatial": self.gate_from_maps(maps)}

    def gate_from_maps(self, maps: torch.Tensor) -> torch.Tensor:
        """The gate (B, 1, H, W) from the channel-mean and channel-max maps stacked as (B, 2, H, W)."""
        if torch.is_grad_enabled() and not torch.jit.is_scripting() and runs_eagerly(maps):
            # channels_last makes oneDNN's backward of this 2-to-1 channel conv several times faster on CPU
            maps = maps.contiguous(memory_format=torch.channels_last)
        return self.gate(self.conv(maps))

    def init_identity(self) -> float:
        """Zero the BN's affine so the map is 0 (and the conv still gets gradient once it moves); the gate
        is then 0.5, or 1 with ``gate_init="identity"``."""
        zero_(self.conv.bn)
        return self.identity_gain


@register_attention("cbam")
class Cbam(nn.Module):
    """Channel gate, then spatial gate (the paper's best order). ``gate_init="identity"`` starts both gates
    at exactly 1 (see :class:`CbamChannel`, :class:`CbamSpatial`)."""

    def __init__(
        self,
        channels: int,
        rd_ratio: float = 1 / 16,
        rd_channels: int | None = None,
        rd_divisor: int = 1,
        spatial_kernel_size: int = 7,
        act_layer: type[nn.Module] | str = nn.ReLU,
        gate_layer: type[nn.Module] | str = "sigmoid",
        gate_init: str = "half",
    ) -> None:
        super().__init__()
        self.channel = CbamChannel(channels, rd_ratio, rd_channels, rd_divisor, act_layer, gate_layer, gate_init)
        self.spatial = CbamSpatial(channels, spatial_kernel_size, gate_layer, gate_init)

    gate_in_place = False  # surgery sets it where the input is a temporary (attnzoo.attention.fused)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not torch.jit.is_scripting() and runs_eagerly(x):  # TorchScript compiles only the plain form
            return self.forward_eager(x)
        return self.forward_plain(x)

    def forward_plain(self, x: torch.Tensor) -> torch.Tensor:
        """The paper's arithmetic in ordinary torch operators (what tracers and hooks see)."""
        return self.spatial(self.channel(x))

    def forward_eager(self, x: torch.Tensor) -> torch.Tensor:
        """``forward`` by the eager routes (docs/performance.md): training saves only ``x``
        (:mod:`attnzoo.attention.fused`); inference gates in place what it may."""
        if watched(self):  # hooks inside: the plain formulation calls each submodule
            return self.forward_plain(x)
        ops = kernels_for(x, self)
        if ops is not None and torch.is_grad_enabled():
            arguments = self.kernel_arguments()
            if arguments is not None:  # one autograd node, forward and backward in C++
                return ops.cbam(x, *arguments)
            return KernelCbam.apply(x, self.channel.gate_from_pooled, self.spatial.gate_from_maps, ops, *self.parameters())
        if ops is not None:  # three passes over x in all: both descriptor pools, both channel maps, the gating
            c, s = self.kernel_gates(ops, x)
            return ops.gate_(x, c, s) if may_gate_in_place(self, x, known_unwatched=True) else ops.gate(x, c, s)
        c = self.channel.gate_of(x)[:, :, None, None]
        if torch.is_grad_enabled():
            return channel_then_spatial_gate(x, c, self.spatial.gate_from_maps)
        mean = weighted_channel_mean(x, c)
        y = x.mul_(c) if may_gate_in_place(self, x, known_unwatched=True) else x * c
        maps = torch.cat((mean, y.amax(dim=1, keepdim=True)), dim=1)
        return y.mul_(self.spatial.gate_from_maps(maps))

    def kernel_arguments(self) -> tuple | None:
        """The C++ operators' arguments after ``x`` (training node, gates) where they compute this module's
        function (ReLU MLP, sigmoid gates, a plain stride-1 'same' conv with an odd square kernel padded with zeros,
        and a tracking, affine BatchNorm), else None.

        Does what the BatchNorm's forward does before its kernel: counts the batch and picks the running
        average's factor, so that the statistics move exactly as on the Python route.
        """
        spatial = self.spatial
        conv_norm = spatial.conv
        conv, bn = conv_norm.conv, conv_norm.bn
        spatial_gain = gate_gain(spatial.gate)
        k = conv.kernel_size[0]
        same = conv.kernel_size == (k, k) and k % 2 == 1 and conv.padding == (k // 2, k // 2)
        plain_conv = type(conv) is nn.Conv2d and conv.stride == (1, 1) and conv.dilation == (1, 1) and same
        plain_conv = plain_conv and conv.padding_mode == "zeros"  # as the kernels pad
        plain_bn = bn.affine and bn.track_running_stats and type(bn.drop) is nn.Identity and type(bn.act) is nn.Identity
        if spatial_gain is None or not (plain_conv and plain_bn and conv.bias is None):
            return None
        mlp = self.channel.kernel_mlp()  # last: it reads the MLP's weights, which the Python routes read again
        if mlp is None:
            return None
        factor = 0.0 if bn.momentum is None else bn.momentum
        if bn.training:
            bn.num_batches_tracked.add_(1)
            if bn.momentum is None:  # cumulative moving average
                factor = 1.0 / float(bn.num_batches_tracked)
        return (
            *mlp, conv.weight, bn.weight, bn.bias, bn.running_mean, bn.running_var, bn.training, factor, bn.eps,
            spatial_gain,
        )

    def fusable_gates(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
        """The gates for the holding block's one-pass tail (see :meth:`SqueezeExcite.fusable_gates`)."""
        ops = fusion_kernels(self, x)
        return None if ops is None else self.kernel_gates(ops, x)

    def batch_norm_tail(self, x: torch.Tensor, bn: nn.BatchNorm2d, shortcut: torch.Tensor) -> torch.Tensor | None:
        """``relu(self(bn(x)) + shortcut)`` for the holding block, written over its last convolution's output
        ``x``, in one C++ call with ``bn`` (eval mode) folded in (see :meth:`SqueezeExcite.batch_norm_tail`);
        None where the kernels do not take this module, ``bn`` or ``x``."""
        arguments = self.eval_gate_arguments()
        ops = fusion_kernels(self, x) if arguments is not None else None
        if ops is None or kernels_for(x, bn) is None:
            return None
        ops.cbam_bn_tail_(x, bn.weight, bn.bias, bn.running_mean, bn.running_var, bn.eps, *arguments, shortcut)
        return x

    def kernel_gates(self, ops, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The channel gate (B, C) and spatial gate (B, 1, H, W) in two passes over ``x``: in one C++ call
        where :meth:`eval_gate_arguments` allows (at batch 1 the small steps' overhead is what CBAM costs)."""
        arguments = self.eval_gate_arguments()
        if arguments is not None:
            return ops.cbam_gates(x, *arguments)
        c = self.channel.gate_from_pooled(*ops.channel_stats(x))
        return c, self.spatial.gate_from_maps(ops.gated_channel_stats(x, c))

    def eval_gate_arguments(self) -> tuple | None:
        """The inference operators' arguments after ``x`` (:meth:`kernel_arguments` without the running
        average's update) where the spatial BatchNorm is in eval mode: no batch statistics, nothing to move."""
        arguments = None if self.spatial.conv.bn.training else self.kernel_arguments()
        if arguments is None:
            return None
        *weights, _, _, eps, spatial_gain = arguments
        return (*weights, eps, spatial_gain)

    def attention_maps(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Channel gate (B, C) and the spatial gate (B, 1, H, W) it feeds."""
        maps = self.channel.attention_maps(x)
        return {**maps, **self.spatial.attention_maps(x * maps["channel"][:, :, None, None])}

    def init_identity(self) -> float:
        return self.channel.init_identity() * self.spatial.init_identity()
