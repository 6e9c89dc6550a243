"""The committed leaderboard files are what `attnzoo leaderboard results/runs` makes of the committed run
folders: a figure in results/ (and so in the README, which quotes it) cannot drift from its logs."""

from pathlib import Path

import pytest

from attnzoo.evaluate.leaderboard import build_board, gather_runs, write_leaderboard

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "results"


@pytest.fixture(scope="module")
def board():
    return build_board(*gather_runs(RESULTS / "runs"))


def test_committed_leaderboard_is_rebuilt_from_committed_runs(board, tmp_path):
    assert not board.unreadable and not board.unfinished and not board.duplicates
    write_leaderboard(RESULTS / "runs", tmp_path)
    for name in ("LEADERBOARD.md", "leaderboard.csv", "runs.csv", "paired.csv"):
        assert (tmp_path / name).read_text() == (RESULTS / name).read_text(), f"results/{name} is stale"


def test_committed_tracks_have_the_seeds_the_protocol_asks(board):
    """>= 5 seeds per variant on the short tracks, >= 3 on fine-tuning, all selected on val."""
    seeds = {(Path(g.first.recipe).parent.name, g.variant): len(g.runs)
             for t in board.tracks if not t.old_protocol for g in t.groups}
    short = {k: n for k, n in seeds.items() if k[0].startswith("short_")}
    finetune = {k: n for k, n in seeds.items() if k[0] == "finetune" and k[1] != "base"}
    assert len(short) == 8 and min(short.values()) >= 5
    assert len(finetune) == 5 and min(finetune.values()) >= 3
