"""``attnzoo push``: publish a training run (weights, config, model card) to the Hugging Face Hub.

The token comes from ``HF_TOKEN`` or ``hf auth login``, never from the command line (where shell history
and process lists would keep it); ``HF_ENDPOINT`` selects another Hub.
"""

from __future__ import annotations

import argparse


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "push",
        help="publish runs/<name> to the Hugging Face Hub (safetensors + config.json + model card)",
        description="Publish a training run's weights (safetensors), config.json and model card to the Hugging "
        "Face Hub. The token comes from HF_TOKEN or `hf auth login`, never from the command line; HF_ENDPOINT "
        "selects another Hub.",
    )
    parser.add_argument("run", help="run folder, e.g. runs/fmnist-resnet18_cbam")
    parser.add_argument("--repo", required=True, help="Hub repo id, e.g. myorg/resnet18_cbam.fmnist")
    parser.add_argument("--revision", help="branch to push to, created from main if missing (default: main)")
    parser.add_argument("--private", action="store_true", help="create the repo private")
    parser.add_argument("--weights", choices=("best", "last"), default="best", help="checkpoint to publish")
    parser.add_argument("--license", default="apache-2.0", help="license id for the card")
    parser.add_argument("--dry-run", metavar="DIR", help="write the files that would be uploaded to DIR, push nothing")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from attnzoo.hub import export_run, push_run

    if args.dry_run:
        folder = export_run(args.run, args.dry_run, repo_id=args.repo, weights=args.weights, license=args.license)
        print(f"wrote {', '.join(sorted(p.name for p in folder.iterdir()))} to {folder} (nothing pushed)")
        return 0
    url = push_run(args.run, args.repo, weights=args.weights, revision=args.revision, private=args.private,
                   license=args.license)
    print(f"pushed {args.run} to {args.repo}" + (f"@{args.revision}" if args.revision else "") + f": {url}")
    return 0
