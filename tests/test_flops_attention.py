"""MAC counts: the attention's own cost is counted, and equals the documented per-module formula."""

import pytest
import timm
from torch import nn

import attnzoo  # noqa: F401  (registers resnet50_se, resnet50_cbam)
from attnzoo.attention import get_attention_class
from attnzoo.flops import (
    MAC_CONVENTION,
    cbam_macs,
    count_macs,
    eca_macs,
    se_macs,
)

# ResNet-50 at 224 px: (block output channels, feature map side, blocks) per stage.
RESNET50_STAGES = [(256, 56, 3), (512, 28, 4), (1024, 14, 6), (2048, 7, 3)]
INPUT = (3, 224, 224)


def resnet50_with(attn: str | None) -> nn.Module:
    """timm's resnet50, or attnzoo's registered ``resnet50_<attn>``."""
    return timm.create_model(f"resnet50_{attn}" if attn else "resnet50")


@pytest.fixture(scope="module")
def resnet50_macs() -> int:
    return count_macs(resnet50_with(None), INPUT).total


def test_plain_resnet50_counts_timm_published_4_1_gmacs(resnet50_macs):
    assert round(resnet50_macs / 1e9, 1) == 4.1


def test_se_delta_on_resnet50_equals_analytic_sum(resnet50_macs):
    expected = sum(n * se_macs(c, s, s, rd_channels=c // 16) for c, s, n in RESNET50_STAGES)
    assert count_macs(resnet50_with("se"), INPUT).total - resnet50_macs == expected


def test_cbam_delta_on_resnet50_equals_analytic_sum(resnet50_macs):
    expected = sum(n * cbam_macs(c, s, s, rd_channels=c // 16, kernel_size=7) for c, s, n in RESNET50_STAGES)
    assert count_macs(resnet50_with("cbam"), INPUT).total - resnet50_macs == expected


def test_attention_share_is_reported_per_module():
    model = resnet50_with("cbam")
    count = count_macs(model, INPUT)
    assert count.by_module["layer1.0.se"] == cbam_macs(256, 56, 56, rd_channels=16)
    expected = sum(n * cbam_macs(c, s, s, rd_channels=c // 16) for c, s, n in RESNET50_STAGES)
    assert count.attention(model) == expected


def test_eca_module_count_matches_formula():
    module = get_attention_class("eca")(64)
    count = count_macs(module, (64, 8, 8))
    assert count.total == eca_macs(64, 8, 8, kernel_size=module.conv.kernel_size[0])


def test_count_is_per_image_and_restores_training_mode():
    model = nn.Sequential(nn.Conv2d(1, 4, 3, bias=False)).train()
    assert count_macs(model, (1, 10, 10)).total == 4 * 8 * 8 * 9
    assert model.training


def test_convention_names_macs_and_the_papers_unit():
    assert "GMACs" in MAC_CONVENTION and "GFLOPs" in MAC_CONVENTION
