"""``attnzoo convert --from senet-pytorch``: moskomule/senet.pytorch's SE-ResNet checkpoints give attnzoo's
*_se their logits. The source model is rebuilt in tests/sources/senet_pytorch.py from its published code."""

import copy

import timm
import torch

import attnzoo  # noqa: F401  (registers resnet*_se in timm)
from attnzoo.convert import convert_checkpoint
from attnzoo_cli import main
from convert_helpers import assert_attention_matters, assert_same_logits, images, randomized
from sources.senet_pytorch import se_resnet


def without_se(model: torch.nn.Module) -> torch.nn.Module:
    plain = copy.deepcopy(model)
    for stage in (plain.layer1, plain.layer2, plain.layer3, plain.layer4):
        for block in stage:
            block.se = torch.nn.Identity()
    return plain


def test_se_resnet18_pads_the_narrow_bottleneck_exactly(tmp_path):
    """C // 16 = 4 hidden units at 64 channels; attnzoo has 8, and the 4 extra ones add nothing."""
    source = randomized(se_resnet(18))
    path = tmp_path / "se_resnet18.pkl"
    torch.save(source.state_dict(), path)
    assert main(["convert", "--from", "senet-pytorch", "--arch", "resnet18_se", str(path),
                 "--out", str(tmp_path / "out")]) == 0
    converted = timm.create_model(f"local-dir:{tmp_path / 'out'}", pretrained=True)
    x = images()
    assert_same_logits(source, converted, x)
    assert_attention_matters(source, without_se(source), x)
    assert converted.layer1[0].se.fc1.weight.shape[0] == 2 * source.layer1[0].se.fc[0].weight.shape[0]


def test_se_resnet18_loads_by_name_with_a_file_overlay(tmp_path):
    """resnet18_se's default cfg describes ImageNet weights, so the converted file loads by name too."""
    source = randomized(se_resnet(18), seed=5)
    path = tmp_path / "se_resnet18.pkl"
    torch.save(source.state_dict(), path)
    out = convert_checkpoint("senet-pytorch", "resnet18_se", path, tmp_path / "out")
    converted = timm.create_model(
        "resnet18_se", pretrained=True, pretrained_cfg_overlay=dict(file=str(out / "model.safetensors")))
    assert_same_logits(source, converted, images(1, seed=9))
    assert 'timm.create_model("resnet18_se", pretrained=True' in (out / "README.md").read_text()


def test_se_resnet50_loads_by_name_and_quotes_the_published_accuracy(tmp_path):
    source = randomized(se_resnet(50), seed=2)
    path = tmp_path / "seresnet50-60a8950a85b2b.pkl"
    torch.save(source.state_dict(), path, _use_new_zipfile_serialization=False)  # as PyTorch < 1.6 wrote it
    out = convert_checkpoint("senet-pytorch", "resnet50_se", path, tmp_path / "out")
    converted = timm.create_model(
        "resnet50_se", pretrained=True, pretrained_cfg_overlay=dict(file=str(out / "model.safetensors")))
    x = images(1, seed=7)
    assert_same_logits(source, converted, x)
    assert_attention_matters(source, without_se(source), x)
    card = (out / "README.md").read_text()
    assert "| 77.06 |" in card and "moskomule/senet.pytorch README" in card
