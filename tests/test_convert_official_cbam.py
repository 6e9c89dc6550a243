"""``attnzoo convert --from official-cbam``: the CBAM authors' checkpoints give attnzoo's *_cbam the
authors' logits. The source model is rebuilt in tests/sources/official_cbam.py from their published code,
filled with random weights, saved as their train_imagenet.py saves it, converted and compared."""

import copy
import hashlib
import json

import pytest
import timm
import torch

import attnzoo  # noqa: F401  (registers resnet*_cbam in timm)
from attnzoo.convert import convert_checkpoint
from attnzoo_cli import main
from convert_helpers import assert_attention_matters, assert_same_logits, images, randomized
from sources.official_cbam import ResNet, save_like_train_imagenet


def without_cbam(model: ResNet) -> ResNet:
    plain = copy.deepcopy(model)
    for stage in (plain.layer1, plain.layer2, plain.layer3, plain.layer4):
        for block in stage:
            block.cbam = None
    return plain


@pytest.fixture(scope="module")
def resnet18(tmp_path_factory):
    """A random ResNet-18 + CBAM of the authors' code and its checkpoint file."""
    model = randomized(ResNet(18))
    path = tmp_path_factory.mktemp("official") / "RESNET18_CBAM_checkpoint.pth.tar"
    save_like_train_imagenet(model, str(path))
    return model, path


def test_resnet18_cbam_gives_the_authors_logits(resnet18, tmp_path):
    source, path = resnet18
    out = convert_checkpoint("official-cbam", "resnet18_cbam", path, tmp_path / "out")
    converted = timm.create_model(f"local-dir:{out}", pretrained=True)
    x = images()
    assert_same_logits(source, converted, x)
    assert_attention_matters(source, without_cbam(source), x)


def test_the_spatial_gates_channel_order_changes_the_logits(resnet18):
    """The (max, mean) -> (mean, max) swap is needed: with the channels the other way round the authors'
    own model computes something else, so the equality above would catch a converter that skipped it."""
    source, _ = resnet18
    swapped = copy.deepcopy(source)
    for name, param in swapped.named_parameters():
        if name.endswith("SpatialGate.spatial.conv.weight"):
            param.data = param.data.flip(1)
    x = images()
    assert (torch.nn.functional.softmax(swapped(x), 1) - torch.nn.functional.softmax(source(x), 1)).abs().max() > 1e-4
    assert_attention_matters(source, swapped, x)


def test_cli_writes_weights_config_and_card(resnet18, tmp_path, capsys):
    _, path = resnet18
    out = tmp_path / "resnet18_cbam.official"
    assert main(["convert", "--from", "official-cbam", "--arch", "resnet18_cbam", str(path), "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "config.json", "model.safetensors"]
    assert str(out) in capsys.readouterr().out

    config = json.loads((out / "config.json").read_text())
    assert (config["architecture"], config["num_classes"], config["num_features"]) == ("resnet18_cbam", 1000, 512)
    cfg = config["pretrained_cfg"]
    assert (cfg["input_size"], cfg["crop_pct"], cfg["license"]) == ([3, 224, 224], 0.875, "mit")

    card = (out / "README.md").read_text()
    sha256 = hashlib.sha256(path.read_bytes()).hexdigest()
    assert "https://github.com/Jongchan/attention-module" in card
    assert f"`{path.name}`" in card and sha256 in card and "license: mit" in card
    assert str(path.parent) not in card  # the file's name, never the local path
    assert "publishes no accuracy for this architecture" in card


def test_resnet18_cbam_loads_by_name_with_a_file_overlay(resnet18, tmp_path):
    """resnet18_cbam's default cfg describes ImageNet weights, so the converted file loads by name too."""
    source, path = resnet18
    out = convert_checkpoint("official-cbam", "resnet18_cbam", path, tmp_path / "out")
    converted = timm.create_model(
        "resnet18_cbam", pretrained=True, pretrained_cfg_overlay=dict(file=str(out / "model.safetensors")))
    assert_same_logits(source, converted, images(1, seed=8))
    assert 'timm.create_model("resnet18_cbam", pretrained=True' in (out / "README.md").read_text()


def test_resnet34_cbam_loads_by_name_with_a_file_overlay(tmp_path):
    """The timm way: attnzoo's name, pretrained=True, and the converted file as the weights."""
    source = randomized(ResNet(34), seed=3)
    path = tmp_path / "r34.pth"
    save_like_train_imagenet(source, str(path))
    out = convert_checkpoint("official-cbam", "resnet34_cbam", path, tmp_path / "out")
    converted = timm.create_model(
        "resnet34_cbam", pretrained=True, pretrained_cfg_overlay=dict(file=str(out / "model.safetensors")))
    assert_same_logits(source, converted, images(1, seed=5))
    assert 'timm.create_model("resnet34_cbam", pretrained=True' in (out / "README.md").read_text()


def test_resnet50_cbam_with_the_published_accuracy_on_its_card(tmp_path):
    """The architecture of the authors' released checkpoint; its card quotes their figures, as theirs."""
    source = randomized(ResNet(50), seed=4)
    path = tmp_path / "RESNET50_CBAM_new_name_wrap.pth"
    save_like_train_imagenet(source, str(path))
    out = convert_checkpoint("official-cbam", "resnet50_cbam", path, tmp_path / "out")
    converted = timm.create_model(
        "resnet50_cbam", pretrained=True, pretrained_cfg_overlay=dict(file=str(out / "model.safetensors")))
    x = images(1, seed=6)
    assert_same_logits(source, converted, x)
    assert_attention_matters(source, without_cbam(source), x)
    card = (out / "README.md").read_text()
    assert "| 77.62 | 93.95 |" in card and "| 77.34 |" in card and "not measured by attnzoo" in card


def test_a_bare_state_dict_without_the_dataparallel_prefix_converts(resnet18, tmp_path):
    source, _ = resnet18
    path = tmp_path / "bare.pth"
    torch.save(source.state_dict(), path)
    out = convert_checkpoint("official-cbam", "resnet18_cbam", path, tmp_path / "out")
    assert_same_logits(source, timm.create_model(f"local-dir:{out}", pretrained=True), images(1))


def test_a_checkpoint_with_another_head_keeps_it_and_quotes_no_imagenet_figure(tmp_path):
    source = randomized(ResNet(50, num_classes=10), seed=8)
    path = tmp_path / "RESNET50_CBAM_cifar_head.pth"
    save_like_train_imagenet(source, str(path))
    out = convert_checkpoint("official-cbam", "resnet50_cbam", path, tmp_path / "out")
    converted = timm.create_model(f"local-dir:{out}", pretrained=True)
    assert converted.num_classes == 10
    assert_same_logits(source, converted, images(1, seed=9))
    card = (out / "README.md").read_text()
    assert "77.62" not in card and "this one has 10 classes, so none of them applies" in card
    assert "num_classes=10" in card
