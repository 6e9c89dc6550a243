"""Bad input to ``attnzoo convert``: each is one ``error:`` line that names the problem and the fix, exit
status 2, and nothing written or lost."""

import argparse

import pytest
import torch

import attnzoo  # noqa: F401
from attnzoo_cli import main
from convert_helpers import randomized
from sources.official_cbam import ResNet, save_like_train_imagenet


@pytest.fixture(scope="module")
def official18(tmp_path_factory):
    """A ResNet-18 + CBAM checkpoint of the authors' code, and its state dict (DataParallel keys)."""
    model = randomized(ResNet(18))
    path = tmp_path_factory.mktemp("src") / "r18.pth"
    save_like_train_imagenet(model, str(path))
    return path, torch.load(path, weights_only=True)["state_dict"]


def convert(capsys, *args: str) -> str:
    """Run the command expecting a user error; returns its one line."""
    assert main(["convert", *args]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("attnzoo convert: error: ")
    return err


def test_unknown_source_lists_the_known_ones(official18, tmp_path, capsys):
    err = convert(capsys, "--from", "cbam-official", "--arch", "resnet18_cbam", str(official18[0]),
                  "--out", str(tmp_path / "o"))
    assert "'cbam-official'" in err and "official-cbam, senet-pytorch" in err


def test_an_architecture_the_source_lacks_lists_those_it_has(official18, tmp_path, capsys):
    err = convert(capsys, "--from", "official-cbam", "--arch", "resnet50_se", str(official18[0]),
                  "--out", str(tmp_path / "o"))
    assert "resnet18_cbam, resnet34_cbam, resnet50_cbam, resnet101_cbam" in err and "'resnet50_se'" in err


def test_missing_file(tmp_path, capsys):
    err = convert(capsys, "--from", "official-cbam", "--arch", "resnet18_cbam", str(tmp_path / "nope.pth"),
                  "--out", str(tmp_path / "o"))
    assert "nope.pth does not exist" in err
    assert not (tmp_path / "o").exists()


def test_truncated_file(official18, tmp_path, capsys):
    path = tmp_path / "cut.pth"
    path.write_bytes(official18[0].read_bytes()[:10_000])
    err = convert(capsys, "--from", "official-cbam", "--arch", "resnet18_cbam", str(path), "--out", str(tmp_path / "o"))
    assert "not a readable PyTorch checkpoint" in err and "truncated" in err


def test_a_pickle_with_objects_is_refused_without_running_them(official18, tmp_path, capsys):
    path = tmp_path / "with_args.pth"
    torch.save({"state_dict": official18[1], "args": argparse.Namespace(lr=0.1)}, path)
    err = convert(capsys, "--from", "official-cbam", "--arch", "resnet18_cbam", str(path), "--out", str(tmp_path / "o"))
    assert "argparse.Namespace" in err and "objects other than tensors" in err


def test_a_non_tensor_among_the_weights_is_named(official18, tmp_path, capsys):
    path = tmp_path / "list.pth"
    torch.save({"state_dict": {**official18[1], "module.fc.scale": [1.0, 2.0]}}, path)
    err = convert(capsys, "--from", "official-cbam", "--arch", "resnet18_cbam", str(path), "--out", str(tmp_path / "o"))
    assert "'module.fc.scale' is of type list, not a tensor" in err


def test_unexpected_entries_next_to_the_state_dict_are_refused(official18, tmp_path, capsys):
    path = tmp_path / "other.pth"
    torch.save({"state_dict": official18[1], "ema": official18[1]}, path)
    err = convert(capsys, "--from", "official-cbam", "--arch", "resnet18_cbam", str(path), "--out", str(tmp_path / "o"))
    assert "'ema'" in err and "train_imagenet.py" in err


def test_nan_weights_are_refused(official18, tmp_path, capsys):
    weights = dict(official18[1])
    weights["module.layer2.0.bn1.weight"] = weights["module.layer2.0.bn1.weight"].clone()
    weights["module.layer2.0.bn1.weight"][3] = float("nan")
    path = tmp_path / "nan.pth"
    torch.save({"state_dict": weights}, path)
    err = convert(capsys, "--from", "official-cbam", "--arch", "resnet18_cbam", str(path), "--out", str(tmp_path / "o"))
    assert "'module.layer2.0.bn1.weight' holds NaN" in err


def test_a_deeper_network_names_its_extra_keys_and_the_matching_arch(tmp_path, capsys):
    path = tmp_path / "r34.pth"
    save_like_train_imagenet(ResNet(34), str(path))
    err = convert(capsys, "--from", "official-cbam", "--arch", "resnet18_cbam", str(path), "--out", str(tmp_path / "o"))
    assert "layer1.2." in err and "use --arch resnet34_cbam" in err
    assert not (tmp_path / "o").exists()


def test_a_bam_checkpoint_says_bam_does_not_map(official18, tmp_path, capsys):
    weights = {k: v for k, v in official18[1].items() if ".cbam." not in k}
    weights["module.bam1.channel_att.gate_c.gate_c_fc_0.weight"] = torch.zeros(4, 64)
    path = tmp_path / "bam.pth"
    torch.save({"state_dict": weights}, path)
    err = convert(capsys, "--from", "official-cbam", "--arch", "resnet18_cbam", str(path), "--out", str(tmp_path / "o"))
    assert "BAM modules" in err and "docs/convert.md" in err


def test_missing_attention_weights_are_named(official18, tmp_path, capsys):
    weights = {k: v for k, v in official18[1].items() if "layer3.1.cbam.ChannelGate" not in k}
    path = tmp_path / "partial.pth"
    torch.save({"state_dict": weights}, path)
    err = convert(capsys, "--from", "official-cbam", "--arch", "resnet18_cbam", str(path), "--out", str(tmp_path / "o"))
    assert "4 missing keys (e.g. layer3.1.se.channel.fc1.bias)" in err


def test_a_shape_mismatch_is_named(official18, tmp_path, capsys):
    weights = dict(official18[1])
    weights["module.layer1.0.cbam.ChannelGate.mlp.1.weight"] = torch.zeros(8, 64)  # reduction 8, not 16
    path = tmp_path / "r8.pth"
    torch.save({"state_dict": weights}, path)
    err = convert(capsys, "--from", "official-cbam", "--arch", "resnet18_cbam", str(path), "--out", str(tmp_path / "o"))
    assert "shape mismatch" in err and "layer1.0.se.channel.fc1.weight: file (8, 64, 1, 1), model (4, 64, 1, 1)" in err


def test_a_cifar_resnet_is_refused(official18, tmp_path, capsys):
    weights = dict(official18[1])
    weights["module.conv1.weight"] = torch.zeros(64, 3, 3, 3)
    path = tmp_path / "cifar.pth"
    torch.save({"state_dict": weights}, path)
    err = convert(capsys, "--from", "official-cbam", "--arch", "resnet18_cbam", str(path), "--out", str(tmp_path / "o"))
    assert "3x3 stem conv" in err and "CIFAR" in err


def test_a_non_empty_output_folder_is_kept_without_force(official18, tmp_path, capsys):
    out = tmp_path / "o"
    out.mkdir()
    (out / "README.md").write_text("my notes")
    err = convert(capsys, "--from", "official-cbam", "--arch", "resnet18_cbam", str(official18[0]), "--out", str(out))
    assert "--force" in err and "not empty" in err
    assert [p.name for p in out.iterdir()] == ["README.md"] and (out / "README.md").read_text() == "my notes"


def test_force_replaces_only_the_three_files(official18, tmp_path, capsys):
    out = tmp_path / "o"
    out.mkdir()
    (out / "README.md").write_text("old card")
    (out / "notes.txt").write_text("keep me")
    args = ["convert", "--from", "official-cbam", "--arch", "resnet18_cbam", str(official18[0]), "--out", str(out)]
    assert main([*args, "--force"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "config.json", "model.safetensors", "notes.txt"]
    assert (out / "notes.txt").read_text() == "keep me" and "official-cbam" in (out / "README.md").read_text()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".o.")]  # no staging folder left


def test_output_that_is_a_file(official18, tmp_path, capsys):
    out = tmp_path / "o"
    out.write_text("x")
    err = convert(capsys, "--from", "official-cbam", "--arch", "resnet18_cbam", str(official18[0]), "--out", str(out))
    assert "is a file" in err and out.read_text() == "x"


def test_another_sources_file_points_at_the_right_from(official18, tmp_path, capsys):
    err = convert(capsys, "--from", "senet-pytorch", "--arch", "resnet18_se", str(official18[0]),
                  "--out", str(tmp_path / "o"))
    assert "training checkpoint" in err and "known: coord-attention, official-cbam, senet-pytorch" in err


def test_se_weights_given_as_cbam_are_not_official_cbams(tmp_path, capsys):
    from sources.senet_pytorch import se_resnet

    path = tmp_path / "se.pkl"
    torch.save(se_resnet(18).state_dict(), path)
    err = convert(capsys, "--from", "official-cbam", "--arch", "resnet18_cbam", str(path), "--out", str(tmp_path / "o"))
    assert "layer1.0.se.fc.0.weight" in err and "Jongchan/attention-module" in err
