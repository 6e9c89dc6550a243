"""``attnzoo eval``: accuracy and cost (params, GMACs, img/s, peak memory) of one or more models."""

from __future__ import annotations

import argparse

from attnzoo_cli.options import check_at_least, image_side, process_counts

# (option, attribute, smallest allowed value): counts that 0 or a negative number would make meaningless
_COUNTS = (("--batch-size", "batch_size", 1), ("--runs", "runs", 1), ("--num-classes", "num_classes", 1))


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "eval", help="evaluate models: top-1/top-5, loss, params, GMACs, throughput, peak memory",
        description="Evaluate models. GMACs are multiply-adds per image (the SE/CBAM papers' and timm's GFLOPs).")
    parser.add_argument("models", nargs="+", metavar="MODEL", help="timm/attnzoo model name or hf-hub:org/repo")
    parser.add_argument("--checkpoint", help="safetensors file or hf-hub:org/repo holding the weights (one MODEL)")
    data = parser.add_mutually_exclusive_group()
    data.add_argument("--data", help="'fashion-mnist' (test split) or an image folder with one subfolder per class")
    data.add_argument("--no-data", action="store_true", help="cost only (the default when --data is not given)")
    parser.add_argument("--img-size", type=int, help="input side in pixels (default: the run's, for a checkpoint "
                        "in a run folder; else 28 for fashion-mnist; else the model's config)")
    parser.add_argument("--batch-size", type=int, default=32, help="batch size for evaluation and timing")
    parser.add_argument("--num-classes", type=int, help="reset the classifier head to this many classes")
    parser.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's choice for accuracy, 1 for timing, whose "
                        "CPU time then measures the work a model needs even on a busy machine)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    parser.add_argument("--runs", type=int, default=5, help="timing rounds (each model once per round, in "
                        "turn); medians are reported")
    parser.add_argument("--workers", type=int, default=0, help="data loader worker processes")
    parser.add_argument("--json", metavar="PATH", help="also write the rows as JSON")
    parser.add_argument("--csv", metavar="PATH", help="also write the rows as CSV")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from attnzoo.errors import CheckpointError
    from attnzoo.evaluate.evaluate import evaluate_side_by_side, format_table, write_rows
    from attnzoo.outputs import prepare_output_file

    check_at_least(args, (*_COUNTS, *process_counts(), image_side("--img-size", "img_size")))
    for option, path, suffix in (("--json", args.json, ".json"), ("--csv", args.csv, ".csv")):
        if path:
            prepare_output_file(path, option, suffix)  # before the evaluation, not after it
    if args.checkpoint and len(args.models) > 1:
        raise CheckpointError(f"--checkpoint {args.checkpoint} fits one model, got {len(args.models)}; "
                              "evaluate the models one at a time")
    rows = evaluate_side_by_side(
        args.models, checkpoints=[args.checkpoint] * len(args.models), data=None if args.no_data else args.data,
        img_size=args.img_size, batch_size=args.batch_size, num_classes=args.num_classes, threads=args.threads,
        device=args.device, runs=args.runs, workers=args.workers, progress=True)
    print(format_table(rows))
    write_rows(rows, json_path=args.json, csv_path=args.csv)
    return 0
