"""Multiply-accumulate (MAC) counting, with the cost of attention made visible.

Convention: one MAC is one multiply-add, the unit the SE and CBAM papers and timm's tables call a "FLOP"
(so their "GFLOPs" are our GMACs). We count with :class:`torch.utils.flop_counter.FlopCounterMode`, the
counter maintained in PyTorch, which covers convolutions and matrix products (bias adds not counted) and
reports two FLOPs per MAC. It skips element-wise and pooling ops, which is where attention spends its
compute, so handlers are added here:

* reductions and global pooling (``mean``, ``sum``, ``amax``, ``max``, adaptive pooling): one MAC per
  input element (one add or compare each);
* element-wise arithmetic (``add``, ``sub``, ``mul``, ``div``, ``pow``) and gate functions (``sigmoid``,
  ``hardsigmoid``, ``softmax``): one MAC per output element.

Not counted, as in the papers and timm: batch norm (folds into the preceding convolution at inference),
activations (ReLU, SiLU, hard-swish), max-pooling windows, concatenation and reshapes.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from attnzoo.attention import get_attention_class, list_attentions
from attnzoo.attention.kernels import torch_routes

aten = torch.ops.aten

MAC_CONVENTION = "GMACs (multiply-adds), as the SE/CBAM papers' and timm's GFLOPs"

# FlopCounterMode reports 2 FLOPs per MAC; the handlers below do the same so the total halves exactly.
_FLOPS_PER_MAC = 2


def _numel(shape) -> int:
    return math.prod(shape) if shape is not None else 0


def _per_input_element(input_shape, *args, out_shape=None, **kwargs) -> int:
    return _FLOPS_PER_MAC * _numel(input_shape)


def _per_output_element(*args, out_shape=None, **kwargs) -> int:
    shape = out_shape[0] if isinstance(out_shape, (tuple, list)) and out_shape and not isinstance(
        out_shape[0], int) else out_shape
    return _FLOPS_PER_MAC * _numel(shape)


def _ops(*names: str) -> list:
    """Overload packets that exist in this torch build (``hardsigmoid_`` etc. vary across versions)."""
    return [getattr(aten, n) for n in names if hasattr(aten, n)]


_EXTRA_FORMULAS: dict[object, Callable[..., int]] = {
    **{op: _per_input_element for op in _ops(
        "mean", "sum", "amax", "amin", "max", "min", "_adaptive_avg_pool2d", "adaptive_avg_pool2d",
        "adaptive_max_pool2d")},
    **{op: _per_output_element for op in _ops(
        "add", "add_", "sub", "sub_", "rsub", "mul", "mul_", "div", "div_", "pow", "sigmoid", "sigmoid_",
        "hardsigmoid", "hardsigmoid_", "_softmax", "softmax")},
}


@dataclass(frozen=True)
class MacCount:
    """MACs of one forward pass of a single image, total and per module (fully qualified name)."""

    total: int
    by_module: dict[str, int]

    @property
    def gmacs(self) -> float:
        return self.total / 1e9

    def attention(self, model: nn.Module) -> int:
        """MACs spent inside registered attention modules (outermost ones, so CBAM counts once)."""
        classes = tuple({get_attention_class(name) for name in list_attentions()})
        total, inside = 0, ()
        for name, module in model.named_modules():
            if any(name.startswith(prefix + ".") for prefix in inside):
                continue
            if isinstance(module, classes):
                total += self.by_module.get(name, 0)
                inside += (name,)
        return total


def count_macs(model: nn.Module, input_size: tuple[int, int, int]) -> MacCount:
    """Count MACs of one eval-mode forward pass on a single ``(C, H, W)`` image.

    Counts per image so numbers compare with published tables. The model's train/eval mode is restored.
    """
    was_training = model.training
    model.eval()
    try:
        param = next(model.parameters(), None)
        device = param.device if param is not None else torch.device("cpu")
        x = torch.zeros((1, *input_size), device=device)
        counter = FlopCounterMode(display=False, custom_mapping=_EXTRA_FORMULAS)
        with torch.no_grad(), torch_routes(), counter:  # the counter cannot see inside fused kernels
            model(x)
    finally:
        model.train(was_training)
    counts = counter.get_flop_counts()
    by_module = {}
    for name, ops in counts.items():
        if name == "Global":
            continue
        # FlopCounterMode names modules "<RootClass>.<fqn>"; keep the fqn users know from named_modules().
        fqn = name.split(".", 1)[1] if "." in name else ""
        by_module[fqn] = sum(ops.values()) // _FLOPS_PER_MAC
    return MacCount(total=counter.get_total_flops() // _FLOPS_PER_MAC, by_module=by_module)


# --- Analytic counts per attention module, under the convention above ---------------------------------
# C channels, H x W the feature map, rd the reduced (bottleneck) channels, k the spatial kernel size.

def se_macs(channels: int, height: int, width: int, rd_channels: int) -> int:
    """SE: global average pool CHW, fc C*rd + fc rd*C, sigmoid C, gating multiply CHW."""
    hw = height * width
    return channels * hw + 2 * channels * rd_channels + channels + channels * hw


def cbam_channel_macs(channels: int, height: int, width: int, rd_channels: int) -> int:
    """CBAM channel gate: avg pool CHW + max pool CHW, shared MLP on both (2 * 2*C*rd), add C, sigmoid C,
    gating multiply CHW."""
    hw = height * width
    return 2 * channels * hw + 2 * (2 * channels * rd_channels) + 2 * channels + channels * hw


def cbam_spatial_macs(channels: int, height: int, width: int, kernel_size: int = 7) -> int:
    """CBAM spatial gate: mean and max over channels (2 * CHW), conv 2->1 with a k x k kernel (2*k*k*HW),
    sigmoid HW, gating multiply CHW."""
    hw = height * width
    return 2 * channels * hw + 2 * kernel_size * kernel_size * hw + hw + channels * hw


def cbam_macs(channels: int, height: int, width: int, rd_channels: int, kernel_size: int = 7) -> int:
    """CBAM: channel gate then spatial gate, plus C for the scaling of the channel gate by 1/C: at inference
    attnzoo's CBAM takes the spatial stage's channel mean of the gated map as one weighted sum of ``x``
    with weights c/C (same MACs as the mean, without materialising the product first)."""
    return (cbam_channel_macs(channels, height, width, rd_channels)
            + cbam_spatial_macs(channels, height, width, kernel_size) + channels)


def eca_macs(channels: int, height: int, width: int, kernel_size: int) -> int:
    """ECA: global average pool CHW, 1-D conv across channels k*C, sigmoid C, gating multiply CHW."""
    hw = height * width
    return channels * hw + kernel_size * channels + channels + channels * hw
