"""Committing a run folder's files as one step, so no crash leaves weights, metrics and summary disagreeing.

Files of one commit are written into ``<run>/.staging/``, flushed to disk, and the folder is renamed to
``<run>/.commit/``: that single rename is the commit point. The files are then moved into the run folder
one by one and ``.commit/`` is removed. After a crash, :func:`recover` drops an unfinished ``.staging/``
(the previous state stays whole) or finishes moving a committed ``.commit/`` (the new state becomes whole).
Every process that writes or reads a run folder recovers it first, under the run lock.

``ATTNZOO_FAULT_AT=<point>[#<n>]`` kills the process (SIGKILL) the n-th time (default first) it reaches a
write point, so tests can crash a run at each one; points are ``stage:<file>``, ``commit``,
``apply:<file>`` and ``applied``.
"""

from __future__ import annotations

import errno
import os
import shutil
import signal
from collections.abc import Callable
from pathlib import Path

from attnzoo.errors import RunFolderError

STAGING, COMMITTED = ".staging", ".commit"
FAULT_ENV = "ATTNZOO_FAULT_AT"
_reached: dict[str, int] = {}


def fault_point(name: str) -> None:
    """Die here if ``ATTNZOO_FAULT_AT`` names this point (fault injection for the crash tests)."""
    spec = os.environ.get(FAULT_ENV)
    if not spec:
        return
    point, _, nth = spec.partition("#")
    if point != name:
        return
    _reached[name] = _reached.get(name, 0) + 1
    if _reached[name] == int(nth or 1):
        os.kill(os.getpid(), signal.SIGKILL)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def commit_files(run_dir: Path, writers: dict[str, Callable[[Path], None]]) -> None:
    """Write each ``name -> writer(path)`` into the run folder, all or none.

    A full disk (or any other write error) leaves the previous files untouched and raises
    :class:`RunFolderError`.
    """
    staging = run_dir / STAGING
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        for name, write in writers.items():
            write(staging / name)
            _fsync(staging / name)
            fault_point(f"stage:{name}")
        _fsync(staging)
    except OSError as err:
        shutil.rmtree(staging, ignore_errors=True)
        what = "the disk is full" if err.errno in (errno.ENOSPC, errno.EDQUOT) else err.strerror or str(err)
        raise RunFolderError(f"cannot write run folder {run_dir}: {what}; its previous checkpoint is intact, "
                             f"free space and continue with --resume {run_dir / 'last.safetensors'}") from None
    os.replace(staging, run_dir / COMMITTED)
    _fsync(run_dir)
    fault_point("commit")
    _apply(run_dir)


def _apply(run_dir: Path) -> None:
    committed = run_dir / COMMITTED
    for path in sorted(committed.iterdir()):
        os.replace(path, run_dir / path.name)
        fault_point(f"apply:{path.name}")
    committed.rmdir()
    _fsync(run_dir)
    fault_point("applied")


def recover(run_dir: Path) -> None:
    """Bring a crashed run folder to its last committed state (call with the run lock held)."""
    shutil.rmtree(run_dir / STAGING, ignore_errors=True)
    if (run_dir / COMMITTED).is_dir():
        _apply(run_dir)


def pending(run_dir: Path) -> bool:
    """Whether a crash left a commit (finished or not) that :func:`recover` has not cleaned up yet."""
    return (Path(run_dir) / COMMITTED).is_dir() or (Path(run_dir) / STAGING).is_dir()
