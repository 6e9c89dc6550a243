"""Gating in place: only where surgery allowed it, no gradient is recorded and no hook is watching."""

import pytest
import timm
import torch

from attnzoo.attention import create_attention
from attnzoo.attention.fused import allow_gating_in_place

GATED = ["se", "cbam", "cbam_channel", "cbam_spatial"]


def module(name):
    m = create_attention(name, 32).eval()
    for p in m.parameters():
        torch.nn.init.normal_(p, std=0.5)
    return m


@pytest.mark.parametrize("name", GATED)
def test_allowed_module_overwrites_its_input_with_the_same_output(name):
    m = module(name)
    x = torch.randn(2, 32, 7, 7)
    with torch.no_grad():
        expected = m(x.clone())
        m.gate_in_place = True
        out = m(x)
    assert out.data_ptr() == x.data_ptr()
    assert torch.equal(out, expected)


@pytest.mark.parametrize("name", GATED)
def test_module_created_alone_never_touches_its_input(name):
    x = torch.randn(2, 32, 7, 7)
    before = x.clone()
    with torch.no_grad():
        module(name)(x)
    assert torch.equal(x, before)


@pytest.mark.parametrize("name", GATED)
def test_a_hook_keeping_the_input_sees_it_unchanged(name):
    m = module(name)
    m.gate_in_place = True
    seen = []
    m.register_forward_hook(lambda mod, args, out: seen.append(args[0]))
    x = torch.randn(2, 32, 7, 7)
    before = x.clone()
    with torch.no_grad():
        m(x)
    assert torch.equal(seen[0], before)


def test_recording_gradients_keeps_the_input():
    m = module("se")
    m.gate_in_place = True
    x = torch.randn(2, 32, 7, 7)
    before = x.clone()
    m(x).sum().backward()
    assert torch.equal(x, before)


@pytest.mark.parametrize("name", ["resnet18_se", "resnet18_cbam", "mobilenetv2_100_cbam"])
def test_whole_models_compute_the_same_logits_with_gating_in_place(name):
    plain = timm.create_model(name).eval()
    for bn in (m for m in plain.modules() if isinstance(m, torch.nn.BatchNorm2d)):
        torch.nn.init.uniform_(bn.weight, 0.5, 1.5)  # wake the zero-initialised residual branches
    fast = timm.create_model(name).eval()
    fast.load_state_dict(plain.state_dict())
    assert allow_gating_in_place(fast) > 0
    x = torch.randn(2, 3, 64, 64)
    with torch.inference_mode():
        assert torch.equal(fast(x), plain(x))
