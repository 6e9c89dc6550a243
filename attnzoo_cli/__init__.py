"""The ``attnzoo`` command line.

A package of its own, beside :mod:`attnzoo`, because importing ``attnzoo`` imports torch and timm (that is
what registers its models in timm's registry): parsing arguments and printing ``--help`` here import
neither, and each command imports the library only when it runs.
"""

from __future__ import annotations

import argparse
import functools
import importlib
import os
import pkgutil
import sys
from collections.abc import Sequence

from attnzoo_cli import commands

DESCRIPTION = (
    "Channel and spatial attention (SE, CBAM, ECA, ...) for timm CNN backbones: train attention models "
    "from YAML recipes, evaluate and benchmark them against their plain backbone, plot what the attention "
    "does, export to ONNX and publish to the Hugging Face Hub. `attnzoo COMMAND --help` explains each command."
)


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows each option's default after its help, except where there is none to show (None, False, [])."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None or action.default is False or action.default == []:
            return action.help
        return super()._get_help_string(action)


def build_parser() -> argparse.ArgumentParser:
    """One subparser per module in :mod:`attnzoo_cli.commands`, in name order."""
    parser = argparse.ArgumentParser(prog="attnzoo", description=DESCRIPTION, formatter_class=HelpFormatter)
    subparsers = parser.add_subparsers(
        dest="command", required=True, metavar="COMMAND",
        parser_class=functools.partial(argparse.ArgumentParser, formatter_class=HelpFormatter))
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        importlib.import_module(f"{commands.__name__}.{info.name}").add_parser(subparsers)
    return parser


def _speaks_for_the_job() -> bool:
    """Under torchrun every process fails alike, so only rank 0 prints the error; a lone process always does,
    even with a RANK left over in its environment."""
    alone = os.environ.get("WORLD_SIZE", "1").strip() in ("", "0", "1")
    return alone or os.environ.get("RANK", "0") == "0"


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; user errors print as one ``error:`` line and exit with status 2."""
    args = build_parser().parse_args(argv)
    from attnzoo.errors import AttnzooError  # imports torch and timm: only once a command runs

    try:
        return int(args.func(args) or 0)
    except AttnzooError as err:
        if _speaks_for_the_job():
            print(f"attnzoo {args.command}: error: {err}", file=sys.stderr)
        return 2
