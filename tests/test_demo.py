"""`attnzoo demo`: trains and evaluates a backbone's plain, SE and CBAM variants side by side."""

import json

import pytest

from attnzoo_cli import main
from train_helpers import make_tiny_fashion_mnist


def test_demo_trains_each_variant_and_tables_its_test_accuracy_and_cost(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("ATTNZOO_FASHION_MNIST", str(make_tiny_fashion_mnist(tmp_path, train=256, test=64)))
    assert main(["demo", "--output", str(tmp_path / "runs")]) == 0
    table = capsys.readouterr().out
    for name in ("cnn3", "cnn3_se", "cnn3_cbam"):
        summary = json.loads((tmp_path / "runs" / name / "summary.json").read_text())
        assert summary["status"] == "complete" and summary["epochs"] == 1
        row = next(line.split() for line in table.splitlines() if line.startswith(f"{name} "))
        assert summary["splits"]["val"] == "val" and summary["splits"]["test"] == "test"
        # eval of the last weights on test agrees with training's end-of-run test evaluation (table: 2 decimals)
        assert float(row[2]) == pytest.approx(summary["test_top1"], abs=0.006)
    assert "GMACs (multiply-adds)" in table


def test_demo_without_training_needs_no_data(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("ATTNZOO_FASHION_MNIST", str(tmp_path / "missing"))
    assert main(["demo", "resnet18", "--no-train", "--img-size", "64"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines[2:5]] == ["resnet18", "resnet18_se", "resnet18_cbam"]


def test_demo_rejects_an_unknown_backbone_in_one_line_with_suggestions(capsys):
    assert main(["demo", "resnet9000", "--no-train"]) == 2
    assert capsys.readouterr().err == (
        "attnzoo demo: error: unknown model 'resnet9000'; did you mean resnet200, resnet200d, resnet50, "
        "resnetrs200, resnest200e?\n"
    )


def test_demo_run_again_into_the_same_output_is_refused_before_training(tmp_path, capsys):
    (tmp_path / "runs" / "cnn3_se").mkdir(parents=True)
    (tmp_path / "runs" / "cnn3_se" / "summary.json").write_text("{}")
    assert main(["demo", "--output", str(tmp_path / "runs")]) == 2
    assert capsys.readouterr().err == (
        f"attnzoo demo: error: {tmp_path / 'runs'} already holds the demo's runs (cnn3_se); run it again with "
        f"--output {tmp_path / 'runs'}2 (or move {tmp_path / 'runs'} away)\n"
    )
    assert not (tmp_path / "runs" / "cnn3").exists()
