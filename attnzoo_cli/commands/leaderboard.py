"""``attnzoo leaderboard``: rebuild the leaderboard (CSV, Markdown, Pareto plot) from run folders."""

from __future__ import annotations

import argparse


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "leaderboard", help="rank runs by track with paired differences and write LEADERBOARD.md, CSVs and pareto.png",
        description="Read every run folder under RUNS, at any depth (summary.json, metrics.csv, recipe.yaml); "
        "group the runs into tracks (dataset, image size, epochs, training images, recipe folder, from scratch "
        "or fine-tuned, protocol) and each track's recipes over seeds (test top-1 mean and std, one run per "
        "seed); compare every variant with the track's plain model on the same seeds (mean paired difference, "
        "95% t interval); write leaderboard.csv, runs.csv, paired.csv, LEADERBOARD.md and pareto.png (one "
        "panel per track) to --out.")
    parser.add_argument("runs", nargs="?", default="runs", help="folder of run folders")
    parser.add_argument("--out", default="out/leaderboard", help="output folder (the committed board: --out results)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from attnzoo.evaluate.leaderboard import write_leaderboard

    for path in write_leaderboard(args.runs, args.out):
        print(f"wrote {path}")
    return 0
