"""``attnzoo leaderboard``: rebuild the leaderboard (CSV, Markdown, Pareto plot) from run folders."""

from __future__ import annotations

import argparse


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "leaderboard", help="group runs over seeds and write leaderboard.csv, LEADERBOARD.md and pareto.png",
        description="Read every run folder under RUNS (summary.json, metrics.csv, recipe.yaml), group the runs "
        "of one model and recipe over seeds (mean and std of test top-1), and write leaderboard.csv, "
        "LEADERBOARD.md and pareto.png (accuracy against cost) to --out.")
    parser.add_argument("runs", nargs="?", default="runs", help="folder of run folders")
    parser.add_argument("--out", default="results", help="output folder")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from attnzoo.evaluate.leaderboard import write_leaderboard

    for path in write_leaderboard(args.runs, args.out):
        print(f"wrote {path}")
    return 0
