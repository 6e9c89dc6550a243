"""`attnzoo --help` and every subcommand's help: answered without torch or timm, every option explained."""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys

from attnzoo_cli import DESCRIPTION, HelpFormatter, build_parser

HEAVY = ("torch", "timm", "attnzoo")


def subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def test_help_of_every_command_imports_no_torch_timm_or_attnzoo() -> None:
    commands = sorted(subparsers(build_parser()))
    script = f"""
import contextlib, io, json, sys
from attnzoo_cli import main
texts = {{}}
for argv in [["--help"]] + [[c, "--help"] for c in {commands!r}]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        try:
            main(argv)
        except SystemExit as exit:
            assert exit.code == 0, (argv, exit.code)
    texts[" ".join(argv)] = out.getvalue()
print(json.dumps({{"loaded": sorted(m for m in sys.modules if m.split(".")[0] in {HEAVY!r}), "texts": texts}}))
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    report = json.loads(result.stdout)
    assert report["loaded"] == []
    assert len(report["texts"]) == len(commands) + 1
    for argv, text in report["texts"].items():
        assert text.startswith("usage: attnzoo"), argv


def test_top_level_help_describes_the_tool_and_lists_every_command() -> None:
    text = build_parser().format_help()
    assert " ".join(DESCRIPTION.split()[:6]) in " ".join(text.split())
    for name in subparsers(build_parser()):
        assert re.search(rf"^ +{name}\b", text, re.MULTILINE), name


def test_every_command_and_option_is_explained() -> None:
    for name, parser in subparsers(build_parser()).items():
        assert parser.description, f"`attnzoo {name}` has no description"
        for action in parser._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            assert action.help, f"`attnzoo {name}` {action.dest} has no help"


def test_option_defaults_are_shown_once() -> None:
    bench = subparsers(build_parser())["bench"].format_help()
    assert "images per training step (default: 64)" in " ".join(bench.split())
    formatter = HelpFormatter("attnzoo")
    for name, parser in subparsers(build_parser()).items():
        text = parser.format_help()
        assert "(default: None)" not in text, name
        assert "(default: False)" not in text, name
        for action in parser._actions:
            shown = formatter._get_help_string(action) or ""
            assert len(re.findall(r"\(default[: ]", shown)) <= 1, f"`attnzoo {name}` {action.dest}: {shown}"
