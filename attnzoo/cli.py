"""The ``attnzoo`` command: parses arguments, then calls the library."""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from collections.abc import Sequence

from attnzoo import commands
from attnzoo.errors import AttnzooError


def build_parser() -> argparse.ArgumentParser:
    """One subparser per module in :mod:`attnzoo.commands`, in name order."""
    parser = argparse.ArgumentParser(prog="attnzoo", description=__doc__)
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        importlib.import_module(f"{commands.__name__}.{info.name}").add_parser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; user errors print as one ``error:`` line and exit with status 2."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except AttnzooError as err:
        print(f"attnzoo {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
