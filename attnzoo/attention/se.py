"""Squeeze-and-Excitation (Hu et al., CVPR 2018).

Paper form: global average pool, FC-ReLU-FC (both with bias), sigmoid gate, channel-wise rescale. The
FCs are 1x1 convs named ``fc1``/``fc2`` as in timm's ``SEModule``, so timm's ``seresnet*`` state dicts
load strictly into attnzoo's ``resnet*_se``.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from timm.layers import create_act_layer, make_divisible
from timm.layers.activations import Sigmoid
from torch import nn
from torch.fx.experimental.symbolic_shapes import statically_known_true

from attnzoo.attention.fused import MeanGated, fusion_kernels, may_gate_in_place, runs_eagerly, watched
from attnzoo.attention.identity import ScaledSigmoid, gate_for, zero_
from attnzoo.attention.kernels import kernels_for
from attnzoo.attention.registry import register_attention


KERNEL_GATE_GAINS = {Sigmoid: 1.0, nn.Sigmoid: 1.0, ScaledSigmoid: 2.0}


def gate_gain(gate: nn.Module) -> float | None:
    """The gain of ``gate`` where the C++ operators compute it: 1 for a sigmoid, 2 for ``gate_init="identity"``'s
    scaled sigmoid; None for any other gate (the Python routes take it)."""
    return KERNEL_GATE_GAINS.get(type(gate))


def kernel_gain(act: nn.Module, gate: nn.Module) -> float | None:
    """:func:`gate_gain` of ``gate`` after a ReLU ``act``, the only activation the C++ MLP computes; else None."""
    return gate_gain(gate) if type(act) is nn.ReLU else None


def pointwise(layer: nn.Module) -> bool:
    """Whether ``layer`` is a plain 1x1 convolution (no groups, no padding), the layer the C++ MLP computes. A
    grouped or wider one, a subclass, or a layer whose weight a parametrization computes (spectral norm's power
    iteration moves on every read) is left to its own forward."""
    return type(layer) is nn.Conv2d and layer.kernel_size == (1, 1) and layer.groups == 1 and layer.padding == (0, 0)


def descriptor_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """``F.linear(x, weight, bias)`` for pooled descriptors (N, C). Compiled (not exported) with at most two
    rows, as at batch 1, it is written as a broadcast product and sum, which inductor turns into one
    reduction kernel parallel over the outputs: the BLAS runs a product of one or two rows with little gain
    from more threads, and at batch 1 reading the excitation's weights is most of what SE adds. Not under
    autocast, which casts ``F.linear`` to its lower precision but not the product, whose float32 gate would
    then promote the block's output and every feature map after it."""
    if not torch.jit.is_scripting():  # (TorchScript skips this block, which it could not compile)
        if few_rows_while_compiling(x):
            out = (x[:, None, :] * weight[None]).sum(-1)
            return out if bias is None else out + bias
    return F.linear(x, weight, bias)


def few_rows_while_compiling(x: torch.Tensor) -> bool:
    """Whether ``torch.compile`` (not ``torch.export``) is tracing descriptors ``x`` of one or two rows,
    outside autocast."""
    if not torch.compiler.is_compiling() or torch.compiler.is_exporting() or torch.is_autocast_enabled(x.device.type):
        return False
    return statically_known_true(x.shape[0] <= 2)


def reduced_channels(channels: int, rd_ratio: float, rd_channels: int | None, rd_divisor: int) -> int:
    """Bottleneck width: ``rd_channels`` if given, else ``channels * rd_ratio`` rounded as timm does."""
    return rd_channels or make_divisible(channels * rd_ratio, rd_divisor, round_limit=0.0)


class ChannelExcitation(nn.Module):
    """The excitation MLP that SE and CBAM's channel gate share: 1x1 conv - act - 1x1 conv, both with bias,
    then the gate. Subclasses decide how the input is pooled, and round the bottleneck width to multiples
    of their ``default_rd_divisor`` unless ``rd_divisor`` is given.

    ``gate_init="identity"`` makes the gate ``2 * sigmoid`` with ``fc2`` zeroed, so it is exactly 1 at step 0
    instead of the paper's 0.5 (docs/training.md, "Gate initialisation").
    """

    default_rd_divisor = 1
    gate_in_place = False  # surgery sets it where the input is a temporary (attnzoo.attention.fused)

    def __init__(
        self,
        channels: int,
        rd_ratio: float = 1 / 16,
        rd_channels: int | None = None,
        rd_divisor: int | None = None,
        act_layer: type[nn.Module] | str = nn.ReLU,
        gate_layer: type[nn.Module] | str = "sigmoid",
        gate_init: str = "half",
    ) -> None:
        super().__init__()
        rd = reduced_channels(channels, rd_ratio, rd_channels, rd_divisor or self.default_rd_divisor)
        self.fc1 = nn.Conv2d(channels, rd, kernel_size=1, bias=True)
        self.act = create_act_layer(act_layer, inplace=True)
        self.fc2 = nn.Conv2d(rd, channels, kernel_size=1, bias=True)
        scaled = gate_for(gate_init, gate_layer)
        self.gate = scaled if scaled is not None else create_act_layer(gate_layer)
        self.identity_gain = 0.5 if scaled is None else 1.0
        if scaled is not None:
            zero_(self.fc2)

    def kernel_mlp(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, float] | None:
        """The C++ operators' MLP arguments ``(fc1.weight, fc1.bias, fc2.weight, fc2.bias, gain)`` (gain: see
        :func:`kernel_gain`) where they compute this MLP, which they read with both biases; None where the
        Python routes must (another activation or gate, a layer other than a plain 1x1 convolution (see
        :func:`pointwise`), a bias set to None). One call reads each submodule once, as it runs on every eager
        forward, where module attribute lookups add up at batch 1. The weights are read last, only for the
        kernels, so that the Python routes read each once, as the module's own forward does."""
        gain = kernel_gain(self.act, self.gate)
        if gain is None or not self.pointwise_mlp():
            return None
        fc1, fc2 = self.fc1, self.fc2
        b1, b2 = fc1.bias, fc2.bias
        if b1 is None or b2 is None:
            return None
        return fc1.weight, b1, fc2.weight, b2, gain

    def pointwise_mlp(self) -> bool:
        """Whether both MLP layers are plain 1x1 convolutions (:func:`pointwise`), as :meth:`mlp` and the C++
        operators compute them."""
        return pointwise(self.fc1) and pointwise(self.fc2)

    def mlp(self, pooled: torch.Tensor) -> torch.Tensor:
        """``fc2(act(fc1(pooled)))`` for descriptors (N, C) by :func:`descriptor_linear`: the 1x1 convolutions'
        arithmetic on vectors, without a convolution call per layer (which compiled graphs pay for at batch 1).
        Needs plain 1x1 layers (:func:`pointwise`)."""
        hidden = self.act(descriptor_linear(pooled, self.fc1.weight.flatten(1), self.fc1.bias))
        return descriptor_linear(hidden, self.fc2.weight.flatten(1), self.fc2.bias)

    def init_identity(self) -> float:
        """Zero the MLP's output layer so the gate is constant: sigmoid(0) = 0.5, or 1 with
        ``gate_init="identity"`` (then there is nothing to compensate)."""
        zero_(self.fc2)
        return self.identity_gain


@register_attention("se")
class SqueezeExcite(ChannelExcitation):
    """SE block. Widths round to multiples of 8 as timm's do, so timm SE weights of every depth load."""

    default_rd_divisor = 8

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not torch.jit.is_scripting() and runs_eagerly(x):  # TorchScript compiles only the plain form
            return self.forward_eager(x)
        return self.forward_plain(x)

    def forward_plain(self, x: torch.Tensor) -> torch.Tensor:
        """The paper's arithmetic in ordinary torch operators (what tracers and hooks see)."""
        return x * self.excite(x.mean((2, 3), keepdim=True))

    def forward_eager(self, x: torch.Tensor) -> torch.Tensor:
        """``forward`` by the eager routes of :mod:`attnzoo.attention.fused` (same values)."""
        if watched(self):  # hooks inside: the plain formulation calls each submodule
            return self.forward_plain(x)
        if torch.is_grad_enabled():
            ops = kernels_for(x, self)
            mlp = self.kernel_mlp() if ops is not None else None
            if mlp is not None:  # one autograd node, forward and backward in C++
                return ops.squeeze_excite(x, *mlp)
            return MeanGated.apply(x, self.excite, *self.parameters())
        g = self.inference_gate(kernels_for(x, self), x)
        return x.mul_(g) if may_gate_in_place(self, x, known_unwatched=True) else x * g

    def fusable_gates(self, x: torch.Tensor) -> tuple[torch.Tensor, None] | None:
        """The channel gate for the block holding this module to apply with its residual add and ReLU in
        one pass (:mod:`attnzoo.surgery.resnet`), or None where this module must gate by itself."""
        ops = fusion_kernels(self, x)
        return None if ops is None else (self.inference_gate(ops, x), None)

    def batch_norm_tail(self, x: torch.Tensor, bn: nn.BatchNorm2d, shortcut: torch.Tensor) -> torch.Tensor | None:
        """``relu(self(bn(x)) + shortcut)`` for the holding block, from its last convolution's output ``x``
        (a temporary the block may overwrite), in one C++ call with ``bn`` (eval mode) folded in
        (:mod:`attnzoo.surgery.resnet`); None where the kernels do not take this module, ``bn`` or ``x``."""
        mlp = self.kernel_mlp()
        ops = fusion_kernels(self, x) if mlp is not None else None
        if ops is None or kernels_for(x, bn) is None:
            return None
        ops.se_bn_tail_(x, bn.weight, bn.bias, bn.running_mean, bn.running_var, bn.eps, *mlp, shortcut)
        return x

    def inference_gate(self, ops: Any | None, x: torch.Tensor) -> torch.Tensor:
        """The gate (B, C, 1, 1): one C++ call where the kernels take ``x`` (``ops``, what
        :func:`~attnzoo.attention.kernels.kernels_for` gave for it) and the module is ReLU + sigmoid (timm's
        function; its sums run in another order, so values agree to float rounding), else the excitation
        step by step."""
        mlp = self.kernel_mlp() if ops is not None else None
        if mlp is not None:
            return ops.se_gate(x, *mlp)
        return self.excite(x.mean((2, 3), keepdim=True))

    def gate_from_mean(self, mean: torch.Tensor) -> torch.Tensor:
        """The gate (B, C) from the average-pooled descriptor (B, C) by :meth:`mlp` (check
        :meth:`pointwise_mlp` first). A block that computes the mean of this module's input more cheaply than
        by pooling it uses this (:mod:`attnzoo.surgery.resnet`)."""
        return self.gate(self.mlp(mean))

    def excite(self, pooled: torch.Tensor) -> torch.Tensor:
        """The gate (B, C, 1, 1) from the pooled descriptor (B, C, 1, 1)."""
        return self.gate(self.fc2(self.act(self.fc1(pooled))))

    def attention_maps(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """The channel gate for input ``x``, shape (B, C), for inspection."""
        return {"channel": self.excite(x.mean((2, 3), keepdim=True)).flatten(1)}
