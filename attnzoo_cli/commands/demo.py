"""``attnzoo demo``: the main job in miniature: what attention buys and costs, on real data.

Trains a backbone's plain, SE and CBAM variants on Fashion-MNIST under one short recipe (cnn3 by default:
about a minute per epoch and variant on a 2-core CPU), then evaluates each checkpoint with ``attnzoo eval``'s
function, so the table shows test top-1 next to parameters, GMACs and measured speed. ``--no-train`` prints
the cost of any backbone's variants without data.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from attnzoo_cli.options import check_at_least, image_side

DEMO_RECIPE = {  # the leaderboard's cnn3 recipe (recipes/fashion_mnist/leaderboard/cnn3.yaml), shortened
    "data": {"dataset": "fashion-mnist", "test_split": "test"},  # val selects, test is what the table shows
    "aug": {"crop_padding": 2, "hflip": 0.5},
    "optim": {"name": "adam", "lr": 1.0e-3, "weight_decay": 0.0, "nesterov": False},
    "sched": {"name": "cosine", "warmup_epochs": 0.2, "warmup_lr": 1.0e-4},
    "batch_size": 128,
    "seed": 0,
}


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demo", help="train a backbone's plain/SE/CBAM variants briefly on Fashion-MNIST and compare them",
        description="Train BACKBONE, BACKBONE_se and BACKBONE_cbam on Fashion-MNIST with one short recipe, "
                    "then print test top-1, params, GMACs and speed side by side.")
    parser.add_argument("backbone", nargs="?", default="cnn3", help="backbone whose plain, _se and _cbam "
                        "variants are compared, e.g. cnn3, resnet18, mobilenetv2_100")
    parser.add_argument("--epochs", type=int, default=1, help="epochs per variant")
    parser.add_argument("--max-steps", type=int, help="stop each variant after N steps (a quick look)")
    parser.add_argument("--output", default="runs/demo", help="folder for the runs")
    parser.add_argument("--no-train", action="store_true", help="cost only: params, GMACs and speed, no data")
    parser.add_argument("--img-size", type=int, help="cost-only input side (default: the model's)")
    parser.set_defaults(func=run)


def variants(backbone: str) -> list[str]:
    from attnzoo.models import check_model_name

    names = [backbone, f"{backbone}_se", f"{backbone}_cbam"]
    for name in names:
        check_model_name(name)
    return names


def check_fresh_output(names: list[str], output: str) -> None:
    """Refuse, before any work, an --output that already holds the demo's runs (a second ``make demo``):
    the demo trains from scratch, and train's own refusal would name options the demo does not have."""
    from attnzoo.errors import RunFolderError
    from attnzoo.train.run_folder import RESULT_FILES

    held = [name for name in names if any((Path(output) / name / file).exists() for file in RESULT_FILES)]
    if held:
        raise RunFolderError(f"{output} already holds the demo's runs ({', '.join(held)}); run it again with "
                             f"--output {output.rstrip('/')}2 (or move {output} away)")


def train_variant(name: str, args: argparse.Namespace) -> Path:
    """Train ``name`` under the demo recipe; returns its last checkpoint."""
    from attnzoo.train import recipe_from_dict, train

    recipe = recipe_from_dict({**DEMO_RECIPE, "model": {"name": name}, "name": name, "output": args.output,
                               "epochs": args.epochs, "max_steps": args.max_steps})
    train(recipe)
    return Path(args.output) / name / "last.safetensors"


def run(args: argparse.Namespace) -> int:
    from attnzoo.evaluate.evaluate import evaluate_side_by_side, format_table

    check_at_least(args, (("--epochs", "epochs", 1), ("--max-steps", "max_steps", 1),
                          image_side("--img-size", "img_size")))
    names = variants(args.backbone)
    if args.no_train:
        rows = evaluate_side_by_side(names, img_size=args.img_size)
    else:
        check_fresh_output(names, args.output)
        checkpoints = [str(train_variant(name, args)) for name in names]
        print(f"evaluating {', '.join(names)} on the Fashion-MNIST test set", file=sys.stderr, flush=True)
        rows = evaluate_side_by_side(names, checkpoints=checkpoints, data="fashion-mnist")
    print(format_table(rows))
    if not args.no_train:
        print(f"Runs in {args.output}/; a short schedule, so compare the variants with each other, not with "
              "results/LEADERBOARD.md.")
    return 0
