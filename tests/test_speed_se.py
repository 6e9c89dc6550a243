"""SE's training route (one autograd node) computes the reference form and its gradients."""

import pytest
import torch
from timm.layers import SEModule
from torch.testing import assert_close

from attnzoo.attention import create_attention


def randomized_se(channels, dtype=torch.float32, **kwargs):
    se = create_attention("se", channels, **kwargs).to(dtype)
    for p in se.parameters():
        torch.nn.init.normal_(p, std=0.5)
    return se


def reference(se, x):
    return x * se.attention_maps(x)["channel"][:, :, None, None]


def test_gradcheck_double():
    se = randomized_se(16, torch.double, rd_ratio=1 / 4)
    x = torch.randn(2, 16, 5, 6, dtype=torch.double, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, *p: se(x), (x, *se.parameters()))


@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
def test_forward_and_gradients_match_timms_semodule_fp32(layout):
    ours = randomized_se(256)
    theirs = SEModule(256)
    theirs.load_state_dict(ours.state_dict())
    x = torch.randn(4, 256, 28, 28).contiguous(memory_format=layout).requires_grad_()
    grad = torch.randn(4, 256, 28, 28)
    out, expected = ours(x), theirs(x)
    assert_close(out, expected)  # timm's function; the fused gate sums in another order
    for a, b in zip(torch.autograd.grad(out, [x, *ours.parameters()], grad),
                    torch.autograd.grad(expected, [x, *theirs.parameters()], grad)):
        assert (a - b).abs().max() <= 1e-5 * max(1.0, b.abs().max())


def test_frozen_parameters_get_no_gradient_and_the_rest_do():
    se = randomized_se(32)
    se.fc1.requires_grad_(False)
    x = torch.randn(2, 32, 4, 4, requires_grad=True)
    se(x).square().sum().backward()
    assert se.fc1.weight.grad is None and se.fc2.weight.grad is not None and x.grad is not None
