"""``attnzoo train``: train or fine-tune a model from a YAML recipe (also under ``torchrun``)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train", help="train a model from a YAML recipe (one process, or many under torchrun)",
        description="Train from a recipe. Under `torchrun --nproc_per_node N -m attnzoo train ...` the same "
                    "command runs DDP (gloo on CPU, NCCL on GPU); batch_size is the global batch.")
    parser.add_argument("recipe", nargs="?", help="recipe YAML (default with --resume: the run's recipe.yaml)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="FIELD=VALUE",
                        help="override a recipe field, e.g. --set optim.lr=0.05 (value parsed as YAML; "
                        "repeatable); shorten a run with --set epochs=1 or --set max_steps=N (stop once the run "
                        "has taken N optimizer steps in all)")
    parser.add_argument("--seed", type=int, help="override the recipe's seed")
    parser.add_argument("--resume", metavar="CHECKPOINT",
                        help="continue a run from runs/<name>/last.safetensors (its .state file sits beside it) "
                        "to the end of its schedule; a max_steps that stopped it applies again only if given "
                        "again with --set")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from attnzoo.errors import RecipeError
    from attnzoo.train import load_recipe, train
    from attnzoo.train.checkpoint import read_header

    recipe_path, overrides = args.recipe, args.overrides
    if recipe_path is None:
        if not args.resume:
            raise RecipeError("give a recipe file (e.g. recipes/fashion_mnist/resnet18_cbam.yaml) or --resume")
        read_header(args.resume)  # a missing or foreign state file says so, not that recipe.yaml is missing
        recipe_path = Path(args.resume).parent / "recipe.yaml"
        # max_steps budgets one invocation (`--set max_steps=N` for a quick look), not the schedule: the
        # run's saved copy carries it, and resuming with it would stop again at once.
        overrides = ["max_steps=null", *overrides]
    recipe, path = load_recipe(recipe_path, overrides, args.seed)
    summary = train(recipe, path, resume=args.resume)
    run_dir = Path(args.resume).parent if args.resume else Path(recipe.output) / recipe.name
    if int(os.environ.get("RANK", "0")) == 0:
        print(outcome(summary, run_dir))
    return 0


def outcome(summary: dict, run_dir: Path) -> str:
    """The run's last line: how far it got, the scores it has (val each epoch, test once complete), where
    it lies and, for a run stopped early (max_steps, Ctrl-C), how to go on."""
    parts = [f"{summary['name']}: {summary['status']} after {summary['epochs']} epochs"]
    if summary["top1"] is not None:
        parts.append(f"val top-1 {summary['top1']:.2f} (best {summary['best_top1']:.2f})")
    if summary["test_top1"] is not None:
        parts.append(f"test top-1 {summary['test_top1']:.2f}")
    parts.append(f"{summary['train_time_s']} s in {run_dir}")
    line = ", ".join(parts)
    if summary["status"] != "complete":
        line += f"; go on with attnzoo train --resume {run_dir / 'last.safetensors'}"
    return line
