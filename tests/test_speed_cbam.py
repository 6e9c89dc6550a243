"""CBAM's fast routes compute exactly the reference (attention_maps) form, in forward and backward."""

import pytest
import torch

from attnzoo.attention import create_attention
from attnzoo.attention.fused import ChannelGatedPool, ChannelPool, channel_then_spatial_gate


def randomized_cbam(channels, dtype=torch.float32, train=False):
    torch.manual_seed(0)
    cbam = create_attention("cbam", channels, rd_ratio=1 / 4).to(dtype).train(train)
    for p in cbam.parameters():
        torch.nn.init.normal_(p, std=0.5)
    return cbam


def reference(cbam, x):
    """The paper form, from the gates attention_maps computes."""
    maps = cbam.attention_maps(x)
    return x * maps["channel"][:, :, None, None] * maps["spatial"]


@pytest.mark.parametrize("train", [False, True], ids=["eval", "train"])
def test_training_route_matches_reference_in_forward_and_gradients_fp32(train):
    cbam = randomized_cbam(256, train=train)
    x = torch.randn(4, 256, 28, 28, requires_grad=True)
    grad = torch.randn(4, 256, 28, 28)
    params = list(cbam.parameters())
    fast = cbam(x)
    expected = reference(cbam, x)
    # the fused channel gate sums in another order than ATen; see the inference test below
    torch.testing.assert_close(fast, expected, rtol=1e-5, atol=1e-5 * expected.abs().max().item())
    # gradients through logits of +-350 magnify the forward's rounding: SE's training tests' tolerance
    for a, b in zip(torch.autograd.grad(fast, [x, *params], grad), torch.autograd.grad(expected, [x, *params], grad)):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5 * max(1.0, b.abs().max().item()))


@pytest.mark.parametrize("context", [torch.no_grad, torch.inference_mode])
def test_inference_route_matches_reference_and_leaves_its_input_alone(context):
    cbam = randomized_cbam(256)
    x = torch.randn(4, 256, 28, 28)
    before = x.clone()
    with context():
        out = cbam(x)
        expected = reference(cbam, x)
    # the fused gates sum in another order than ATen; with these weights the MLP's logits reach +-350, so
    # float32 rounding moves the output by a few 1e-6 of its scale
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5 * expected.abs().max().item())
    assert torch.equal(x, before)


def test_compiler_route_matches_reference(monkeypatch):
    cbam = randomized_cbam(64)
    x = torch.randn(2, 64, 9, 9)
    monkeypatch.setattr(torch.compiler, "is_compiling", lambda: True)
    assert (cbam(x) - reference(cbam, x)).abs().max() < 1e-5


@pytest.mark.parametrize("train", [False, True], ids=["eval", "train"])
def test_gradcheck_double(train):
    cbam = randomized_cbam(8, torch.double, train=train)
    x = torch.randn(2, 8, 5, 6, dtype=torch.double, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, *p: cbam(x), (x, *cbam.parameters()))


def test_channel_max_gradient_is_shared_among_tied_channels_as_torch_amax_does():
    x = torch.randn(2, 1, 4, 4).repeat(1, 3, 1, 1).requires_grad_()  # three identical channels
    c = torch.ones(2, 3, 1, 1, requires_grad=True)
    grad = torch.randn(2, 2, 4, 4)
    pooled, _ = ChannelGatedPool.apply(x, c)
    y = x * c
    expected = torch.cat((y.mean(1, keepdim=True), y.amax(1, keepdim=True)), 1)
    assert torch.allclose(pooled, expected, atol=1e-6)
    for a, b in zip(torch.autograd.grad(pooled, [x, c], grad), torch.autograd.grad(expected, [x, c], grad)):
        assert torch.allclose(a, b, atol=1e-6)


def test_output_may_be_updated_in_place_like_a_resnet_shortcut_add():
    cbam = randomized_cbam(32, torch.double)
    x = torch.randn(2, 32, 6, 6, dtype=torch.double, requires_grad=True)
    shortcut = torch.randn(2, 32, 6, 6, dtype=torch.double)
    out = cbam(x)
    out += shortcut  # what timm's blocks do to their attention's output
    (expected_grad,) = torch.autograd.grad((reference(cbam, x) + shortcut).square().sum(), x)
    (grad,) = torch.autograd.grad(out.square().sum(), x)
    assert torch.allclose(grad, expected_grad)


def saved_bytes(fn, x):
    """Bytes of the distinct tensors autograd keeps for backward while ``fn(x)`` runs."""
    storages = {}

    def pack(t):
        storages[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn(x)
    return sum(storages.values())


def test_training_saves_one_full_size_activation_where_the_plain_form_saves_two():
    cbam = randomized_cbam(64, train=True)
    x = torch.randn(8, 64, 16, 16, requires_grad=True)
    small = x.nbytes // 4  # gates, pooled maps and parameters are far smaller than x
    assert x.nbytes <= saved_bytes(cbam, x) < x.nbytes + small
    assert saved_bytes(lambda x: reference(cbam, x), x) >= 2 * x.nbytes


def test_gate_function_accepts_any_spatial_gate():
    x = torch.randn(2, 4, 3, 3, dtype=torch.double, requires_grad=True)
    c = torch.rand(2, 4, 1, 1, dtype=torch.double, requires_grad=True)
    w = torch.randn(1, 2, 1, 1, dtype=torch.double, requires_grad=True)

    def gate(maps):
        return torch.tanh(torch.nn.functional.conv2d(maps, w))

    assert torch.autograd.gradcheck(lambda x, c, w: channel_then_spatial_gate(x, c, gate), (x, c, w))


def test_descriptor_max_gradient_is_shared_among_tied_positions_as_torch_amax_does():
    x = torch.zeros(2, 3, 4, 4)
    x[0, 0, 1:3, 1:3] = 1.0  # four tied maxima; the other channels are all ties at 0
    x.requires_grad_()
    grads = torch.randn(2, 3), torch.randn(2, 3)
    fast = ChannelPool.apply(x)
    expected = (x.mean((2, 3)), x.amax((2, 3)))
    assert all(torch.allclose(a, b, atol=1e-7) for a, b in zip(fast, expected))
    (a,) = torch.autograd.grad(fast, x, grads)
    (b,) = torch.autograd.grad(expected, x, grads)
    assert torch.allclose(a, b, atol=1e-7)


@pytest.mark.parametrize("grad", [False, True], ids=["inference", "training"])
def test_channels_last_input_takes_the_same_routes_to_the_same_values(grad):
    cbam = randomized_cbam(64)
    x = torch.randn(2, 64, 9, 9).contiguous(memory_format=torch.channels_last).requires_grad_(grad)
    with torch.set_grad_enabled(grad):
        assert (cbam(x) - reference(cbam, x)).abs().max() < 1e-5
