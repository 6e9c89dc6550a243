"""Where a command writes: a folder (``leaderboard --out``, ``viz --out``, ``push --dry-run``) or a file
(``eval --json/--csv``, ``export --onnx``, ``bench --log``).

Checked before any work, so that a mistyped path never costs a traceback after minutes of work, and never
writes into a training run's folder (whose summary, metrics and weights an output would replace) or over
files that the command did not write itself.
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


def prepare_output_file(file: str | os.PathLike, option: str, suffix: str | None = None) -> Path:
    """``file`` as a Path, its folder created, if ``option`` (e.g. "--json") may write it.

    Refuses a folder, a name without ``suffix``, and a file inside a training run's folder.
    """
    path = Path(file)
    example = path / f"out{suffix or '.txt'}"
    if path.is_dir() or path.name in ("", ".", ".."):
        raise UsageError(f"{option} {path} is a folder; give a file path such as {example}")
    if suffix and not path.name.endswith(suffix):
        raise UsageError(f"{option} {path}: the file name must end in {suffix}")
    if any((path.parent / marker).exists() for marker in RUN_MARKERS):
        raise UsageError(f"{option} {path} is inside a training run's folder, whose files it could replace; "
                         f"write it elsewhere, e.g. out/{path.name}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UsageError(f"cannot create the folder of {option} {path}: {err.strerror or err}; choose another "
                         "path") from None
    return path
