"""An exclusive lock on a run folder, so two processes never write the same run.

The lock is ``fcntl.flock`` on ``<run>/.lock``: the operating system releases it when its process dies, so
a lock left by a killed run is stale by construction and the next run simply takes it. The file records the
holder (pid, host, start time) so that a refusal can say who holds it; it is never published.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from pathlib import Path

from attnzoo.errors import RunFolderError

LOCK_NAME = ".lock"


class RunLock:
    """Held from :meth:`acquire` until :meth:`release` (or the process's death)."""

    def __init__(self, run_dir: Path) -> None:
        self.path = Path(run_dir) / LOCK_NAME
        self._fd: int | None = None

    def acquire(self) -> "RunLock":
        """Take the lock or raise :class:`RunFolderError` naming the live process that holds it."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as err:  # a file in the way, no permission, a read-only disk
            raise RunFolderError(f"cannot create run folder {self.path.parent}: {err.strerror or err}; set "
                                 "output (or --set name=...) to a folder you can write") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _describe(os.read(fd, 4096))
            os.close(fd)
            raise RunFolderError(f"run folder {self.path.parent} is in use by {holder}; wait for that run to "
                                 "finish or stop it, or choose another --set name=...") from None
        os.ftruncate(fd, 0)
        record = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.strftime("%Y-%m-%dT%H:%M:%S")}
        os.pwrite(fd, json.dumps(record).encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        """Give the lock up (idempotent); the file stays, empty, for the next holder."""
        if self._fd is not None:
            os.ftruncate(self._fd, 0)
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    @property
    def held(self) -> bool:
        return self._fd is not None


def _describe(raw: bytes) -> str:
    try:
        record = json.loads(raw)
        return f"process {int(record['pid'])} on {record['host']} (since {record['since']})"
    except (ValueError, KeyError, TypeError):
        return "another process"
