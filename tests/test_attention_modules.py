"""Attention modules: paper parameter counts, timm state-dict compatibility, paper-form outputs."""

import math

import pytest
import timm
import torch
import torch.nn.functional as F
from timm.layers.cbam import CbamModule

import attnzoo
from attnzoo.attention import create_attention, registry
from attnzoo.errors import SurgeryError, UnknownAttentionError

# CBAM paper (Woo et al., 2018), Table 4, ImageNet, reduction 16: params in millions, two decimals.
PAPER_PARAMS_M = {
    ("resnet18", "se"): 11.78,
    ("resnet18", "cbam"): 11.78,
    ("resnet34", "se"): 21.96,
    ("resnet34", "cbam"): 21.96,
    ("resnet50", "se"): 28.09,
    ("resnet50", "cbam"): 28.09,
    ("resnet101", "se"): 49.33,
    ("resnet101", "cbam"): 49.33,
}


def param_count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize(("backbone", "attn"), sorted(PAPER_PARAMS_M))
def test_parameter_count_matches_cbam_paper_table_4(backbone, attn):
    with torch.device("meta"):
        model = timm.create_model(f"{backbone}_{attn}")
    assert round(param_count(model) / 1e6, 2) == PAPER_PARAMS_M[(backbone, attn)]


def test_timm_seresnet50_state_dict_loads_strictly_with_identical_logits():
    timm_model = timm.create_model("seresnet50").eval()
    ours = timm.create_model("resnet50_se").eval()
    ours.load_state_dict(timm_model.state_dict(), strict=True)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(ours(x), timm_model(x))


def test_cbam_loads_timm_cbam_module_with_mlp_bias_and_matches_it():
    reference = CbamModule(64, mlp_bias=True).eval()
    for p in reference.parameters():
        torch.nn.init.normal_(p)
    ours = create_attention("cbam", 64).eval()
    ours.load_state_dict(reference.state_dict(), strict=True)
    x = torch.randn(2, 64, 9, 9)
    with torch.no_grad():
        assert (ours(x) - reference(x)).abs().max() < 1e-5


def paper_cbam(x, fc1_w, fc1_b, fc2_w, fc2_b, spatial):
    """CBAM written out as in the paper: MLP(avg) + MLP(max), then a 7x7 conv over [mean; max]."""
    def mlp(v):
        return F.linear(F.relu(F.linear(v, fc1_w, fc1_b)), fc2_w, fc2_b)

    channel = torch.sigmoid(mlp(x.mean((2, 3))) + mlp(x.amax((2, 3))))[:, :, None, None]
    x = x * channel
    maps = torch.cat([x.mean(1, keepdim=True), x.max(1, keepdim=True).values], 1)
    return x * torch.sigmoid(spatial(maps))


def test_cbam_computes_the_paper_form():
    cbam = create_attention("cbam", 32).eval()
    x = torch.randn(3, 32, 10, 10)
    ch = cbam.channel
    with torch.no_grad():
        expected = paper_cbam(
            x, ch.fc1.weight.flatten(1), ch.fc1.bias, ch.fc2.weight.flatten(1), ch.fc2.bias, cbam.spatial.conv
        )
        assert (cbam(x) - expected).abs().max() < 1e-5


def test_se_computes_avgpool_fc_relu_fc_sigmoid():
    se = create_attention("se", 32, rd_ratio=1 / 4)
    x = torch.randn(2, 32, 6, 6)
    hidden = F.relu(F.linear(x.mean((2, 3)), se.fc1.weight.flatten(1), se.fc1.bias))
    gate = torch.sigmoid(F.linear(hidden, se.fc2.weight.flatten(1), se.fc2.bias))
    assert se.fc1.out_channels == 8
    assert torch.allclose(se(x), x * gate[:, :, None, None], atol=1e-6)


def test_cbam_parts_are_usable_alone():
    x = torch.randn(2, 16, 8, 8)
    channel = create_attention("cbam_channel", 16)
    spatial = create_attention("cbam_spatial", 16)
    full = create_attention("cbam", 16)
    full.channel.load_state_dict(channel.state_dict())
    full.spatial.load_state_dict(spatial.state_dict())
    assert torch.allclose(full(x), spatial(channel(x)), atol=1e-6)
    assert sum(p.numel() for p in spatial.parameters()) == 2 * 7 * 7 + 2  # conv (no bias) + BN affine


def test_eca_kernel_size_adapts_to_channels():
    # k = |log2(C) / 2 + 1 / 2| rounded up to odd: C=256 -> 5, C=64 -> 3
    assert create_attention("eca", 256).conv.kernel_size == (5,)
    assert create_attention("eca", 64).conv.kernel_size == (3,)


@pytest.mark.parametrize("name", attnzoo.list_attentions())
def test_every_attention_keeps_shape_and_gates_lie_in_unit_interval(name):
    module = create_attention(name, 64).eval()
    x = torch.randn(2, 64, 7, 7)
    assert module(x).shape == x.shape
    for gate in module.attention_maps(x).values():
        assert gate.min() >= 0 and gate.max() <= 1


def test_simam_matches_its_energy_formula():
    x = torch.randn(1, 4, 5, 5)
    mu = x.mean((2, 3), keepdim=True)
    var = ((x - mu) ** 2).sum((2, 3), keepdim=True) / (25 - 1)
    expected = x * torch.sigmoid((x - mu) ** 2 / (4 * (var + 1e-4)) + 0.5)
    assert torch.allclose(create_attention("simam", 4)(x), expected, atol=1e-6)


def test_mhsa_attends_over_all_positions_with_a_residual():
    mhsa = create_attention("mhsa", 32, num_heads=4)
    x = torch.randn(2, 32, 4, 4)
    q, k, v = (
        mhsa.qkv(x).reshape(2, 3, 4, 8, 16).transpose(-1, -2).unbind(1)
    )
    attn = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(8), -1) @ v
    expected = x + mhsa.proj(attn.transpose(-1, -2).reshape(2, 32, 4, 4))
    assert torch.allclose(mhsa(x), expected, atol=1e-5)


def test_list_attentions_names_every_family():
    assert attnzoo.list_attentions() == [
        "cbam", "cbam_channel", "cbam_spatial", "coord", "eca", "mhsa", "se", "simam"
    ]


def test_unknown_attention_name_lists_the_registered_ones():
    with pytest.raises(UnknownAttentionError, match="registered: cbam, cbam_channel"):
        create_attention("cbma", 64)


def test_kwargs_a_module_does_not_take_are_named_with_the_valid_ones():
    with pytest.raises(SurgeryError, match=r"'se' does not take kernel_size; it takes: rd_ratio"):
        create_attention("se", 64, kernel_size=3)


def test_third_party_attention_is_created_by_name(monkeypatch):
    monkeypatch.setattr(registry, "_ATTENTIONS", dict(registry._ATTENTIONS))  # unregistered afterwards

    @attnzoo.register_attention("test_scale")
    class Scale(torch.nn.Module):
        def __init__(self, channels: int, factor: float = 2.0) -> None:
            super().__init__()
            self.factor = factor

        def forward(self, x):
            return x * self.factor

    assert "test_scale" in attnzoo.list_attentions()
    assert torch.equal(create_attention("test_scale", 3, factor=3.0)(torch.ones(1)), torch.full((1,), 3.0))
