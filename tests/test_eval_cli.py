"""``attnzoo eval`` on bad input: each mistake is one line on stderr and exit status 2."""

import json

import torch

from attnzoo_cli import main
from attnzoo.models import build_model, save_weights
from attnzoo.flops import MAC_CONVENTION


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(["eval", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_unknown_model_is_one_line_with_suggestions(capsys):
    code, _, err = run_cli(capsys, "resnet18_cbma", "--no-data")
    assert code == 2
    assert err.count("\n") == 1 and "unknown model 'resnet18_cbma'" in err and "resnet18_cbam" in err


def test_checkpoint_of_another_architecture_names_both(capsys, tmp_path):
    path = tmp_path / "cnn3.safetensors"
    save_weights(build_model("cnn3", num_classes=10, in_chans=1), path)
    code, _, err = run_cli(capsys, "cnn3_se", "--checkpoint", str(path), "--no-data")
    assert code == 2
    assert err.count("\n") == 1 and "holds a cnn3 model, which does not fit cnn3_se" in err


def test_state_dict_that_does_not_fit_names_the_mismatch(capsys, tmp_path):
    from safetensors.torch import save_file

    path = tmp_path / "raw.safetensors"
    save_file({"head.weight": torch.zeros(3, 3)}, path)
    code, _, err = run_cli(capsys, "cnn3", "--checkpoint", str(path), "--no-data")
    assert code == 2
    assert err.count("\n") == 1 and "do not fit the model" in err


def test_cost_only_run_prints_table_and_writes_json_and_csv(capsys, tmp_path):
    path = tmp_path / "cnn3.safetensors"
    save_weights(build_model("cnn3_se", num_classes=10, in_chans=1), path)
    code, out, _ = run_cli(capsys, "cnn3_se", "--checkpoint", str(path), "--no-data", "--runs", "1",
                           "--batch-size", "2", "--threads", "1", "--json", str(tmp_path / "r.json"),
                           "--csv", str(tmp_path / "r.csv"))
    assert code == 0 and "cnn3_se" in out and MAC_CONVENTION in out
    rows = json.loads((tmp_path / "r.json").read_text())
    assert rows[0]["model"] == "cnn3_se" and rows[0]["mac_convention"] == MAC_CONVENTION
    assert (tmp_path / "r.csv").read_text().splitlines()[0].endswith("mac_convention")


def test_checkpoint_in_a_run_folder_is_evaluated_at_the_run_image_size(capsys, tmp_path):
    run = tmp_path / "runs" / "cnn3-s0"
    save_weights(build_model("cnn3", num_classes=10, in_chans=1), run / "best.safetensors")
    (run / "summary.json").write_text(json.dumps({"img_size": 30}))
    code, out, _ = run_cli(capsys, "cnn3", "--checkpoint", str(run / "best.safetensors"), "--runs", "1",
                           "--batch-size", "2")
    assert code == 0 and "1x30x30" in out


def test_input_size_the_model_cannot_take_is_one_line(capsys):
    code, _, err = run_cli(capsys, "cnn3", "--img-size", "40", "--no-data")
    assert code == 2
    assert err.count("\n") == 1 and "cannot run on 1x40x40 input" in err and "--img-size" in err
