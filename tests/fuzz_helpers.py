"""Helpers for the fuzz and run-folder tests: fingerprints of folders (to prove nothing earlier changed)
and the checks every refused input must pass (one `error:` line, no traceback, exit status 2)."""

from __future__ import annotations

import hashlib
import io
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

from attnzoo_cli import main

# Bookkeeping that any process touching a run may rewrite without changing the run.
IGNORED = {".lock"}


def digest(root: Path) -> dict[str, str]:
    """sha256 of every file under ``root`` (relative path -> hex), so a test can assert nothing changed."""
    root = Path(root)
    if root.is_file():
        return {root.name: hashlib.sha256(root.read_bytes()).hexdigest()}
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and p.name not in IGNORED}


def run_cli(*argv: str) -> tuple[int, str, str]:
    """``attnzoo ARGV`` in this process: (exit status, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        try:
            code = main(list(argv))
        except SystemExit as exc:  # argparse's own errors
            code = exc.code if isinstance(exc.code, int) else 1
    return code, out.getvalue(), err.getvalue()


def assert_one_line_error(code: int, stderr: str, match: str) -> str:
    """The promised shape of a refused CLI input: status 2, one ``error:`` line naming ``match``."""
    lines = [line for line in stderr.splitlines() if "error:" in line]
    assert code == 2, stderr[-2000:]
    assert "Traceback" not in stderr, stderr[-2000:]
    assert len(lines) == 1, stderr[-2000:]
    assert match.lower() in lines[0].lower(), lines[0]
    return lines[0]
