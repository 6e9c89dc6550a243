"""Leaderboard: tracks kept apart, one run per (variant, seed), paired differences against the plain model,
old-protocol runs marked, bad run folders reported without aborting, files reproduced byte for byte."""

import csv
import json

import pytest

from attnzoo_cli import main
from attnzoo.evaluate.leaderboard import LeaderboardError, write_leaderboard
from leaderboard_helpers import TRACK, make_run


@pytest.fixture
def runs(tmp_path):
    root = tmp_path / "runs"
    for seed, top1 in enumerate([90.0, 91.0, 92.0]):
        make_run(root / "short", f"cnn3_s{seed}", "cnn3", seed, top1)
    for seed, top1 in enumerate([91.5, 92.5, 93.0]):  # +1.5, +1.5, +1.0 on the same seeds
        make_run(root / "short", f"cnn3_se_s{seed}", "cnn3_se", seed, top1, ms_per_img=1.1)
    make_run(root / "short", "cnn3_se_s1_rerun", "cnn3_se", 1, 50.0)  # same variant and seed: not averaged
    make_run(root / "short", "cnn3_cbam_s0", "cnn3_cbam", 0, 89.5, ms_per_img=1.25)
    make_run(root / "short", "cnn3_cbam_s1", "cnn3_cbam", 1, 10.0, status="stopped")
    make_run(root / "long", "cnn3_s0", "cnn3", 0, 95.0, epochs=10, recipe="recipes/fmnist/long/cnn3.yaml")
    make_run(root / "old", "cnn3_s0", "cnn3", 0, 94.0, old_protocol=True, recipe=f"{TRACK}/cnn3.yaml")
    return root


def read_rows(out):
    with open(out / "leaderboard.csv") as f:
        return list(csv.DictReader(f))


def test_tracks_never_mix_budgets_and_old_protocol(runs, tmp_path):
    write_leaderboard(runs, tmp_path / "results")
    rows = read_rows(tmp_path / "results")
    tracks = {r["track"] for r in rows}
    assert len(tracks) == 3
    assert [r["variant"] for r in rows if "2 epochs" in r["track"] and "old" not in r["track"]] == \
        ["cnn3_se", "cnn3", "cnn3_cbam"]
    long = [r for r in rows if "10 epochs" in r["track"]]
    assert [(r["variant"], r["test_top1_mean"], r["baseline"]) for r in long] == [("cnn3", "95.00", "cnn3")]
    old = [r for r in rows if "old protocol" in r["track"]]
    assert [(r["variant"], r["test_top1_mean"], r["val_top1_mean"]) for r in old] == [("cnn3", "94.00", "")]
    md = (tmp_path / "results" / "LEADERBOARD.md").read_text()
    assert md.index("old protocol") > md.index("10 epochs")  # old-protocol tracks come last, marked
    assert "not comparable" in md


def test_a_seed_counts_once_and_the_duplicate_is_reported(runs, tmp_path):
    write_leaderboard(runs, tmp_path / "results")
    se = next(r for r in read_rows(tmp_path / "results") if r["variant"] == "cnn3_se")
    assert (se["seeds"], se["runs"]) == ("3", "cnn3_se_s0;cnn3_se_s1;cnn3_se_s2")
    assert (se["test_top1_mean"], se["test_top1_std"]) == ("92.33", "0.76")
    md = (tmp_path / "results" / "LEADERBOARD.md").read_text()
    assert "Duplicates (counted once): short/cnn3_se_s1_rerun (seed 1 of cnn3_se_s1)." in md


def test_paired_difference_and_interval_against_the_plain_model(runs, tmp_path):
    write_leaderboard(runs, tmp_path / "results")
    rows = {r["variant"]: r for r in read_rows(tmp_path / "results") if "2 epochs" in r["track"]
            and "old" not in r["track"]}
    se, cbam, plain = rows["cnn3_se"], rows["cnn3_cbam"], rows["cnn3"]
    # diffs 1.5, 1.5, 1.0: mean 1.333, sd 0.2887, half-width 4.3027 * 0.2887 / sqrt(3) = 0.717
    assert (se["baseline"], se["paired_n"], se["paired_diff"]) == ("cnn3", "3", "1.33")
    assert (se["ci_low"], se["ci_high"], se["ci_excludes_0"]) == ("0.62", "2.05", "yes")
    assert (cbam["paired_n"], cbam["paired_diff"], cbam["ci_low"], cbam["ci_excludes_0"]) == ("1", "-0.50", "", "")
    assert plain["paired_n"] == ""
    md = (tmp_path / "results" / "LEADERBOARD.md").read_text()
    assert "+1.33 [+0.62, +2.05] (n=3) **excludes 0**" in md
    assert "-0.50 (n=1, no interval)" in md
    assert "| 92.33 ± 0.76 | 92.58 | 93.33 |" in md  # test (final), test (best on val), val
    with open(tmp_path / "results" / "paired.csv") as f:
        pairs = {(r["variant"], r["vs"]): r for r in csv.DictReader(f) if "2 epochs" in r["track"]
                 and "old" not in r["track"]}
    assert (pairs["cnn3", "cnn3_se"]["mean_diff"], pairs["cnn3", "cnn3_se"]["ci_high"]) == ("-1.33", "-0.62")
    assert (pairs["cnn3_se", "cnn3_cbam"]["n"], pairs["cnn3_se", "cnn3_cbam"]["mean_diff"]) == ("1", "2.00")
    assert "| cnn3_se |  | +1.33 [+0.62, +2.05] (3) **excl. 0** | +2.00 (1) |" in md


def test_a_corrupt_summary_is_reported_and_the_rest_ranked(runs, tmp_path):
    bad = runs / "short" / "broken_s9"
    bad.mkdir()
    (bad / "summary.json").write_text("{not json")
    write_leaderboard(runs, tmp_path / "results")
    md = (tmp_path / "results" / "LEADERBOARD.md").read_text()
    assert "Left out (unreadable): short/broken_s9 (" in md
    assert "Left out (not complete): short/cnn3_cbam_s1." in md
    assert len(read_rows(tmp_path / "results")) == 5


def test_rerun_reproduces_every_file_byte_for_byte(runs, tmp_path):
    make_run(runs / "short", "cnn3_se_s3", "cnn3_se", 3, 92.0, ms_per_img=None)
    first = {p.name: p.read_bytes() for p in write_leaderboard(runs, tmp_path / "a")}
    second = {p.name: p.read_bytes() for p in write_leaderboard(runs, tmp_path / "b")}
    assert set(first) == {"leaderboard.csv", "runs.csv", "paired.csv", "LEADERBOARD.md", "pareto.png"}
    assert first == second
    assert not (runs / "short" / "cnn3_se_s3" / "cost.json").exists()  # latency measured once per variant


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
    make_run(tmp_path / "runs", "cnn3_s0", "cnn3", 0, 50.0, status="stopped")
    stopped_early = make_run(tmp_path / "runs", "cnn3_s1", "cnn3", 1, 50.0, status="stopped")
    summary = json.loads((stopped_early / "summary.json").read_text())  # stopped mid-epoch: nothing scored
    summary |= {"top1": None, "best_top1": None, "test_top1": None, "best_test_top1": None, "epochs": 0}
    (stopped_early / "summary.json").write_text(json.dumps(summary))
    with pytest.raises(LeaderboardError, match=r"no complete runs .*2 unfinished, 0 unreadable.*--resume"):
        write_leaderboard(tmp_path / "runs", tmp_path / "results")
