"""Leaderboard: seeds grouped into mean ± std, baselines matched, files reproduced byte for byte."""

import csv
import json

import pytest

from attnzoo_cli import main
from attnzoo.evaluate.leaderboard import LeaderboardError, write_leaderboard
from attnzoo.models import build_model, model_config

RECIPE = "recipes/fmnist/cnn3.yaml"


def make_run(root, name, arch, seed, top1, *, ms_per_img=None, status="complete", recipe=RECIPE):
    """A run folder as training writes it; ``ms_per_img`` pre-writes the cached latency."""
    run = root / name
    run.mkdir(parents=True)
    summary = {
        "name": name, "model": model_config(build_model(arch, num_classes=10, in_chans=1)), "recipe": recipe,
        "seed": seed, "dataset": "fashion-mnist", "num_classes": 10, "img_size": 28, "epochs": 2,
        "top1": top1, "top5": 99.0, "best_top1": top1, "train_time_s": 100.0, "params": 1000000,
        "hardware": "2-core CPU", "status": status,
    }
    (run / "summary.json").write_text(json.dumps(summary))
    (run / "metrics.csv").write_text("epoch,val_top1\n1,50.0\n2,60.0\n")
    (run / "recipe.yaml").write_text(f"seed: {seed}\n")
    if ms_per_img is not None:
        (run / "cost.json").write_text(json.dumps({"ms_per_img": ms_per_img, "hardware": "test CPU"}))
    return run


@pytest.fixture
def runs(tmp_path):
    root = tmp_path / "runs"
    for seed, top1 in enumerate([90.0, 91.0, 92.0]):
        make_run(root, f"cnn3-s{seed}", "cnn3", seed, top1, ms_per_img=1.0)
    for seed, top1 in enumerate([91.5, 92.5]):
        make_run(root, f"cnn3_se-s{seed}", "cnn3_se", seed, top1, ms_per_img=1.1)
    make_run(root, "cnn3_cbam-s0", "cnn3_cbam", 0, 90.5, ms_per_img=1.25)
    make_run(root, "cnn3_cbam-s1", "cnn3_cbam", 1, 10.0, status="stopped")
    return root


def read_rows(out):
    with open(out / "leaderboard.csv") as f:
        return list(csv.DictReader(f))


def test_groups_seeds_into_mean_and_std_sorted_best_first(runs, tmp_path):
    write_leaderboard(runs, tmp_path / "results")
    rows = read_rows(tmp_path / "results")
    assert [r["model"] for r in rows] == ["cnn3_se", "cnn3", "cnn3_cbam"]
    se, plain, cbam = rows
    assert (plain["seeds"], plain["top1_mean"], plain["top1_std"]) == ("3", "91.00", "1.00")
    assert (se["seeds"], se["top1_mean"], se["top1_std"]) == ("2", "92.00", "0.71")
    assert (cbam["seeds"], cbam["top1_std"], cbam["runs"]) == ("1", "", "cnn3_cbam-s0")


def test_vs_baseline_compares_with_the_plain_backbone_under_the_same_recipe(runs, tmp_path):
    write_leaderboard(runs, tmp_path / "results")
    se, plain, cbam = read_rows(tmp_path / "results")
    assert (se["baseline"], se["top1_gain"], se["latency_ratio"]) == ("cnn3", "1.00", "1.100")
    assert (cbam["top1_gain"], cbam["latency_ratio"]) == ("-0.50", "1.250")
    assert float(se["gmacs_ratio"]) > 1.0 and float(cbam["gmacs"]) > float(se["gmacs"]) > float(plain["gmacs"])
    assert plain["top1_gain"] == "0.00"
    md = (tmp_path / "results" / "LEADERBOARD.md").read_text()
    assert "| 1 | cnn3_se | 2 | 92.00 ± 0.71 |" in md
    assert "+1.00 pts vs cnn3; ×" in md and f"`{RECIPE}`" in md
    assert "Left out (not complete): cnn3_cbam-s1." in md
    assert "multiply-adds" in md


def test_rerun_reproduces_every_file_byte_for_byte(runs, tmp_path):
    make_run(runs, "cnn3_se-s2", "cnn3_se", 2, 92.0)  # no cost.json yet: latency is measured once
    first = {p.name: p.read_bytes() for p in write_leaderboard(runs, tmp_path / "a")}
    cached = (runs / "cnn3_se-s2" / "cost.json").read_text()
    second = {p.name: p.read_bytes() for p in write_leaderboard(runs, tmp_path / "b")}
    assert set(first) == {"leaderboard.csv", "runs.csv", "LEADERBOARD.md", "pareto.png"}
    assert first == second
    assert (runs / "cnn3_se-s2" / "cost.json").read_text() == cached
    assert json.loads(cached)["threads"] == 1


def test_pareto_png_carries_no_software_or_date_metadata(runs, tmp_path):
    write_leaderboard(runs, tmp_path / "results")
    png = (tmp_path / "results" / "pareto.png").read_bytes()
    assert png.startswith(b"\x89PNG") and b"matplotlib" not in png and b"Software" not in png


def test_empty_runs_folder_is_a_one_line_error(tmp_path, capsys):
    (tmp_path / "runs").mkdir()
    with pytest.raises(LeaderboardError, match="no runs under"):
        write_leaderboard(tmp_path / "runs", tmp_path / "results")
    assert main(["leaderboard", str(tmp_path / "runs"), "--out", str(tmp_path / "results")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "summary.json" in err


def test_only_unfinished_runs_name_them_and_how_to_finish(tmp_path):
    make_run(tmp_path / "runs", "cnn3-s0", "cnn3", 0, 50.0, status="stopped")
    with pytest.raises(LeaderboardError, match=r"no complete runs .*cnn3-s0.*--resume runs/<name>/last.safetensors"):
        write_leaderboard(tmp_path / "runs", tmp_path / "results")
