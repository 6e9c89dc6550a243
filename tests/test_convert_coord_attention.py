"""``attnzoo convert --from coord-attention``: the Coordinate Attention authors' MobileNetV2 checkpoints give
attnzoo's mobilenetv2_*_coord their logits. The source model is rebuilt in tests/sources/coord_attention.py
from their published mbv2_ca.py, filled with random weights, saved, converted and compared."""

import copy

import pytest
import timm
import torch

import attnzoo  # noqa: F401  (registers mobilenetv2_*_coord in timm)
from attnzoo.convert import convert_checkpoint
from attnzoo_cli import main
from convert_helpers import assert_attention_matters, assert_same_logits, images, logits, randomized
from sources.coord_attention import MBV2_CA, CoordAtt, without_ca


@pytest.fixture(scope="module")
def mbv2(tmp_path_factory):
    """A random MobileNetV2 + CA of the authors' code, saved as a plain state dict."""
    model = randomized(MBV2_CA())
    path = tmp_path_factory.mktemp("ca") / "mbv2_ca.pth"
    torch.save(model.state_dict(), path)
    return model, path


def test_mbv2_ca_gives_the_authors_logits(mbv2, tmp_path):
    source, path = mbv2
    out = tmp_path / "mobilenetv2_100_coord.official"
    assert main(["convert", "--from", "coord-attention", "--arch", "mobilenetv2_100_coord", str(path),
                 "--out", str(out)]) == 0
    converted = timm.create_model(f"local-dir:{out}", pretrained=True)
    x = images()
    assert_same_logits(source, converted, x)
    assert_attention_matters(source, without_ca(source), x)
    # no CA in the first (expansion 1) block, as theirs; the widest bottleneck (960 // 32) everywhere else
    assert isinstance(converted.blocks[0][0].se, torch.nn.Identity)
    assert {b.se.conv1.out_channels for stage in converted.blocks[1:] for b in stage} == {30}
    card = (out / "README.md").read_text()
    assert "| 74.30 |" in card and "houqb/CoordAttention README" in card and "not measured by attnzoo" in card


def test_loads_by_name_with_the_cards_model_arguments(mbv2, tmp_path):
    """The timm way, as the card prints it: attnzoo's name, the source's placement and bias, the file."""
    source, path = mbv2
    out = convert_checkpoint("coord-attention", "mobilenetv2_100_coord", path, tmp_path / "out")
    converted = timm.create_model(
        "mobilenetv2_100_coord", pretrained=True, stages=[2, 3, 4, 5, 6, 7],
        attn_kwargs={"rd_channels": 30, "bias": True},
        pretrained_cfg_overlay=dict(file=str(out / "model.safetensors")))
    assert_same_logits(source, converted, images(1, seed=3))
    card = (out / "README.md").read_text()
    assert ('timm.create_model("mobilenetv2_100_coord", pretrained=True, stages=[2, 3, 4, 5, 6, 7], '
            "attn_kwargs={'rd_channels': 30, 'bias': True}") in card


def test_the_gate_biases_and_the_gate_order_change_the_logits(mbv2):
    """What the mapping must keep: without the gate convs' biases, or with the height and width gates
    swapped, the authors' own model computes something else, so the equality above would catch a
    converter that dropped the biases or mixed up conv2 / conv3."""
    source, _ = mbv2
    unbiased, swapped = copy.deepcopy(source), copy.deepcopy(source)
    for model, change in ((unbiased, "bias"), (swapped, "swap")):
        for m in model.modules():
            if isinstance(m, CoordAtt):
                if change == "bias":
                    torch.nn.init.zeros_(m.conv2.bias)
                    torch.nn.init.zeros_(m.conv3.bias)
                else:
                    m.conv2, m.conv3 = m.conv3, m.conv2
    x = images(1, seed=4)
    assert_attention_matters(source, unbiased, x)
    assert_attention_matters(source, swapped, x)


def test_width_1_4_from_a_dataparallel_training_checkpoint_with_coordatt_names(tmp_path):
    """mbv2_ca(width_mult=1.4) with coordatt.py's conv_h / conv_w names, saved by a training script as
    {'state_dict': ...} from nn.DataParallel."""
    source = randomized(MBV2_CA(num_classes=100, width_mult=1.4, gate_names=("conv_h", "conv_w")), seed=5)
    path = tmp_path / "mbv2_ca_140.pth.tar"
    torch.save({"epoch": 200, "state_dict": torch.nn.DataParallel(source).state_dict()}, path)
    out = convert_checkpoint("coord-attention", "mobilenetv2_140_coord", path, tmp_path / "out")
    converted = timm.create_model(f"local-dir:{out}", pretrained=True)
    assert converted.num_classes == 100
    assert_same_logits(source, converted, images(1, seed=6))
    assert "74.30" not in (out / "README.md").read_text()  # the published figure is for width 1.0, 1000 classes


def test_a_width_1_4_file_into_the_width_1_0_name_suggests_the_right_one(tmp_path, capsys):
    path = tmp_path / "mbv2_ca_140.pth"
    torch.save(MBV2_CA(width_mult=1.4).state_dict(), path)
    assert main(["convert", "--from", "coord-attention", "--arch", "mobilenetv2_100_coord", str(path),
                 "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "use --arch mobilenetv2_140_coord" in err
    assert not (tmp_path / "o").exists()


def test_a_mobilenetv2_without_ca_is_refused(tmp_path, capsys):
    plain = without_ca(MBV2_CA())
    path = tmp_path / "mbv2.pth"
    torch.save(plain.state_dict(), path)
    assert main(["convert", "--from", "coord-attention", "--arch", "mobilenetv2_100_coord", str(path),
                 "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "has no CoordAtt tensors" in err


def test_an_extra_tensor_is_named(mbv2, tmp_path, capsys):
    _, path = mbv2
    weights = torch.load(path, weights_only=True)
    weights["features.3.conv.6.scale"] = torch.ones(1)
    bad = tmp_path / "extra.pth"
    torch.save(weights, bad)
    assert main(["convert", "--from", "coord-attention", "--arch", "mobilenetv2_100_coord", str(bad),
                 "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "features.3.conv.6.scale" in err


def test_the_padding_units_stay_silent(mbv2, tmp_path):
    """The extra hidden units of narrower blocks output exactly zero (so the logits cannot depend on them)."""
    source, path = mbv2
    out = convert_checkpoint("coord-attention", "mobilenetv2_100_coord", path, tmp_path / "out")
    converted = timm.create_model(f"local-dir:{out}", pretrained=True).eval()
    ca = converted.blocks[1][0].se  # theirs: max(8, 96 // 32) = 8 hidden units
    assert source.features[2].conv[6].conv1.out_channels == 8
    seen = {}
    handle = ca.act.register_forward_hook(lambda m, i, o: seen.setdefault("hidden", o))
    logits(converted, images(1, seed=7))
    handle.remove()
    assert seen["hidden"][:, 8:].abs().max() == 0 and seen["hidden"][:, :8].abs().max() > 0
