"""The fused CPU kernels (attnzoo/attention/csrc/gating.cpp) compute exactly their torch definitions.

Each operator is checked against the plain torch expression it replaces, NaN and inf included; CBAM's
modules and a CBAM ResNet give the same outputs with and without them; inputs the kernels do not take
go the plain route; a disabled or failed build leaves everything working. The ``ops`` and ``counting``
fixtures (conftest.py) and :func:`kernel_helpers.plain_route` swap the operators in and out.
"""

from __future__ import annotations

import contextlib
import copy
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.testing import assert_close

from attention_helpers import (
    assert_attention_matters,
    assert_equal_to_rounding,
    gated_by_maps,
    randomized_attention,
    wake,
)
from attnzoo.attention import kernels
from attnzoo.attention.cbam import Cbam
from attnzoo.attention.kernels import DISABLE_VARIABLE, fused_ops
from attnzoo.attention.se import kernel_gain
from attnzoo.models import build_model
from kernel_helpers import output_and_grads, parameter_gradient, plain_route

ROOT = Path(__file__).resolve().parents[1]
INF, NAN = float("inf"), float("nan")
SHAPES = [(b, c, h, w) for b in (1, 3) for c in (3, 17, 64) for h, w in ((1, 1), (7, 7), (13, 11), (56, 56))]
MODULES = ["cbam", "cbam_channel", "cbam_spatial"]
KERNEL_CALLS = {  # the operators each module's no-grad forward calls once each, besides gate / gate_
    "cbam": {"cbam_gates"},  # both gates in one C++ call, which runs both reductions itself
    "cbam_channel": {"channel_stats"},
    "cbam_spatial": {"gated_channel_stats"},
}


def shape_id(shape: tuple[int, ...]) -> str:
    return "x".join(map(str, shape))


def positive_gate(*shape: int) -> torch.Tensor:
    """A gate as a sigmoid gives: in (0, 1), here bounded away from 0."""
    return torch.rand(shape) * 0.9 + 0.1


# --- each operator against its torch definition -------------------------------------------------------


@pytest.mark.parametrize("shape", SHAPES, ids=shape_id)
def test_channel_stats_is_mean_and_max_over_positions(ops, shape):
    x = torch.randn(shape)
    mean, peak = ops.channel_stats(x)
    assert_close(mean, x.mean((2, 3)))
    assert_close(peak, x.amax((2, 3)), rtol=0, atol=0)


@pytest.mark.parametrize("shape", SHAPES, ids=shape_id)
def test_gated_channel_stats_is_mean_and_max_over_channels_of_the_gated_input(ops, shape):
    x, c = torch.randn(shape), positive_gate(*shape[:2])
    y = x * c[:, :, None, None]
    out = ops.gated_channel_stats(x, c)
    assert out.shape == (shape[0], 2, *shape[2:])
    assert_close(out[:, :1], y.mean(1, keepdim=True))
    assert_close(out[:, 1:], y.amax(1, keepdim=True), rtol=0, atol=0)


@pytest.mark.parametrize("spatial", [True, False], ids=["both_gates", "channel_gate"])
@pytest.mark.parametrize("shape", SHAPES, ids=shape_id)
def test_gate_is_the_product_with_both_gates_and_leaves_its_input(ops, shape, spatial):
    b, channels, h, w = shape
    x, c = torch.randn(shape), positive_gate(b, channels, 1, 1)
    s = positive_gate(b, 1, h, w) if spatial else None
    before = x.clone()
    out = ops.gate(x, c, s)
    assert_close(out, x * c * s if spatial else x * c)
    assert torch.equal(x, before)


@pytest.mark.parametrize("spatial", [True, False], ids=["both_gates", "channel_gate"])
@pytest.mark.parametrize("shape", SHAPES, ids=shape_id)
def test_gate_in_place_overwrites_its_input_and_returns_it(ops, shape, spatial):
    b, channels, h, w = shape
    x, c = torch.randn(shape), positive_gate(b, channels, 1, 1)
    s = positive_gate(b, 1, h, w) if spatial else None
    expected = x * c * s if spatial else x * c
    out = ops.gate_(x, c, s)
    assert out is x
    assert_close(x, expected)


def test_every_operator_gives_the_same_bits_at_any_thread_count(ops):
    """Each output element is computed by one task, whatever the split: no thread-count dependence."""
    x, c, s = torch.randn(3, 64, 56, 56), positive_gate(3, 64), positive_gate(3, 1, 56, 56)
    se, cbam, bn = randomized_attention("se", 64), randomized_attention("cbam", 64), random_batch_norm(64)
    *cbam_weights, _, _, eps, spatial_gain = cbam.kernel_arguments()
    residual = torch.randn(x.shape)

    def run():
        return [*ops.channel_stats(x), ops.gated_channel_stats(x, c), ops.gate(x, c, s), ops.gate_(x.clone(), c, s),
                ops.se_gate(x, *se_arguments(se, 1.0)), *ops.cbam_gates(x, *cbam_weights, eps, spatial_gain),
                bn_tail(ops, x, bn, se, residual), bn_tail(ops, x, bn, cbam, residual)]

    single = run()
    torch.set_num_threads(2)  # conftest sets 1 again before the next test
    for a, b in zip(single, run()):
        assert torch.equal(a, b)


TAIL_SPLITS = [(9, 256, 28, 28), (1, 2048, 7, 7), (2, 5, 3, 3), (1, 8, 1, 1)]


@pytest.mark.parametrize("threads", [2, 3])
@pytest.mark.parametrize("shape", TAIL_SPLITS, ids=shape_id)
def test_block_tails_give_a_single_threads_bits_at_any_thread_count(ops, shape, threads):
    """The folded tails share each pass among the threads: any thread count (more than the cores, too) gives one
    thread's bits, over several chunks of images (9 x 256 x 28 x 28), one image, and passes with fewer items
    than threads."""
    x, residual = torch.randn(shape), torch.randn(shape)
    bn, attentions = random_batch_norm(shape[1]), [tail_attention(name, shape[1]) for name in ("se", "cbam")]
    single = [bn_tail(ops, x, bn, attention, residual) for attention in attentions]
    torch.set_num_threads(threads)  # conftest sets 1 again before the next test
    for attention, expected in zip(attentions, single):
        out = bn_tail(ops, x, bn, attention, residual)
        assert torch.isfinite(out).all()
        assert torch.equal(out, expected)
    assert not torch.equal(single[0], single[1]), "SE and CBAM gave the same tail"


def test_a_contiguous_view_at_an_offset_is_read_from_its_offset(ops):
    base = torch.randn(4, 17, 13, 11)
    x, c = base[1:3], positive_gate(2, 17)
    assert x.is_contiguous() and x.storage_offset() > 0
    assert_close(ops.channel_stats(x)[0], x.mean((2, 3)))
    assert_close(ops.gated_channel_stats(x, c)[:, 1:], (x * c[:, :, None, None]).amax(1, keepdim=True))
    assert_close(ops.gate(x, c, None), x * c[:, :, None, None])
    bn, residual = random_batch_norm(17), torch.randn(4, 17, 13, 11)[2:]
    assert residual.storage_offset() > 0
    for attention in (randomized_attention("se", 17), randomized_cbam(17, 7, "half")):
        with torch.no_grad():
            expected = bn_tail_definition(attention, bn, x, residual)
        assert_close(bn_tail(ops, x, bn, attention, residual), expected)


def test_operators_read_gates_that_are_views(ops):
    """Gates may be strided views (vmap hands per-example slices); the operators read their values."""
    x, c, s = torch.randn(2, 3, 4, 4), torch.rand(3, 2).t(), torch.rand(2, 4, 4, 2)[..., 0].unsqueeze(1)
    assert not c.is_contiguous() and not s.is_contiguous()
    assert_close(ops.gate(x, c, s), x * c[:, :, None, None] * s, rtol=0, atol=0)
    y = x * c[:, :, None, None]
    assert_close(ops.gated_channel_stats(x, c), torch.cat((y.mean(1, keepdim=True), y.amax(1, keepdim=True)), 1))


@pytest.mark.parametrize(
    "call",
    [
        lambda ops: ops.channel_stats(torch.randn(2, 3, 4, 4, dtype=torch.float64)),
        lambda ops: ops.channel_stats(torch.randn(2, 3, 4, 4).transpose(2, 3)),
        lambda ops: ops.channel_stats(torch.randn(3, 4, 4)),
        lambda ops: ops.gated_channel_stats(torch.randn(2, 3, 4, 4), torch.rand(2, 4)),
        lambda ops: ops.gate(torch.randn(2, 3, 4, 4), torch.rand(2, 3), torch.rand(2, 1, 4, 5)),
    ],
    ids=["float64", "non_contiguous", "3d", "gate_size", "spatial_gate_size"],
)
def test_operators_refuse_tensors_they_cannot_read(ops, call):
    with pytest.raises(RuntimeError, match="expects|must hold"):
        call(ops)


# --- the inference gates in one call: the modules' own gates ---------------------------------------------


def se_arguments(se, gain: float) -> tuple:
    return se.fc1.weight, se.fc1.bias, se.fc2.weight, se.fc2.bias, gain


def random_batch_norm(channels: int, affine: bool = True) -> nn.BatchNorm2d:
    """An eval BatchNorm2d with random running statistics and, if ``affine``, weights: far from the identity."""
    bn = nn.BatchNorm2d(channels, affine=affine, eps=0.1)
    with torch.no_grad():
        bn.running_mean.normal_(0, 0.5)
        bn.running_var.uniform_(0.2, 3.0)
        if affine:
            bn.weight.uniform_(0.5, 2.0)
            bn.bias.normal_(0, 0.5)
    return bn.eval()


def bn_arguments(bn: nn.BatchNorm2d) -> tuple:
    return bn.weight, bn.bias, bn.running_mean, bn.running_var, bn.eps


def bn_tail(ops, x: torch.Tensor, bn: nn.BatchNorm2d, attention: nn.Module, residual: torch.Tensor) -> torch.Tensor:
    """The folded tail of ``attention`` (``se_bn_tail_`` or ``cbam_bn_tail_``) on a copy of ``x``, which it
    overwrites with its result."""
    out = x.clone()
    if isinstance(attention, Cbam):
        result = ops.cbam_bn_tail_(out, *bn_arguments(bn), *attention.eval_gate_arguments(), residual)
    else:
        gain = kernel_gain(attention.act, attention.gate)
        result = ops.se_bn_tail_(out, *bn_arguments(bn), *se_arguments(attention, gain), residual)
    assert result is None
    return out


def bn_tail_definition(attention: nn.Module, bn: nn.BatchNorm2d, x: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
    """What a folded tail computes, in torch: a residual block's tail after its last convolution."""
    with plain_route():
        return torch.relu(attention.forward_plain(bn(x)) + residual)


def tail_attention(name: str, channels: int, gate_init: str = "half") -> nn.Module:
    """SE or CBAM (its spatial BatchNorm's statistics non-trivial too) with random weights, in eval mode."""
    if name == "cbam":
        return randomized_cbam(channels, 7, gate_init)
    return randomized_attention(name, channels, gate_init=gate_init)


def randomized_cbam(channels: int, kernel_size: int, gate_init: str) -> Cbam:
    """A CBAM in eval mode whose spatial BatchNorm has non-trivial running statistics and scale too."""
    cbam = randomized_attention("cbam", channels, rd_ratio=1 / 4, spatial_kernel_size=kernel_size, gate_init=gate_init)
    bn = cbam.spatial.conv.bn
    bn.weight.data.fill_(2.0)
    bn.running_mean.fill_(0.3)
    bn.running_var.fill_(1.7)
    return cbam


@pytest.mark.parametrize("gate_init, gain", [("half", 1.0), ("identity", 2.0)])
@pytest.mark.parametrize("shape", [(1, 64, 7, 7), (3, 17, 13, 11), (2, 256, 1, 1)], ids=shape_id)
def test_se_gate_is_the_excitation_of_the_spatial_mean(ops, shape, gate_init, gain):
    se = randomized_attention("se", shape[1], gate_init=gate_init)
    x = torch.randn(shape)
    with torch.no_grad():
        expected = se.excite(x.mean((2, 3), keepdim=True))
        gate = ops.se_gate(x, *se_arguments(se, gain))
    assert gate.shape == expected.shape
    assert_close(gate, expected)
    assert expected.std() > 0.01, "a constant gate: nothing was compared"


FOLDED = ["se", "cbam"]


# (5, 64, 64, 64): 1 MiB images, so the folded tails' 4 MiB chunks hold 4 images and then 1
@pytest.mark.parametrize("gate_init", ["half", "identity"])
@pytest.mark.parametrize("affine", [True, False], ids=["affine", "without_affine"])
@pytest.mark.parametrize("shape", [(1, 64, 7, 7), (3, 17, 13, 11), (2, 256, 1, 1), (5, 64, 64, 64)], ids=shape_id)
@pytest.mark.parametrize("name", FOLDED)
def test_bn_tail_is_the_relu_of_the_attention_of_the_batch_norm_plus_the_residual(ops, name, shape, affine, gate_init):
    attention, bn = tail_attention(name, shape[1], gate_init), random_batch_norm(shape[1], affine)
    x, residual = torch.randn(shape), torch.randn(shape)
    before = x.clone(), residual.clone()
    with torch.no_grad():
        expected = bn_tail_definition(attention, bn, x, residual)
        out = bn_tail(ops, x, bn, attention, residual)
    assert_equal_to_rounding(out, expected)  # CBAM's spatial gate amplifies the gates' rounding (its conv, its BN)
    assert torch.equal(x, before[0]) and torch.equal(residual, before[1])
    with torch.no_grad():
        assert (expected - torch.relu(bn(x) + residual)).abs().max() > 0.1, "the gate changed nothing"


@pytest.mark.parametrize("name", FOLDED)
def test_bn_tail_refuses_a_residual_of_another_shape(ops, name):
    attention, bn = tail_attention(name, 16), random_batch_norm(16)
    with pytest.raises(RuntimeError, match="residual must have the input's shape"):
        bn_tail(ops, torch.randn(2, 16, 4, 4), bn, attention, torch.randn(2, 16, 4, 5))


@pytest.mark.parametrize("kernel_size", [3, 7])
@pytest.mark.parametrize("gate_init", ["half", "identity"])
@pytest.mark.parametrize("shape", [(1, 64, 7, 7), (3, 17, 13, 11), (2, 32, 1, 1), (1, 16, 56, 56)], ids=shape_id)
def test_cbam_gates_are_the_modules_gates(ops, shape, kernel_size, gate_init):
    cbam = randomized_cbam(shape[1], kernel_size, gate_init)
    x = torch.randn(shape)
    arguments = cbam.kernel_arguments()
    *weights, _, _, eps, spatial_gain = arguments
    with torch.no_grad():
        maps = cbam.attention_maps(x)
        channel, spatial = ops.cbam_gates(x, *weights, eps, spatial_gain)
    assert_close(channel, maps["channel"])
    assert_close(spatial, maps["spatial"])
    assert maps["spatial"].std() > 0.01 or shape[2:] == (1, 1), "a constant gate: nothing was compared"


@pytest.mark.parametrize("case", ["nan_first", "nan_last", "plus_inf", "plus_and_minus_inf"])
def test_inference_gates_propagate_nan_and_inf_as_torch_does(ops, case):
    x = torch.randn(2, 16, 13, 11)
    write_special(x[1, 2].view(-1), case)
    se, cbam = randomized_attention("se", 16, rd_ratio=1 / 4), randomized_cbam(16, 7, "half")
    *weights, _, _, eps, spatial_gain = cbam.kernel_arguments()
    with torch.no_grad():
        assert_close(ops.se_gate(x, *se_arguments(se, 1.0)), se.excite(x.mean((2, 3), keepdim=True)), equal_nan=True)
        maps = cbam.attention_maps(x)
        channel, spatial = ops.cbam_gates(x, *weights, eps, spatial_gain)
    assert_close(channel, maps["channel"], equal_nan=True)
    assert_close(spatial, maps["spatial"], equal_nan=True)
    assert not maps["spatial"].isfinite().all(), "the special value did not reach the gates"


def test_inference_gates_refuse_weights_that_do_not_fit(ops):
    se = randomized_attention("se", 16, rd_ratio=1 / 4)
    with pytest.raises(RuntimeError, match="MLP's weights must be"):
        ops.se_gate(torch.randn(1, 32, 4, 4), *se_arguments(se, 1.0))


# --- NaN and inf: the same values torch gives ---------------------------------------------------------

# (index, value) pairs written into one plane (channel_stats) or one position's channels (gated):
# index 0 lies in the kernels' vectorised part, -1 in their remainder loop.
SPECIAL_VALUES = {
    "nan_first": [(0, NAN)],
    "nan_last": [(-1, NAN)],
    "nan_beside_inf": [(1, INF), (-1, NAN)],
    "nan_beside_minus_inf": [(0, NAN), (2, -INF)],
    "plus_and_minus_inf": [(0, INF), (-1, -INF)],
    "plus_inf": [(-1, INF)],
    "all_minus_inf": [(slice(None), -INF)],
}


def write_special(line: torch.Tensor, case: str) -> None:
    for index, value in SPECIAL_VALUES[case]:
        line[index] = value


def channel_stats_and_torchs(ops, x: torch.Tensor) -> tuple[tuple, tuple]:
    """``channel_stats(x)`` and torch's definition, each as (mean, max)."""
    return ops.channel_stats(x), (x.mean((2, 3)), x.amax((2, 3)))


def gated_channel_stats_and_torchs(ops, x: torch.Tensor) -> tuple[tuple, tuple]:
    """``gated_channel_stats(x, c)`` for a sigmoid-like gate ``c`` and torch's definition, each as (mean, max)."""
    c = positive_gate(*x.shape[:2])
    y = x * c[:, :, None, None]
    return ops.gated_channel_stats(x, c).split(1, 1), (y.mean(1, keepdim=True), y.amax(1, keepdim=True))


# operator -> (its (mean, max) and torch's, input shape, the line of x that takes the special values, the
# index of that line's max in the operator's max)
POOLING_OPERATORS = {
    # one plane of 143 positions: 8 vector blocks of 16, a remainder of 15
    "channel_stats": (channel_stats_and_torchs, (2, 3, 13, 11), lambda x: x[1, 2].view(-1), (1, 2)),
    # one position's 17 channels: 4 blocks of 4, a remainder of 1
    "gated_channel_stats": (gated_channel_stats_and_torchs, (2, 17, 13, 11), lambda x: x[1, :, 4, 5], (1, 0, 4, 5)),
}


@pytest.mark.parametrize("case", SPECIAL_VALUES)
@pytest.mark.parametrize("operator", POOLING_OPERATORS)
def test_pooling_operators_propagate_nan_and_inf_as_torch_does(ops, operator, case):
    run, shape, line, peak_at = POOLING_OPERATORS[operator]
    x = torch.randn(shape)
    write_special(line(x), case)
    (mean, peak), (torchs_mean, torchs_peak) = run(ops, x)
    assert_close(mean, torchs_mean, equal_nan=True)
    assert_close(peak, torchs_peak, rtol=0, atol=0, equal_nan=True)
    assert not peak[peak_at].isfinite()  # the case reached the max, as intended


def test_gated_channel_stats_of_inf_times_a_zero_gate_are_nan_as_in_torch(ops):
    x, c = torch.randn(2, 17, 13, 11), positive_gate(2, 17)
    x[1, 5, 4, 5], c[1, 5] = INF, 0.0
    y = x * c[:, :, None, None]
    out = ops.gated_channel_stats(x, c)
    assert_close(out, torch.cat((y.mean(1, keepdim=True), y.amax(1, keepdim=True)), 1), equal_nan=True)
    assert out[1, :, 4, 5].isnan().all()


@pytest.mark.parametrize("where", ["input", "residual"])
@pytest.mark.parametrize("case", SPECIAL_VALUES)
@pytest.mark.parametrize("name", FOLDED)
def test_bn_tail_propagates_nan_and_inf_as_torch_does(ops, name, case, where):
    x, residual = torch.randn(2, 16, 13, 11), torch.randn(2, 16, 13, 11)
    write_special((x if where == "input" else residual)[1, 2].view(-1), case)
    attention, bn = tail_attention(name, 16), random_batch_norm(16)
    with torch.no_grad():
        expected = bn_tail_definition(attention, bn, x, residual)
        out = bn_tail(ops, x, bn, attention, residual)
    assert_close(out, expected, equal_nan=True)
    if (where, case) != ("residual", "all_minus_inf"):  # relu(-inf) is 0
        assert not out[1].isfinite().all(), "the special value did not reach the output"
    assert out[0].isfinite().all(), "the other image must keep its values"


# attention, training -> the operator that computes its gates
GATE_OPERATORS = {("se", False): "se_gate", ("se", True): "squeeze_excite", ("cbam", False): "cbam_gates",
                  ("cbam", True): "cbam"}


def saturated(name: str, channels: int, logit: float) -> nn.Module:
    """SE or CBAM whose gate logits are about +-``logit``: the MLP's output bias alternates in sign over the
    channels, and CBAM's spatial BatchNorm scales its normalised map by ``logit``."""
    module = randomized_attention(name, channels)
    mlp = module if name == "se" else module.channel
    with torch.no_grad():
        mlp.fc2.bias[::2], mlp.fc2.bias[1::2] = logit, -logit
        if name == "cbam":
            module.spatial.conv.bn.weight.fill_(logit)
    return module


@pytest.mark.parametrize("logit", [1e30, 3e38])
@pytest.mark.parametrize(
    "name, train", GATE_OPERATORS, ids=[f"{n}-{'train' if t else 'eval'}" for n, t in GATE_OPERATORS]
)
def test_gates_saturate_to_0_and_1_as_torchs_sigmoid_does(counting, name, train, logit):
    """Finite logits far beyond exp's float32 range give gates of exactly 0 and 1 (never inf / inf = NaN),
    and zero gradients through them, on the kernels' inference gates and training nodes as in torch."""
    module = saturated(name, 16, logit).train(train)
    plain_module = copy.deepcopy(module)
    x, upstream = torch.randn(2, 16, 7, 7), torch.randn(2, 16, 7, 7)

    def run(m: nn.Module) -> list[torch.Tensor]:
        if train:
            return output_and_grads(m, m, x, upstream)
        with torch.no_grad():
            return [m(x.clone())]

    ours = run(module)
    assert counting.calls[GATE_OPERATORS[name, train]] == 1
    with plain_route():
        theirs = run(plain_module)
    for a, b in zip(ours, theirs, strict=True):
        assert_close(a, b, rtol=1e-4, atol=1e-5)
    out = theirs[0]
    assert (out[:, 1::2] == 0).all() and (out[:, ::2] == x[:, ::2]).any(), "the gates did not saturate"


@pytest.mark.parametrize("sign", [1.0, -1.0], ids=["plus_inf", "minus_inf"])
@pytest.mark.parametrize("name", ["se", "cbam"])
def test_training_nodes_give_torchs_nan_pattern_for_an_infinite_input(counting, name, sign):
    """An infinite input value makes its channel's descriptors infinite, the MLP's gate gradients NaN, and the
    hidden units it feeds inf (on) or 0 (off). The ReLU's backward gives a unit that was off a zero gradient,
    selected as torch's is (a multiply by 0 would make it NaN): fc1's gradient is NaN only where torch's is.
    Units 0-3 are off for every descriptor (a bias of -10, and a weight on the infinite channel that takes
    its value to -inf), so their fc1 gradients hold finite values beside the infinite channel's NaN."""
    module = randomized_attention(name, 16, rd_channels=8).train()
    fc1 = module.fc1 if name == "se" else module.channel.fc1
    with torch.no_grad():
        fc1.bias[:4] = -10.0
        fc1.weight[:4, 3] = -0.3 * sign
    plain_module = copy.deepcopy(module)
    x, upstream = torch.randn(2, 16, 5, 7), torch.randn(2, 16, 5, 7)
    x[1, 3, 2, 4] = sign * INF
    ours = output_and_grads(module, module, x, upstream)
    assert counting.calls[GATE_OPERATORS[name, True]] == 1
    with plain_route():
        theirs = output_and_grads(plain_module, plain_module, x, upstream)
    for a, b in zip(ours, theirs, strict=True):
        assert_close(a, b, rtol=1e-4, atol=1e-5, equal_nan=True)
    fc1_grad = parameter_gradient(theirs, module, "fc1.weight" if name == "se" else "channel.fc1.weight")
    assert fc1_grad.isnan().any() and fc1_grad.isfinite().any(), "no NaN beside finite values: nothing was compared"


# --- the modules: kernels or not, the same outputs ----------------------------------------------------


@pytest.mark.parametrize("context", [torch.no_grad, torch.inference_mode])
@pytest.mark.parametrize("in_place", [False, True], ids=["new_output", "in_place"])
@pytest.mark.parametrize("shape", [(1, 17, 7, 7), (3, 64, 13, 11), (2, 24, 56, 56)], ids=shape_id)
@pytest.mark.parametrize("name", MODULES)
def test_module_gives_the_same_output_with_kernels_as_without(counting, name, shape, in_place, context):
    module = randomized_attention(name, shape[1])
    module.gate_in_place = in_place
    x = torch.randn(shape)
    with context():
        expected = gated_by_maps(module, x)
        with plain_route():
            plain = module(x.clone())
        fused_input = x.clone()
        fused = module(fused_input)
    gate = "gate_" if in_place else "gate"
    assert counting.calls == {op: 1 for op in KERNEL_CALLS[name] | {gate}}
    assert_close(fused, plain)
    assert_close(fused, expected, rtol=0, atol=1e-5)
    assert (fused - x).abs().max() > 0.1, "the attention left its input unchanged: nothing was compared"
    if in_place:
        assert fused.data_ptr() == fused_input.data_ptr()
    else:
        assert torch.equal(fused_input, x)


def test_cbam_resnet_gives_the_same_logits_with_kernels_as_without(counting):
    torch.manual_seed(0)
    model = wake(build_model("resnet18", attention="cbam")).eval()
    blocks = sum(isinstance(m, Cbam) for m in model.modules())
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        fused = model(x)
        with plain_route():
            plain = model(x)
    assert blocks == 8
    # each block folds its last BatchNorm in and applies CBAM's gates with its shortcut add and ReLU in one
    # call (attnzoo.surgery.resnet)
    assert counting.calls["cbam_bn_tail_"] == blocks
    assert counting.calls["cbam_gates"] + counting.calls["gate_add_relu_"] == 0
    assert counting.calls["gate"] + counting.calls["gate_"] == 0
    assert_close(fused, plain)
    assert_attention_matters(model, x)


def test_cbam_under_vmap_gives_the_per_example_outputs_by_the_plain_formulation(counting):
    module = randomized_attention("cbam", 16)
    x = torch.randn(3, 2, 16, 7, 7)
    with torch.no_grad():
        expected = torch.stack([gated_by_maps(module, example) for example in x])
        out = torch.func.vmap(module)(x)
    assert not counting.calls  # torch.func transforms take the plain formulation (runs_eagerly)
    assert_close(out, expected, rtol=0, atol=1e-5)


# --- inputs the kernels do not take: the plain route, the same values ---------------------------------

NOT_FOR_THE_KERNELS = {  # input, context, tolerance against gated_by_maps under the same context
    "channels_last": (
        lambda: torch.randn(2, 24, 9, 9).contiguous(memory_format=torch.channels_last),
        contextlib.nullcontext,
        dict(rtol=0, atol=1e-5),
    ),
    "float64": (lambda: torch.randn(2, 24, 9, 9, dtype=torch.float64), contextlib.nullcontext, {}),
    "non_contiguous_slice": (lambda: torch.randn(2, 48, 9, 9)[:, ::2], contextlib.nullcontext, dict(rtol=0, atol=1e-5)),
    "batch_0": (lambda: torch.randn(0, 24, 9, 9), contextlib.nullcontext, {}),
    "cpu_autocast_bfloat16": (
        lambda: torch.randn(2, 24, 9, 9),
        lambda: torch.autocast("cpu", dtype=torch.bfloat16),
        dict(rtol=1.6e-2, atol=1e-2),  # bfloat16's resolution, met by routes that round differently
    ),
}


@pytest.mark.parametrize("case", NOT_FOR_THE_KERNELS)
@pytest.mark.parametrize("name", MODULES)
def test_input_the_kernels_do_not_take_goes_the_plain_route(counting, name, case):
    make_input, context, tolerance = NOT_FOR_THE_KERNELS[case]
    x = make_input()
    module = randomized_attention(name, x.shape[1]).to(x.dtype)
    with torch.no_grad(), context():
        out = module(x)
        expected = gated_by_maps(module, x)
    assert not counting.calls
    assert out.shape == x.shape
    assert_close(out, expected, check_dtype=False, **tolerance)


MIXED_WEIGHTS = [  # attention, a submodule whose weights the kernels would read
    ("se", "fc1"), ("se", "fc2"), ("cbam", "channel.fc2"), ("cbam", "spatial.conv.conv"), ("cbam", "spatial.conv.bn"),
    ("cbam_channel", "fc1"), ("cbam_spatial", "conv.bn"),
]


@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16], ids=str)
@pytest.mark.parametrize("train", [False, True], ids=["eval", "train"])
@pytest.mark.parametrize("name, part", MIXED_WEIGHTS, ids=[f"{n}.{p}" for n, p in MIXED_WEIGHTS])
def test_weights_of_another_dtype_than_the_input_raise_torchs_error(counting, name, part, train, dtype):
    """A float32 input and one submodule converted alone: the kernels that read its weights decline, so the
    module raises the plain route's mixed-dtype error, and the gated tail falls back to the block's forward."""
    module = randomized_attention(name, 16).train(train)
    module.get_submodule(part).to(dtype)
    x = torch.randn(2, 16, 7, 7)
    with torch.set_grad_enabled(train):
        with plain_route(), pytest.raises(RuntimeError) as plain:
            module(x.clone().requires_grad_(train))
        with pytest.raises(RuntimeError) as ours:
            module(x.clone().requires_grad_(train))
    assert str(ours.value) == str(plain.value)
    # no operator that reads the weights ran (a submodule whose own weights match may still pool on the kernels)
    assert not counting.calls.keys() & set(GATE_OPERATORS.values())
    module.gate_in_place = True
    with torch.no_grad():
        assert module.fusable_gates(x) is None


WEIGHT_OPERATORS = {"se": {"squeeze_excite", "se_gate"}, "cbam": {"cbam", "cbam_gates"}}


def assert_declined_with_the_plain_routes_values(counting, module: nn.Module, operators: set[str]):
    """Runs ``module`` (changed so that the kernels must decline it) in its mode with gradients, then in eval
    without: none of ``operators`` runs, and output and gradients equal the plain route's on a copy. Returns
    the input and the plain route's eval output."""
    plain_module = copy.deepcopy(module)
    x, upstream = torch.randn(2, 17, 13, 11), torch.randn(2, 17, 13, 11)
    ours = output_and_grads(module, module, x, upstream)
    with torch.no_grad():
        ours_no_grad = module.eval()(x.clone())
    with plain_route():
        plain = output_and_grads(plain_module, plain_module, x, upstream)
        with torch.no_grad():
            plain_no_grad = plain_module.eval()(x.clone())
    assert not counting.calls.keys() & operators
    for actual, expected in zip([*ours, ours_no_grad], [*plain, plain_no_grad]):
        assert torch.isfinite(actual).all()
        assert_close(actual, expected, rtol=1e-4, atol=1e-5)
    return x, plain_no_grad


@pytest.mark.parametrize("train", [False, True], ids=["eval", "train"])
@pytest.mark.parametrize("padding_mode", ["reflect", "circular"])
def test_cbam_whose_spatial_conv_pads_other_than_with_zeros_takes_the_plain_route(counting, padding_mode, train):
    """The kernels' spatial convolution pads with zeros; a conv that pads otherwise is left to torch (eval and
    training, with and without gradient), with the plain route's values."""
    module = randomized_attention("cbam", 17).train(train)
    module.spatial.conv.conv.padding_mode = padding_mode
    x, plain_no_grad = assert_declined_with_the_plain_routes_values(counting, module, WEIGHT_OPERATORS["cbam"])
    with plain_route(), torch.no_grad():
        zero_padded = copy.deepcopy(module)
        zero_padded.spatial.conv.conv.padding_mode = "zeros"
        assert (zero_padded(x.clone()) - plain_no_grad).abs().max() > 1e-3, "the padding mode changed nothing"


@pytest.mark.parametrize("train", [False, True], ids=["eval", "train"])
@pytest.mark.parametrize("layer", ["fc1", "fc2"])
@pytest.mark.parametrize("name", WEIGHT_OPERATORS)
def test_an_mlp_layer_without_its_bias_takes_the_plain_route(counting, name, layer, train):
    """The C++ MLP reads both biases; a module whose MLP layer has its bias removed is computed by torch (eval
    and training), with the plain route's values, rather than failing on the kernels' weight checks."""
    module = randomized_attention(name, 17).train(train)
    excitation = module.channel if name == "cbam" else module
    setattr(excitation.get_submodule(layer), "bias", None)
    assert_declined_with_the_plain_routes_values(counting, module, WEIGHT_OPERATORS[name])


def widened_fc1(module: nn.Module, **conv: int) -> None:
    """SE's ``fc1`` swapped for a convolution the C++ MLP does not compute (its plain route does)."""
    fc1 = module.fc1
    module.fc1 = nn.Conv2d(fc1.in_channels, fc1.out_channels, **conv)


def spectral_normed_fc2(module: nn.Module, spatial_gate: nn.Module | None = None) -> None:
    """The MLP's ``fc2`` weight computed by spectral norm, whose power iteration moves on every read in training;
    for CBAM optionally a spatial gate the kernels decline, so that the module takes its Python training node."""
    nn.utils.parametrizations.spectral_norm(module.channel.fc2 if spatial_gate else module.fc2)
    if spatial_gate is not None:
        module.spatial.gate = spatial_gate


MLP_SWAPS = {
    "se_fc1_grouped": ("se", lambda m: widened_fc1(m, kernel_size=1, groups=8)),
    "se_fc1_3x3": ("se", lambda m: widened_fc1(m, kernel_size=3, padding=1)),
    "se_fc2_spectral_norm": ("se", spectral_normed_fc2),
    "cbam_fc2_spectral_norm": ("cbam", lambda m: spectral_normed_fc2(m, nn.Hardsigmoid())),
}


@pytest.mark.parametrize("train", [False, True], ids=["eval", "train"])
@pytest.mark.parametrize("swap", MLP_SWAPS)
def test_an_mlp_layer_other_than_a_plain_pointwise_conv_takes_the_plain_route(counting, swap, train):
    """A grouped or wider ``fc1``, or a weight a parametrization computes, is left to the layer's own forward,
    read once per step as the plain formulation reads it: no kernel error, and spectral norm's power iteration
    (its u, v buffers) moves once, not again for the kernels' weight arguments."""
    name, swap_layer = MLP_SWAPS[swap]
    module = randomized_attention(name, 64).train(train)
    swap_layer(module)
    reference = copy.deepcopy(module)
    routes = {"kernels": contextlib.nullcontext, "plain": plain_route}
    x, upstream = torch.randn(2, 64, 9, 7), torch.randn(2, 64, 9, 7)
    with plain_route():
        expected = [*output_and_grads(reference.forward_plain, reference, x, upstream), *reference.buffers()]
    for route, context in routes.items():
        ours = copy.deepcopy(module)
        with context():
            actual = [*output_and_grads(ours, ours, x, upstream), *ours.buffers()]
        assert not counting.calls.keys() & WEIGHT_OPERATORS[name], route
        for got, want in zip(actual, expected, strict=True):
            assert torch.isfinite(got).all()
            assert_close(got, want, rtol=1e-4, atol=1e-5, msg=lambda m: f"{route}: {m}")


# --- no kernels: disabled or failed to build ----------------------------------------------------------

DISABLED_SCRIPT = """
import warnings
import torch
from attention_helpers import gated_by_maps, randomized_attention
from attnzoo.attention import kernels


def no_build():
    raise AssertionError("built although disabled")


kernels._build = no_build
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    assert kernels.fused_ops() is None
    for name in ("cbam", "cbam_channel", "cbam_spatial"):
        module = randomized_attention(name, 17)
        x = torch.randn(2, 17, 13, 11)
        with torch.no_grad():
            out = module(x)
        torch.testing.assert_close(out, gated_by_maps(module, x), rtol=0, atol=1e-5)
        assert (out - x).abs().max() > 0.1
assert not caught, [str(w.message) for w in caught]
print("plain route served")
"""


def run_python(script: str, **env: str) -> subprocess.CompletedProcess:
    """``script`` in a fresh interpreter on this checkout (and the tests' helpers), with ``env`` added."""
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'tests'}", **env}
    command = [sys.executable, "-c", script]
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


def test_disabled_kernels_are_never_built_and_nothing_warns():
    result = run_python(DISABLED_SCRIPT, **{DISABLE_VARIABLE: "0"})
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "plain route served"
    assert "attnzoo" not in result.stderr, result.stderr


@pytest.mark.parametrize(
    "error, cause",
    [
        (RuntimeError("Error building extension 'attnzoo_gating'\ncompiler output"), "Error building extension"),
        (ImportError(), "ImportError"),
    ],
    ids=["compiler_error", "empty_message"],
)
def test_a_failed_build_warns_once_naming_its_cause_and_the_plain_route_serves(monkeypatch, error, cause):
    def failing_build():
        raise error

    monkeypatch.setattr(kernels, "_build", failing_build)
    monkeypatch.delenv(DISABLE_VARIABLE, raising=False)
    monkeypatch.setattr(kernels, "_state", {})  # as in a process that has not asked for the kernels yet
    module = randomized_attention("cbam", 17)
    x = torch.randn(2, 17, 13, 11)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with torch.no_grad():
            out = module(x)  # the first use tries the build
        assert fused_ops() is None
        with torch.no_grad():
            again = module(x)
    messages = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
    assert len(messages) == 1, messages
    assert cause in messages[0] and "compiler output" not in messages[0]
    assert DISABLE_VARIABLE in messages[0]
    expected = gated_by_maps(module, x)
    assert_close(out, expected, rtol=0, atol=1e-5)
    assert_close(again, expected, rtol=0, atol=1e-5)


# --- where the kernels can be built, they must be -----------------------------------------------------

BUILD_SCRIPT = """
from attnzoo.attention.kernels import _build
try:
    _build()
    print("built in a fresh process")
except Exception as error:
    print(str(error)[-4000:])
"""


def test_kernels_are_built_wherever_they_are_not_disabled():
    """CI has a C++ compiler: a build that fails there must fail the suite, not quietly take the slower
    plain route that every other test here would then skip."""
    if not kernels.kernels_wanted():
        assert fused_ops() is None, f"{DISABLE_VARIABLE} turns the kernels off but they were loaded"
        return
    if fused_ops() is None:  # the build's own error, which the one-line warning shortens, from a fresh process
        build = run_python(BUILD_SCRIPT)
        pytest.fail(
            "the fused CPU kernels (attnzoo/attention/csrc/gating.cpp) did not build, so SE and CBAM run "
            "their slower plain route. Install a C++ compiler and ninja, or fix the build; set "
            f"{DISABLE_VARIABLE}=0 only to test the plain route on a machine without a compiler. "
            f"Build output:\n{build.stdout}{build.stderr}"
        )


def test_torch_routes_turns_the_kernels_off_within_its_block_only(counting):
    model = wake(build_model("resnet18", attention="cbam")).eval()
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        with kernels.torch_routes():
            assert kernels.fused_ops() is None
            plain = model(x)
        assert not counting.calls, "an operator ran inside torch_routes()"
        fused = model(x)
    assert counting.calls["cbam_bn_tail_"] == 8
    assert_close(fused, plain)


def test_mac_count_sees_the_gating_the_kernels_fuse():
    """count_macs runs the torch routes: CBAM's gating multiplies are counted as before the kernels."""
    from attnzoo.flops import count_macs

    model = build_model("resnet18", attention="cbam").eval()
    with kernels.torch_routes():
        expected = count_macs(model, (3, 64, 64))
    counted = count_macs(model, (3, 64, 64))
    assert counted.total == expected.total and counted.attention(model) == expected.attention(model) > 0


@pytest.mark.parametrize("value, on", [("false", False), ("OFF", False), ("no", False), ("1", True), ("", True)])
def test_the_switch_reads_the_usual_spellings(monkeypatch, value, on):
    monkeypatch.setenv(DISABLE_VARIABLE, value)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert kernels.kernels_wanted() is on


def test_an_unknown_switch_value_warns_and_leaves_the_kernels_on(monkeypatch):
    monkeypatch.setenv(DISABLE_VARIABLE, "garbage")
    with pytest.warns(RuntimeWarning, match="'garbage' is not 0/1"):
        assert kernels.kernels_wanted()


def test_a_failed_build_names_the_line_that_says_why():
    """ninja's message starts with the compile command; the missing compiler is further down."""
    error = RuntimeError("Error building extension 'x': [1/2] c++ -MMD -MF gating.o.d -O3 ...\n"
                         "/bin/sh: 1: c++: not found\nninja: build stopped: subcommand failed.")
    assert kernels.failure_reason(error) == "/bin/sh: 1: c++: not found"
    assert kernels.failure_reason(RuntimeError("gating.cpp:3:1: error: expected ';'")).endswith("expected ';'")
    assert kernels.failure_reason(ValueError("")) == "ValueError"


# hooks on what the eager routes never call: the plain formulation runs, so each fires and sees its input
SUBMODULE_HOOKS = {"se": ["fc1", "act", "gate"], "cbam": ["channel", "channel.gate", "spatial", "spatial.conv"]}


@pytest.mark.parametrize("train", [False, True], ids=["eval", "train"])
@pytest.mark.parametrize("name, submodule", [(n, s) for n, subs in SUBMODULE_HOOKS.items() for s in subs])
def test_hooks_inside_an_attention_fire_with_the_kernels_on(ops, name, submodule, train):
    model = wake(build_model("resnet18", attention=name)).train(train)
    attention = model.layer1[0].se
    calls = []
    handle = attention.get_submodule(submodule).register_forward_hook(lambda m, i, o: calls.append(o.shape))
    x = torch.randn(4, 3, 64, 64)  # 2x2 maps in the last stage: its train-mode BatchNorm normalises 16 values
    try:
        with torch.set_grad_enabled(train):
            watched = model(x)
    finally:
        handle.remove()
    assert len(calls) == 1, f"the hook on se.{submodule} fired {len(calls)} times"
    with torch.set_grad_enabled(train), plain_route():
        plain = model(x)
    # train-mode BatchNorm on a small batch amplifies float32 rounding differences between routes
    assert_close(watched, plain, rtol=1e-4, atol=(1e-4 if train else 1e-6) * plain.abs().max().item())


def test_cbam_on_the_plain_route_refuses_double_backward_with_the_workaround():
    module = randomized_attention("cbam", 17).train()
    x = torch.randn(2, 17, 7, 7, requires_grad=True)
    with plain_route(), pytest.raises(RuntimeError, match="not twice differentiable.*symbolic_trace"):
        torch.autograd.grad(module(x).square().sum(), x, create_graph=True)


@pytest.mark.parametrize("kernel_size", [3, 7])
@pytest.mark.parametrize("shape", [(3, 16, 1, 1), (2, 32, 2, 3), (4, 16, 5, 9), (1, 8, 13, 4)], ids=shape_id)
def test_cbam_training_node_convolves_as_torch_does_at_maps_smaller_and_larger_than_its_filter(
    counting, shape, kernel_size
):
    """The training node's spatial convolution and its backward are loops: zero padding on every side of maps
    narrower, shorter or larger than the filter, each tap's weight gradient, against torch's convolution."""
    torch.manual_seed(0)
    module = randomized_attention("cbam", shape[1], spatial_kernel_size=kernel_size).train()
    x, upstream = torch.randn(shape), torch.randn(shape)
    node = output_and_grads(module, module, x, upstream)
    assert counting.calls["cbam"] == 1
    with plain_route():
        plain = output_and_grads(module, module, x, upstream)
    conv_grad = parameter_gradient(node, module, "spatial.conv.conv.weight")
    assert conv_grad.shape[-2:] == (kernel_size, kernel_size) and conv_grad.abs().max() > 1e-3
    for ours, theirs in zip(node, plain, strict=True):
        assert_close(ours, theirs, rtol=1e-4, atol=max(1e-5, 2e-6 * theirs.abs().max().item()))
