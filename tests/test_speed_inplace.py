"""Gating in place: only where surgery allowed it, no gradient is recorded and no hook is watching."""

import pytest
import timm
import torch
from torch import nn

from attention_helpers import assert_equal_to_rounding
from attnzoo.attention import create_attention

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


def attention_modules(model):
    """The attention modules in block slots (not the parts inside a composite such as CBAM)."""
    gated = [m for m in model.modules() if hasattr(type(m), "gate_in_place")]
    parts = {id(part) for m in gated for part in list(m.modules())[1:]}
    return [m for m in gated if id(m) not in parts]


@pytest.mark.parametrize("name", ["resnet18_se", "resnet18_cbam", "mobilenetv2_100_cbam", "cnn3_cbam"])
def test_surgery_on_builtin_blocks_gates_in_place_with_the_same_logits(name):
    fast = timm.create_model(name).eval()
    for bn in (m for m in fast.modules() if isinstance(m, nn.BatchNorm2d)):
        nn.init.uniform_(bn.weight, 0.5, 1.5)  # wake the zero-initialised residual branches
    assert attention_modules(fast) and all(m.gate_in_place for m in attention_modules(fast))
    slow = timm.create_model(name).eval()
    slow.load_state_dict(fast.state_dict())
    for m in attention_modules(slow):
        m.gate_in_place = False
    in_chans = next(m for m in fast.modules() if isinstance(m, nn.Conv2d)).in_channels
    x = torch.randn(2, in_chans, 28, 28)
    with torch.inference_mode():
        if name.endswith("_se"):  # SE's in-place route also folds the last BN in: equal to float rounding
            assert_equal_to_rounding(fast(x), slow(x))
        else:
            assert torch.equal(fast(x), slow(x))
