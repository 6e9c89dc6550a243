"""gate_init="identity": SE and CBAM gates start at exactly 1, so preserve=True needs no compensation."""

import pytest
import timm
import torch

import attnzoo
from attnzoo.attention.registry import create_attention
from attnzoo.errors import SurgeryError


@pytest.mark.parametrize("attn", ["se", "cbam", "cbam_channel", "cbam_spatial"])
def test_identity_gate_passes_features_unchanged_at_step_zero(attn):
    module = create_attention(attn, 32, gate_init="identity").train()
    x = torch.randn(3, 32, 6, 6, requires_grad=True)
    y = module(x)
    torch.testing.assert_close(y, x, rtol=0, atol=0)  # exact, and fails on NaN
    y.square().sum().backward()  # the gates still learn
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in module.parameters())


@pytest.mark.parametrize("attn", ["se", "cbam"])
def test_paper_gate_halves_features_at_zero_logits(attn):
    module = create_attention(attn, 32)
    gain = module.init_identity()
    x = torch.randn(2, 32, 5, 5)
    with torch.no_grad():
        torch.testing.assert_close(module(x), x * gain, rtol=0, atol=0)
    assert gain == (0.5 if attn == "se" else 0.25)


@pytest.mark.parametrize("attn", ["se", "cbam"])
def test_preserve_with_identity_gate_leaves_the_backbone_untouched(attn):
    torch.manual_seed(0)
    model = timm.create_model("resnet18", num_classes=10, zero_init_last=False)
    with torch.no_grad():  # non-trivial last-BN weights, so the residual branch (and the gate) matters
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0, 0.1)
    model.eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        reference = model(x)
        attnzoo.inject(model, attn, preserve=True, gate_init="identity")
        model.eval()
        torch.testing.assert_close(model(x), reference, rtol=0, atol=0)
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # no BN rescaled: nothing to compensate
    # the injected gates are live: moving them away from identity changes the logits
    with torch.no_grad():
        for block in (model.layer1[0], model.layer4[1]):
            gate = block.se if attn == "se" else block.se.channel
            gate.fc2.bias.fill_(-3.0)
        assert (model(x) - reference).abs().max() > 1e-2


def test_paper_gate_with_preserve_rescales_the_last_bn():
    model = timm.create_model("resnet18", zero_init_last=False)
    weight = model.layer1[0].bn2.weight.detach().clone()
    attnzoo.inject(model, "se", preserve=True)
    torch.testing.assert_close(model.layer1[0].bn2.weight.detach(), weight * 2, rtol=0, atol=0)


def test_identity_gate_is_recorded_and_rebuilt():
    model = attnzoo.inject(timm.create_model("resnet18"), "se", gate_init="identity")
    rebuilt = attnzoo.models.model_from_config(attnzoo.models.model_config(model))
    assert type(rebuilt.layer2[0].se.gate).__name__ == "ScaledSigmoid"


@pytest.mark.parametrize("kwargs, match", [
    ({"gate_init": "ones"}, "gate_init: 'ones' is not one of half, identity"),
    ({"gate_init": "identity", "gate_layer": "hard_sigmoid"}, "cannot combine with gate_layer"),
])
def test_bad_gate_init_is_a_one_line_error(kwargs, match):
    with pytest.raises(SurgeryError, match=match):
        attnzoo.inject(timm.create_model("resnet18"), "se", **kwargs)
