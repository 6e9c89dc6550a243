"""SE trains on one C++ autograd node, ``torch.ops.attnzoo_gating.squeeze_excite``, wherever its excitation is
ReLU then a sigmoid gate (gain 1, or 2 with ``gate_init="identity"``), and on the Python node ``MeanGated``
otherwise: other activations or gates, float64, no kernels (:func:`kernel_helpers.plain_route`).

The node's output is compared with timm's ``SEModule`` of the same weights and with the plain route (equal
to float rounding: the node sums in another order than ATen); its gradients with the plain route's and with torch's autograd of the plain formulation
``x * excite(mean(x))``. The ``counting`` fixture and a spy on ``MeanGated.apply`` show which node ran. The
C++ node refuses double backward; MeanGated's silent second-order error is marked as a known failure.
"""

from __future__ import annotations

import contextlib
import functools

import pytest
import torch
from timm.layers import SEModule
from torch import nn
from torch.testing import assert_close

from attention_helpers import randomized_attention
from attnzoo.attention.identity import GATE_INITS
from kernel_helpers import assert_resnet18_training_step_matches_the_plain_route, output_and_grads, plain_route
from test_fused_kernels import shape_id

SHAPES = [(b, c, h, w) for b in (1, 3) for c in (16, 64, 256) for h, w in ((1, 1), (7, 7), (13, 11))]
OTHER_EXCITATIONS = {  # constructor kwargs whose excitation the C++ node does not compute
    "silu": dict(act_layer="silu"),
    "gelu": dict(act_layer=nn.GELU),
    "hard_sigmoid": dict(gate_layer="hard_sigmoid"),
}
FROZEN = {  # what does not require grad -> (input_grad, the part whose parameters are frozen, gradients left)
    "input": (False, None, 4),
    "all_parameters": (True, lambda se: se, 1),
    "fc1": (True, lambda se: se.fc1, 3),
}


def trained_se(channels: int, **kwargs) -> nn.Module:
    """An SE module (``kwargs`` to its constructor) in train mode with parameters drawn from N(0, 0.3)."""
    return randomized_attention("se", channels, **kwargs).train()


def plain_formulation(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """SE's arithmetic as its ``forward`` writes it for tracers, differentiated by torch's autograd."""
    return x * module.excite(x.mean((2, 3), keepdim=True))


def assert_same_gradients(ours: list[torch.Tensor], theirs: list[torch.Tensor]) -> None:
    """The gradients of :func:`kernel_helpers.output_and_grads` (its first entry, the output, skipped), to
    float32 rounding of sums whose terms are as large as the largest gradient: an entry where those terms
    cancel keeps their absolute rounding error (either route lands up to about 5e-7 of the largest gradient
    from a float64 computation), which a tolerance relative to that entry alone would not allow."""
    assert len(ours) == len(theirs)
    for a, b in zip(ours[1:], theirs[1:], strict=True):
        assert_close(a, b, rtol=1e-4, atol=max(1e-5, 2e-6 * b.abs().max().item()))


# --- ReLU and a sigmoid gate: the C++ node -------------------------------------------------------------


@pytest.mark.parametrize("shape", SHAPES, ids=shape_id)
@pytest.mark.parametrize("gate_init", GATE_INITS)
def test_node_gives_timms_output_and_the_plain_gradients(counting, mean_gated, gate_init, shape):
    module = trained_se(shape[1], gate_init=gate_init)
    theirs = SEModule(shape[1], gate_layer=type(module.gate)).train()
    theirs.load_state_dict(module.state_dict())  # strict: the same parameters under the same names
    x, upstream = torch.randn(shape), torch.randn(shape)

    node = output_and_grads(module, module, x, upstream)
    assert counting.calls == {"squeeze_excite": 1} and not mean_gated
    with plain_route():
        plain = output_and_grads(module, module, x, upstream)
    assert mean_gated == [shape]
    reference = output_and_grads(functools.partial(plain_formulation, module), module, x, upstream)

    assert len(node) == 2 + len(list(module.parameters())) == 6
    for expected in (theirs(x), plain[0], reference[0]):
        assert_close(node[0], expected)
    assert_same_gradients(node, plain)
    assert_same_gradients(node, reference)
    assert (node[0] - x).abs().max() > 0.1, "the attention left its input unchanged: nothing was compared"


@pytest.mark.parametrize("frozen", FROZEN)
def test_node_gives_the_plain_gradients_of_what_requires_grad(counting, frozen):
    module = trained_se(64)
    input_grad, frozen_part, gradients = FROZEN[frozen]
    if frozen_part is not None:
        frozen_part(module).requires_grad_(False)
    x, upstream = torch.randn(3, 64, 7, 7), torch.randn(3, 64, 7, 7)

    node = output_and_grads(module, module, x, upstream, input_grad)
    assert counting.calls == {"squeeze_excite": 1}
    with plain_route():
        plain = output_and_grads(module, module, x, upstream, input_grad)
    reference = output_and_grads(functools.partial(plain_formulation, module), module, x, upstream, input_grad)

    assert len(node) == 1 + gradients
    assert_close(node[0], plain[0])
    assert_same_gradients(node, plain)
    assert_same_gradients(node, reference)


def test_resnet18_se_training_step_matches_the_plain_route(counting):
    assert_resnet18_training_step_matches_the_plain_route(
        counting, "se", node="squeeze_excite", loss_tolerance=dict(rtol=1e-5, atol=1e-6)
    )


# --- other excitations and float64: MeanGated ----------------------------------------------------------


@pytest.mark.parametrize("kwargs", OTHER_EXCITATIONS.values(), ids=OTHER_EXCITATIONS)
def test_other_activations_and_gates_train_on_mean_gated(counting, mean_gated, kwargs):
    module = trained_se(64, **kwargs)
    x, upstream = torch.randn(3, 64, 7, 7), torch.randn(3, 64, 7, 7)

    trained = output_and_grads(module, module, x, upstream)
    assert not counting.calls and mean_gated == [x.shape]
    reference = output_and_grads(functools.partial(plain_formulation, module), module, x, upstream)
    assert torch.equal(trained[0], reference[0])
    assert_same_gradients(trained, reference)


@pytest.mark.parametrize("gate_init", GATE_INITS)
def test_float64_trains_on_mean_gated_and_passes_gradcheck(counting, mean_gated, gate_init):
    module = trained_se(16, rd_channels=4, gate_init=gate_init).double()
    x = torch.randn(2, 16, 3, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, *params: module(x), (x, *module.parameters()))
    assert not counting.calls and mean_gated


# --- second order --------------------------------------------------------------------------------------


def second_order_grads(run, module: nn.Module, x: torch.Tensor, v: torch.Tensor, u: torch.Tensor):
    """The gradients for ``x`` and ``module``'s parameters of ``<dL/dx, u>`` with ``L = <run(x)^2, v>``: a
    second-order term as a gradient penalty or meta-learning takes it."""
    x = x.clone().requires_grad_()
    (grad_x,) = torch.autograd.grad((run(x).square() * v).sum(), x, create_graph=True)
    return torch.autograd.grad((grad_x * u).sum(), [x, *module.parameters()])


@pytest.mark.parametrize("route", ["kernel_node", "mean_gated"])
def test_se_double_backward_is_right_or_refused(counting, route):
    """Either torch autograd's second-order gradients or a RuntimeError that says why, never different ones."""
    module = trained_se(16)
    x, v, u = torch.randn(2, 16, 5, 5), torch.randn(2, 16, 5, 5), torch.randn(2, 16, 5, 5)
    reference = second_order_grads(functools.partial(plain_formulation, module), module, x, v, u)
    with plain_route() if route == "mean_gated" else contextlib.nullcontext():
        try:
            got = second_order_grads(module, module, x, v, u)
        except RuntimeError as error:
            got = error
    assert counting.calls == ({"squeeze_excite": 1} if route == "kernel_node" else {})
    if isinstance(got, RuntimeError):
        assert "differentiab" in str(got), got  # "not twice differentiable", "once_differentiable"
        return
    for ours, torchs in zip(got, reference, strict=True):
        assert_close(ours, torchs, rtol=1e-4, atol=1e-5)


def test_fx_traced_se_gives_torchs_second_order_gradients():
    """The workaround the refusal names: an FX-traced module computes the plain formulation, which autograd
    differentiates twice."""
    module = trained_se(16)
    x, v, u = torch.randn(2, 16, 5, 5), torch.randn(2, 16, 5, 5), torch.randn(2, 16, 5, 5)
    reference = second_order_grads(functools.partial(plain_formulation, module), module, x, v, u)
    traced = torch.fx.symbolic_trace(module)
    for ours, torchs in zip(second_order_grads(traced, module, x, v, u), reference, strict=True):
        assert_close(ours, torchs, rtol=1e-4, atol=1e-5)
