"""The folder a command writes its files into (``leaderboard --out``, ``viz --out``, ``push --dry-run``).

Checked before any work, so that a mistyped path never costs a traceback after minutes of work, and never
writes into a run folder or over files that the command did not write itself.
"""

from __future__ import annotations

import os
from collections.abc import Collection
from pathlib import Path

from attnzoo.errors import UsageError

# Files that mark a training run's folder (attnzoo.train.run_folder); nothing else writes there.
RUN_MARKERS = ("run.json", "summary.json")


def check_output_folder(folder: str | os.PathLike, what: str, owns: Collection[str] | None = None) -> Path:
    """``folder`` as a Path, if it may receive ``what`` (e.g. "the leaderboard"); creates nothing.

    Refuses a path that is a file or a run folder; with ``owns`` (the names the command writes), also an
    existing folder holding anything else, whose files an overwrite could destroy.
    """
    path = Path(folder)
    if path.exists() and not path.is_dir():
        raise UsageError(f"{path} is a file; give a folder for {what}")
    if any((path / marker).exists() for marker in RUN_MARKERS):
        raise UsageError(f"{path} is a training run's folder; give {what} a folder of its own, e.g. out/")
    if owns is not None and path.is_dir():
        foreign = sorted(p.name for p in path.iterdir() if p.name not in owns)
        if foreign:
            more = f" and {len(foreign) - 1} other file(s)" if len(foreign) > 1 else ""
            raise UsageError(f"{path} already holds {foreign[0]}{more}, not written for {what}, which an "
                             "overwrite could destroy; give an empty or new folder")
    return path


def prepare_output_folder(folder: str | os.PathLike, what: str, owns: Collection[str] | None = None) -> Path:
    """:func:`check_output_folder`, then create the folder (a one-line error when it cannot be)."""
    path = check_output_folder(folder, what, owns)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UsageError(f"cannot create {path} for {what}: {err.strerror or err}; give a folder you can "
                         "write") from None
    return path
