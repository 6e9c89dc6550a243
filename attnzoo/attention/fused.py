"""Cheap gating: in-place gating where nobody can see it, and lean autograd nodes for SE and CBAM.

These are eager-only routes. Every module computes one function, its plain formulation (the paper's
arithmetic in ordinary torch ops); under FX, TorchScript, ``torch.jit.trace``, ``torch.export`` and
``torch.compile`` that formulation is all a tracer, exporter or compiler sees (:func:`runs_eagerly`), so
their graphs hold ordinary aten ops (ONNX-, quantization- and feature-extraction-friendly), inductor fuses
them, and no decision taken here (in place or not) is baked into a graph that is then run differently. In
an eager forward the module takes the cheaper route below, which computes the same values. (A ResNet
Bottleneck holding SE computes SE's descriptor from its last convolution's input in compiled and exported
graphs: :func:`attnzoo.surgery.resnet.gated_through_pointwise_conv`.)

Inference: gating ``x * g`` allocates and writes a full-size tensor, which on a CPU costs more than the
pooling before it. When a module sits in a block slot whose input is a temporary that the block never
reads again (timm's ResNet and EfficientNet blocks, attnzoo's cnn3), surgery sets its ``gate_in_place``
(``SurgeryHook.slot_input_is_temporary``), and it then overwrites its input with its output whenever no gradient is
being recorded and no hook watches the module (:func:`may_gate_in_place`). A module created on its own
never touches its input.

Training: :class:`MeanGated` makes SE one node whose backward writes the input gradient in one pass.
CBAM's spatial stage computes ``y = x * c`` (channel gate ``c``), pools ``y`` over channels and returns
``y * s`` (spatial gate ``s``); left to autograd, both the channel max and the final product save ``y``, a
second full-size activation next to ``x``. :class:`ChannelGatedPool` and :class:`SpatialGateProduct` save
only ``x`` and the small gates, recompute ``y`` in backward (one multiply), and turn backward's full-size
reductions into matrix products; :class:`ChannelPool` gives CBAM's descriptors a one-pass backward. The
arithmetic is the paper's; only what is kept between forward and backward, and how it is reduced, changes.

Why not ``torch.library.custom_op``: an opaque operator cannot return its input updated in place (the
inference saving), inductor cannot fuse into it (the compiled speed), and ONNX and TorchScript consumers
would need a translation for it; the plain formulation under tracing gives every consumer ordinary ops.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.autograd.function import FunctionCtx
# torch registers global hooks publicly (register_module_forward_hook) but offers no public way to ask for them.
from torch.nn.modules.module import _global_forward_hooks, _global_forward_pre_hooks

from attnzoo.attention.kernels import kernels_for


def refuse_double_backward(attention: str) -> None:
    """Raise where a backward below runs under ``create_graph=True``: these nodes compute first-order
    gradients only (saved products are recomputed or overwritten in place), so a second-order gradient
    through them would be wrong or fail obscurely."""
    if torch.is_grad_enabled():
        raise RuntimeError(
            f"attnzoo's {attention} training route is not twice differentiable (create_graph=True); for double "
            "backward run torch.fx.symbolic_trace(model), which computes the plain formulation"
        )


def runs_eagerly(x: torch.Tensor) -> bool:
    """Whether ``x`` flows through an eager forward, where the fast routes of this module may run.

    False while FX traces (``x`` is a ``torch.fx.Proxy``), while ``torch.jit.trace`` records (ONNX
    export), and while ``torch.compile`` or ``torch.export`` trace: those consumers get the module's plain
    formulation, written once in its ``forward``. False too under a ``torch.func`` transform (``grad``,
    ``vjp``, ``vmap``, ...), which the C++ operators and autograd nodes here do not support. Callers test
    ``not torch.jit.is_scripting()`` first, in the same condition, which TorchScript evaluates while
    compiling and so never compiles the eager route; it still compiles this function, whose body it
    must therefore skip too.
    """
    if torch.jit.is_scripting():  # TorchScript compiles this function but not the branch below
        return False
    else:
        return (
            isinstance(x, torch.Tensor)
            and not torch.jit.is_tracing()
            and not torch.compiler.is_compiling()
            # torch offers no public way to ask; the transforms wrap only what they differentiate or batch
            and not torch._C._are_functorch_transforms_active()
        )


def watched(module: nn.Module) -> bool:
    """Whether a forward or backward hook watches ``module`` or one of its submodules.

    The eager routes call no submodule (a C++ node or a kernel computes the gates) and may gate in place, so
    where a hook watches they step aside for the plain formulation, which calls each submodule and leaves
    its input alone: feature capture sees what it asked for, and a backward hook (Grad-CAM's) the gradient
    of every path through the module. (Global hooks, e.g. the module tracking of ``FlopCounterMode``, see
    every module that is called: :func:`watched_globally`.)
    """
    stack = [module]
    while stack:
        current = stack.pop()
        if current._forward_hooks or current._forward_pre_hooks:
            return True
        if current._backward_hooks or current._backward_pre_hooks:
            return True
        stack.extend(current._modules.values())
    return False


def watched_globally() -> bool:
    """Whether a forward hook or pre-hook registered for every module (``register_module_forward_hook``)
    watches: it sees each module that is called, and what it returns replaces that module's input or output.
    It stops gating in place, and the compiled route that calls no attention
    (:func:`attnzoo.surgery.resnet.gated_through_pointwise_conv`)."""
    return bool(_global_forward_hooks or _global_forward_pre_hooks)


def may_gate_in_place(module: nn.Module, x: torch.Tensor, *, known_unwatched: bool = False) -> bool:
    """Whether ``module`` may overwrite its input ``x`` with its output (asked on eager routes only).

    Needs the surgery's promise (``module.gate_in_place``), no autograd recording (autograd would need
    ``x``), and no hook watching it or every module, since a hook that keeps the input (e.g. to call
    ``attention_maps`` on it) must see it unchanged. ``known_unwatched``: the caller has just found
    :func:`watched` false for ``module`` in the same forward, so its tree is not walked a second time.
    """
    return (
        getattr(module, "gate_in_place", False)
        and not torch.is_grad_enabled()
        and not x.requires_grad
        and not watched_globally()
        and (known_unwatched or not watched(module))
    )


def fusion_kernels(module: nn.Module, x: torch.Tensor) -> Any | None:
    """The fused kernels if ``module``'s gates may be handed to the block that holds it, to be applied with
    the block's residual add and ReLU in one pass (the attention's ``fusable_gates``): no gradient
    recorded, the surgery's in-place promise, no hook watching (:func:`may_gate_in_place`), and a tensor
    and weights the kernels take (:func:`~attnzoo.attention.kernels.kernels_for`)."""
    if not may_gate_in_place(module, x):
        return None
    return kernels_for(x, module)


def weighted_channel_mean(x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """``(x * c).mean(1, keepdim=True)`` for ``x`` (B, C, H, W) and ``c`` (B, C, 1, 1), without the product.

    A batched vector-matrix product reads ``x`` once with BLAS, several times faster on CPU than a
    reduction over the strided channel dimension of an NCHW tensor.
    """
    b, channels, h, w = x.shape
    weights = c.reshape(b, 1, channels) / channels
    if x.is_contiguous():
        return torch.bmm(weights, x.view(b, channels, h * w)).view(b, 1, h, w)
    return torch.einsum("bchw,bxc->bxhw", x, weights)  # channels_last: a (HW x C) matrix-vector product


def spatial_mean(x: torch.Tensor) -> torch.Tensor:
    """``x.mean((2, 3))`` as a matrix-vector product (faster on CPU for NCHW tensors), shape (B, C)."""
    b, channels, h, w = x.shape
    if x.is_contiguous():
        return (x.view(b * channels, h * w) @ x.new_full((h * w, 1), 1 / (h * w))).view(b, channels)
    return x.mean((2, 3))


class ChannelPool(torch.autograd.Function):
    """``x -> (x.mean((2, 3)), x.amax((2, 3)))``, CBAM's channel descriptors, with one-pass backward.

    Autograd would write three full-size gradients (the mean's, the max's and their sum) and convert the
    max's tie mask to int64 on the way; here one ``where`` writes the input gradient.
    """

    @staticmethod
    def forward(ctx: FunctionCtx, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        peak = x.amax((2, 3))
        ctx.save_for_backward(x, peak)
        return spatial_mean(x), peak

    @staticmethod
    def backward(ctx: FunctionCtx, grad_mean: torch.Tensor, grad_max: torch.Tensor) -> torch.Tensor:
        refuse_double_backward("CBAM")
        x, peak = ctx.saved_tensors
        h, w = x.shape[2:]
        # The max's gradient is shared among tied positions, as torch.amax's is.
        winners = x == peak[:, :, None, None]
        share = grad_max[:, :, None, None] / winners.sum((2, 3), keepdim=True, dtype=torch.int32)
        return torch.where(winners, share, 0.0).add_(grad_mean[:, :, None, None] / (h * w))


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
        ctx.set_materialize_grads(False)  # no full-size zero gradient for y
        return torch.cat((weighted_channel_mean(x, c), peak), 1), y

    @staticmethod
    def backward(ctx: FunctionCtx, grad_pooled: torch.Tensor | None, _: None) -> tuple[torch.Tensor | None, ...]:
        refuse_double_backward("CBAM")
        if grad_pooled is None:
            return None, None
        x, c, peak = ctx.saved_tensors
        # The max's gradient is shared among tied channels, as torch.amax's is.
        winners = x * c == peak
        share = grad_pooled[:, 1:] / winners.sum(1, keepdim=True, dtype=torch.int32)
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
        refuse_double_backward("CBAM")
        x, c, s = ctx.saved_tensors
        grad_x = grad_c = grad_s = None
        if ctx.needs_input_grad[2] or ctx.needs_input_grad[3]:
            gx = grad * x
            if ctx.needs_input_grad[2]:
                grad_c = torch.einsum("bchw,bxhw->bcx", gx, s)[..., None]
            if ctx.needs_input_grad[3]:
                grad_s = weighted_channel_mean(gx, c) * x.shape[1]
        if ctx.needs_input_grad[1]:
            grad_x = (grad * s).mul_(c)
        return None, grad_x, grad_c, grad_s


class MeanGated(torch.autograd.Function):
    """``x * gate_fn(x.mean((2, 3), keepdim=True))``: SE's squeeze, excitation and scale in one node.

    ``gate_fn`` is the small excitation network (its parameters passed as ``params``). Forward runs it with
    autograd on a detached copy of the pooled vector and keeps that small graph, so backward differentiates
    the parameters forward used (under ``torch.func.functional_call`` the module holds them only during the
    call), then writes the input gradient in one pass (``grad * g + pooled_grad / HW``) instead of
    autograd's product, broadcast and sum of the two paths.
    """

    @staticmethod
    def forward(ctx: FunctionCtx, x: torch.Tensor, gate_fn, *params: torch.Tensor) -> torch.Tensor:
        with torch.enable_grad():
            pooled = x.detach().mean((2, 3), keepdim=True).requires_grad_()
            g = gate_fn(pooled)
        ctx.graph = (pooled, g)
        ctx.save_for_backward(x, *params)
        return x * g.detach()

    @staticmethod
    def backward(ctx: FunctionCtx, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        refuse_double_backward("SE")  # the gate's gradients below would be constants to autograd
        x, *params = ctx.saved_tensors
        pooled, g = ctx.graph
        b, channels, h, w = x.shape
        if x.is_contiguous() and grad.is_contiguous():  # per-channel dot products as one batched GEMM
            grad_g = torch.bmm(grad.view(b * channels, 1, h * w), x.view(b * channels, h * w, 1))
            grad_g = grad_g.view(b, channels, 1, 1)
        else:
            grad_g = (grad * x).sum((2, 3), keepdim=True)
        wanted = [p for p, need in zip(params, ctx.needs_input_grad[2:]) if need]
        # retained for a further backward through the same node (retain_graph=True, gradcheck)
        grad_pooled, *grad_wanted = torch.autograd.grad(g, [pooled, *wanted], grad_g, retain_graph=True)
        grads = iter(grad_wanted)
        grad_params = [next(grads) if need else None for need in ctx.needs_input_grad[2:]]
        grad_x = torch.addcmul(grad_pooled / (h * w), grad, g.detach()) if ctx.needs_input_grad[0] else None
        return grad_x, None, *grad_params


class KernelCbam(torch.autograd.Function):
    """CBAM's whole forward and backward on the fused kernels (:mod:`attnzoo.attention.kernels`).

    Forward makes three passes over ``x`` (descriptor pools, channel maps of ``x * c``, gating) and keeps only
    ``x`` at full size. The small gate networks (``channel_fn``: (mean, max) -> c, ``spatial_fn``: maps -> s)
    run once, with autograd, on detached leaves, and their graphs are kept for backward, so the spatial
    BatchNorm updates its running statistics once, as in any forward. Backward makes three passes over
    (grad, x): the spatial gate's gradient with the spatial max's tie counts, the channel gate's gradient
    with the channel max's tie counts, and the input gradient. Max gradients are shared among ties as
    ``torch.amax``'s are. Not twice differentiable.
    """

    @staticmethod
    def forward(ctx: FunctionCtx, x: torch.Tensor, channel_fn, spatial_fn, ops, *params: torch.Tensor) -> torch.Tensor:
        mean_c, peak_c = ops.channel_stats(x)
        with torch.enable_grad():
            descriptors = (mean_c.requires_grad_(), peak_c.detach().requires_grad_())
            c = channel_fn(*descriptors)
            maps = ops.gated_channel_stats(x, c.detach()).requires_grad_()
            s = spatial_fn(maps)
        ctx.ops, ctx.graphs = ops, (descriptors, c, maps, s)
        ctx.save_for_backward(x, *params)
        return ops.gate(x, c.detach(), s.detach())

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx: FunctionCtx, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        ops, ((mean_c, peak_c), c, maps, s) = ctx.ops, ctx.graphs
        x, *params = ctx.saved_tensors
        grad = grad.contiguous()
        gate, spatial_gate, peak = c.detach(), s.detach(), maps.detach()[:, 1].contiguous()
        wanted = [p for p, need in zip(params, ctx.needs_input_grad[4:]) if need]

        grad_s, spatial_ties = ops.spatial_gate_grad(grad, x, gate, peak)
        grad_maps, *spatial_grads = torch.autograd.grad(s, [maps, *wanted], grad_s, allow_unused=True)
        mean_grad = (grad_maps[:, 0] / x.shape[1]).contiguous()
        max_share = (grad_maps[:, 1] / spatial_ties[:, 0]).contiguous()
        grad_c, channel_ties = ops.channel_gate_grad(
            grad, x, gate, spatial_gate, peak, mean_grad, max_share, peak_c.detach()
        )
        grad_mean_c, grad_peak_c, *channel_grads = torch.autograd.grad(
            c, [mean_c, peak_c, *wanted], grad_c, allow_unused=True
        )
        grad_x = None
        if ctx.needs_input_grad[0]:
            h, w = x.shape[2:]
            grad_x = ops.cbam_input_grad(
                grad, x, gate, spatial_gate, peak, mean_grad, max_share, peak_c.detach(),
                (grad_mean_c / (h * w)).contiguous(), (grad_peak_c / channel_ties).contiguous(),
            )
        grads = iter(a if a is not None else b for a, b in zip(spatial_grads, channel_grads))
        return grad_x, None, None, None, *(next(grads) if need else None for need in ctx.needs_input_grad[4:])


def channel_then_spatial_gate(x: torch.Tensor, c: torch.Tensor, spatial_gate) -> torch.Tensor:
    """``y * spatial_gate(pool(y))`` with ``y = x * c``: CBAM's second stage, saving only ``x`` for backward.

    ``spatial_gate`` maps the (B, 2, H, W) [mean; max] maps to the (B, 1, H, W) gate with ordinary autograd.
    """
    pooled, y = ChannelGatedPool.apply(x, c)
    return SpatialGateProduct.apply(y, x, c, spatial_gate(pooled))
