"""Lean autograd for CBAM's spatial stage: recompute one product in backward instead of saving it.

CBAM's spatial stage computes ``y = x * c`` (channel gate ``c``), pools ``y`` over channels and returns
``y * s`` (spatial gate ``s``). Left to autograd, both the channel max and the final product save ``y``: a
second full-size activation next to ``x``, about a quarter of a ResNet block's saved tensors. The two
Functions here save only ``x`` and the small gates, recompute ``y`` in backward (one multiply), and turn
the full-size reductions of backward into matrix products. The arithmetic is the paper's; only what is
kept between forward and backward changes.
"""

from __future__ import annotations

import torch
from torch.autograd.function import FunctionCtx


def weighted_channel_mean(x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """``(x * c).mean(1, keepdim=True)`` for ``x`` (B, C, H, W) and ``c`` (B, C, 1, 1), without the product.

    A batched matrix-vector product reads ``x`` once with BLAS, where a reduction over the strided channel
    dimension of an NCHW tensor is several times slower on CPU.
    """
    b, channels, h, w = x.shape
    return torch.einsum("bchw,bc->bhw", x, c.reshape(b, channels) / channels).unsqueeze(1)


class ChannelGatedPool(torch.autograd.Function):
    """``x, c -> (cat(mean_C(x * c), max_C(x * c)), x * c)``; the product is returned but not differentiable.

    The product is handed on to :class:`SpatialGateProduct`, which overwrites it with the block's output,
    so forward computes it once and neither Function keeps it for backward.
    """

    @staticmethod
    def forward(ctx: FunctionCtx, x: torch.Tensor, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        y = x * c
        peak = y.amax(1, keepdim=True)
        ctx.save_for_backward(x, c, peak)
        ctx.mark_non_differentiable(y)
        return torch.cat((weighted_channel_mean(x, c), peak), 1), y

    @staticmethod
    def backward(ctx: FunctionCtx, grad_pooled: torch.Tensor, _: torch.Tensor) -> tuple[torch.Tensor, ...]:
        x, c, peak = ctx.saved_tensors
        # The max's gradient is shared among tied channels, as torch.amax's is.
        winners = x * c == peak
        share = grad_pooled[:, 1:] / winners.sum(1, keepdim=True)
        grad_y = torch.where(winners, share, 0.0).add_(grad_pooled[:, :1] / x.shape[1])
        grad_c = (grad_y * x).sum((2, 3), keepdim=True) if ctx.needs_input_grad[1] else None
        return grad_y.mul_(c), grad_c


class SpatialGateProduct(torch.autograd.Function):
    """``y, x, c, s -> y * s``, in place on ``y``, which must be the product ``x * c``.

    Saves ``x`` and the gates; ``y`` gets no gradient (it is not differentiable, see
    :class:`ChannelGatedPool`).
    """

    @staticmethod
    def forward(
        ctx: FunctionCtx, y: torch.Tensor, x: torch.Tensor, c: torch.Tensor, s: torch.Tensor
    ) -> torch.Tensor:
        ctx.mark_dirty(y)
        ctx.save_for_backward(x, c, s)
        return y.mul_(s)

    @staticmethod
    def backward(ctx: FunctionCtx, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        x, c, s = ctx.saved_tensors
        grad_x = grad_c = grad_s = None
        if ctx.needs_input_grad[2] or ctx.needs_input_grad[3]:
            gx = grad * x
            if ctx.needs_input_grad[2]:
                grad_c = torch.einsum("bchw,bhw->bc", gx, s[:, 0])[:, :, None, None]
            if ctx.needs_input_grad[3]:
                grad_s = weighted_channel_mean(gx, c) * x.shape[1]
        if ctx.needs_input_grad[1]:
            grad_x = (grad * s).mul_(c)
        return None, grad_x, grad_c, grad_s


def channel_then_spatial_gate(x: torch.Tensor, c: torch.Tensor, spatial_gate) -> torch.Tensor:
    """``y * spatial_gate(pool(y))`` with ``y = x * c``: CBAM's second stage, saving only ``x`` for backward.

    ``spatial_gate`` maps the (B, 2, H, W) [mean; max] maps to the (B, 1, H, W) gate with ordinary autograd.
    """
    pooled, y = ChannelGatedPool.apply(x, c)
    return SpatialGateProduct.apply(y, x, c, spatial_gate(pooled))
