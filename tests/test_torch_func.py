"""SE and CBAM under ``torch.func``: ``functional_call`` with parameters other than the model's own, then
``backward``, gives the gradients of a model that holds those parameters, on every training route (the C++
nodes, KernelCbam, MeanGated, CBAM's Python nodes); ``torch.func.grad`` runs the plain formulation
(:func:`attnzoo.attention.fused.runs_eagerly`) and gives autograd's gradients of the eager routes.

The models are ResNet-18s with every BatchNorm woken, in train mode, and the parameters handed to
``functional_call`` are the model's own plus noise, which is shown to change the attention's gradients.
"""

from __future__ import annotations

import contextlib
import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call
from torch.testing import assert_close

from attention_helpers import assert_attention_matters, wake
from attnzoo.models import build_model
from kernel_helpers import plain_route, training_step

BLOCKS = 8  # attention modules in a ResNet-18
ROUTES = {  # route -> (attention, its kwargs, kernels loaded, the C++ operator each block's training calls)
    "se_cpp_node": ("se", {}, True, "squeeze_excite"),
    "se_mean_gated": ("se", {}, False, None),
    "cbam_cpp_node": ("cbam", {}, True, "cbam"),
    "cbam_kernel_cbam": ("cbam", {"gate_layer": "hard_sigmoid"}, True, "channel_stats"),
    "cbam_python_nodes": ("cbam", {}, False, None),
}


def trained_model(attention: str, attn_kwargs: dict) -> nn.Module:
    """ResNet-18 with ``attention`` by surgery, BatchNorms woken, in train mode."""
    torch.manual_seed(0)
    model = build_model("resnet18", attention=attention, attn_kwargs=attn_kwargs, num_classes=10)
    return wake(model).train()


def perturbed(model: nn.Module) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """``model``'s parameters plus N(0, 0.05) noise as new leaves that require grad, and copies of its
    buffers (train-mode BatchNorms move them)."""
    params = {name: (p.detach() + 0.05 * torch.randn_like(p)).requires_grad_() for name, p in model.named_parameters()}
    return params, {name: b.clone() for name, b in model.named_buffers()}


def holding(model: nn.Module, params: dict[str, torch.Tensor], buffers: dict[str, torch.Tensor]) -> nn.Module:
    """A copy of ``model`` whose parameters and buffers are set to ``params`` and ``buffers``."""
    copied = copy.deepcopy(model)
    copied.load_state_dict({**{name: p.detach() for name, p in params.items()}, **buffers})
    return copied


@contextlib.contextmanager
def route_context(request: pytest.FixtureRequest, route: str):
    """The route's kernels (counted: yields the counting proxy) or the plain route (yields None)."""
    if ROUTES[route][2]:
        yield request.getfixturevalue("counting")
    else:
        with plain_route():
            yield None


def assert_same_gradients(ours: list[torch.Tensor], theirs: list[torch.Tensor]) -> None:
    """Equal to float32 rounding relative to each gradient's scale (train-mode BatchNorm backward amplifies
    summation-order differences through eight blocks); fails on NaN and on a missing gradient."""
    assert len(ours) == len(theirs)
    for a, b in zip(ours, theirs, strict=True):
        assert a is not None, "a parameter passed to functional_call got no gradient"
        assert_close(a, b, rtol=1e-4, atol=1e-4 * b.abs().max().item())


@pytest.mark.parametrize("route", ROUTES)
def test_functional_call_then_backward_gives_the_gradients_of_the_parameters_passed(request, mean_gated, route):
    attention, attn_kwargs, _, node = ROUTES[route]
    model = trained_model(attention, attn_kwargs)
    x, target = torch.randn(4, 3, 64, 64), torch.randint(0, 10, (4,))
    assert_attention_matters(model, x)
    params, buffers = perturbed(model)
    reference = holding(model, params, buffers)

    with route_context(request, route) as counting:
        loss = F.cross_entropy(functional_call(model, {**params, **buffers}, (x.clone(),)), target)
        loss.backward()
        expected_loss, expected = training_step(reference, x, target)
        _, own = training_step(model, x, target)
    if node is not None:
        assert counting.calls[node] == 3 * BLOCKS  # every block trained on the route, in each of the 3 steps
    assert len(mean_gated) == (3 * BLOCKS if route == "se_mean_gated" else 0)

    assert_close(loss.detach(), expected_loss, rtol=1e-5, atol=1e-6)
    assert_same_gradients([p.grad for p in params.values()], expected)
    attention_grads = [(a, b) for name, a, b in zip(params, own, expected) if ".se." in name]
    assert attention_grads and max((a - b).abs().max() for a, b in attention_grads) > 1e-3, (
        "the perturbation left the attention's gradients unchanged: nothing was compared"
    )


@pytest.mark.parametrize("route", ROUTES)
def test_torch_func_grad_runs_the_plain_formulation_and_gives_autograds_gradients(request, mean_gated, route):
    attention, attn_kwargs, _, node = ROUTES[route]
    model = trained_model(attention, attn_kwargs)
    x, target = torch.randn(4, 3, 64, 64), torch.randint(0, 10, (4,))
    params, buffers = perturbed(model)
    reference = holding(model, params, buffers)

    def loss_of(params: dict[str, torch.Tensor], buffers: dict[str, torch.Tensor]) -> torch.Tensor:
        # buffers are an argument: torch.func refuses in-place updates (BatchNorm's) of captured tensors
        return F.cross_entropy(functional_call(model, {**params, **buffers}, (x.clone(),)), target)

    with route_context(request, route) as counting:
        grads = torch.func.grad(loss_of)({name: p.detach() for name, p in params.items()}, buffers)
        assert not mean_gated and (counting is None or not counting.calls)  # nothing but ordinary torch ops
        _, expected = training_step(reference, x, target)  # the eager route, differentiated by autograd
    if node is not None:
        assert counting.calls[node] == BLOCKS
    assert len(mean_gated) == (BLOCKS if route == "se_mean_gated" else 0)
    assert list(grads) == list(params)
    assert_same_gradients(list(grads.values()), expected)
