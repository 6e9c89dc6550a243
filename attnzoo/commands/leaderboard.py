"""``attnzoo leaderboard``: rebuild the leaderboard (CSV, Markdown, Pareto plot) from run folders."""

from __future__ import annotations

import argparse


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "leaderboard", help="group runs over seeds and write leaderboard.csv, LEADERBOARD.md and pareto.png")
    parser.add_argument("runs", nargs="?", default="runs", help="folder of run folders (default: runs)")
    parser.add_argument("--out", default="results", help="output folder (default: results)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from attnzoo.evaluate.leaderboard import write_leaderboard

    for path in write_leaderboard(args.runs, args.out):
        print(f"wrote {path}")
    return 0
