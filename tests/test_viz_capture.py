"""Capturing feature maps and attention gates with forward hooks (attnzoo.viz.capture)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import attnzoo
from attention_helpers import assert_attention_matters, wake
from attnzoo.surgery import model_stages
from attnzoo.viz import UnknownLayerError, capture, capturing, find_attention, stage_layer_names

IMG = 16


def small_model(name: str) -> nn.Module:
    torch.manual_seed(0)
    small = not name.startswith("cnn3")
    # woken BNs: on timm's zero-initialised residual branches the attention would gate zeros
    return wake(attnzoo.build_model(name, num_classes=10, in_chans=1, small_input=small)).eval()


def no_hooks_left(model: nn.Module) -> bool:
    return all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())


@pytest.fixture(scope="module")
def cbam18() -> nn.Module:
    return small_model("resnet18_cbam")


def test_every_cbam_module_is_captured_once_with_its_stage(cbam18):
    captured, _ = capture(cbam18, torch.randn(3, 1, IMG, IMG))
    assert [(a.name, a.kind, a.stage) for a in captured.attention] == [
        (f"layer{s}.{b}.se", "cbam", s) for s in (1, 2, 3, 4) for b in (0, 1)
    ]


def test_cbam_gates_have_the_shapes_of_the_blocks_they_gate(cbam18):
    captured, _ = capture(cbam18, torch.randn(3, 1, IMG, IMG))
    for item, (chans, side) in zip(captured.attention[::2], [(64, 16), (128, 8), (256, 4), (512, 2)]):
        assert item.maps["channel"].shape == (3, chans)
        assert item.maps["spatial"].shape == (3, 1, side, side)


def test_gate_is_the_one_the_forward_pass_applied():
    model = small_model("resnet18_se")
    x = torch.randn(2, 1, IMG, IMG)
    assert_attention_matters(model, x)
    captured, _ = capture(model, x, ["layer2.1.bn2", "layer2.1.se"])
    gate = captured.attention[3].channel()
    assert captured.attention[3].name == "layer2.1.se"
    expected = captured.features["layer2.1.bn2"] * gate[:, :, None, None]
    torch.testing.assert_close(captured.features["layer2.1.se"], expected)


def test_feature_maps_of_chosen_layers_have_their_output_shapes(cbam18):
    captured, _ = capture(cbam18, torch.randn(2, 1, IMG, IMG), ["layer1", "layer4", "fc"])
    assert {k: tuple(v.shape) for k, v in captured.features.items()} == {
        "layer1": (2, 64, 16, 16), "layer4": (2, 512, 2, 2), "fc": (2, 10),
    }


@pytest.mark.parametrize("attn", attnzoo.list_attentions())
def test_every_attention_type_gives_a_map_or_gate_in_unit_range(attn):
    model = small_model(f"resnet18_{attn}")
    captured, _ = capture(model, torch.randn(2, 1, IMG, IMG))
    assert captured.attention and {a.kind for a in captured.attention} == {attn}
    for item in captured.attention:
        assert item.spatial() is not None or item.channel() is not None
        for value in item.maps.values():
            assert value.shape[0] == 2
            assert 0 <= value.min() and value.max() <= 1


@pytest.mark.parametrize(
    "name, kind", [("cnn3_cbam", "cbam"), ("cnn3_se", "se"), ("mobilenetv2_100_cbam", "cbam"),
                   ("mobilenetv3_large_100_se", "se"), ("mobilenetv2_100_eca", "eca")],
)
def test_mobilenet_and_cnn3_attention_is_tagged_with_its_stage(name, kind):
    model = small_model(name)
    captured, _ = capture(model, torch.randn(2, 1, 28, 28))
    stages = [a.stage for a in captured.attention]
    assert captured.attention and {a.kind for a in captured.attention} == {kind}
    assert stages == sorted(stages) and set(stages) <= set(range(1, len(model_stages(model)) + 1))
    assert len(captured.stage_attention()) >= 3


def test_nested_gates_of_cbam_are_reported_through_their_parent(cbam18):
    names = [name for name, _, _ in find_attention(cbam18)]
    assert "layer1.0.se" in names and not any(n.endswith((".channel", ".spatial")) for n in names)


def test_stage_layers_are_the_models_stages(cbam18):
    assert stage_layer_names(cbam18) == ["layer1", "layer2", "layer3", "layer4"]
    assert stage_layer_names(small_model("cnn3_se")) == ["stages.0", "stages.1", "stages.2"]


def test_hooks_are_removed_after_capture(cbam18):
    capture(cbam18, torch.randn(1, 1, IMG, IMG), ["layer1", "layer2.0.conv1"])
    assert no_hooks_left(cbam18)


def test_hooks_are_removed_when_the_forward_pass_raises(cbam18):
    with pytest.raises(RuntimeError):
        with capturing(cbam18, ["layer1"]):
            cbam18(torch.randn(1, 3, IMG, IMG))  # the model takes 1 channel
    assert no_hooks_left(cbam18)


def test_hooks_are_removed_when_the_with_block_raises(cbam18):
    with pytest.raises(KeyError):
        with capturing(cbam18, ["layer3"]):
            cbam18(torch.randn(1, 1, IMG, IMG))
            raise KeyError("user code failed")
    assert no_hooks_left(cbam18)


def test_unknown_layer_names_close_matches_and_registers_nothing(cbam18):
    with pytest.raises(UnknownLayerError, match=r"no layer 'layer1\.0\.conv'; close names: .*layer1\.0\.conv1"):
        with capturing(cbam18, ["layer1", "layer1.0.conv"]):
            pass
    assert no_hooks_left(cbam18)


def test_unknown_layer_without_close_match_lists_top_level_layers(cbam18):
    with pytest.raises(UnknownLayerError, match=r"top-level layers: conv1, bn1, .*layer4"):
        capture(cbam18, torch.randn(1, 1, IMG, IMG), ["zzzzzz"])


def test_capturing_changes_neither_outputs_nor_training_mode(cbam18):
    x = torch.randn(2, 1, IMG, IMG)
    assert_attention_matters(cbam18, x)
    with torch.no_grad():
        expected = cbam18(x)
    cbam18.train()
    _, logits = capture(cbam18, x, ["layer2"])
    assert cbam18.training
    cbam18.eval()
    torch.testing.assert_close(logits, expected)


def test_forward_passes_in_one_block_are_concatenated_and_keys_filtered(cbam18):
    with torch.no_grad(), capturing(cbam18, ["layer1"], keys={"channel"}) as captured:
        cbam18(torch.randn(2, 1, IMG, IMG))
        cbam18(torch.randn(3, 1, IMG, IMG))
    assert captured.features["layer1"].shape[0] == 5
    assert all(set(a.maps) == {"channel"} and a.maps["channel"].shape[0] == 5 for a in captured.attention)
