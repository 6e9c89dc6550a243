"""The run folder ``runs/<name>/``: resolved recipe, environment, per-epoch metrics and the summary that
evaluation, the leaderboard and the Hub export read."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import platform
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml

from attnzoo.errors import RunFolderError
from attnzoo.train import checkpoint, commit
from attnzoo.train.run_lock import RunLock
from attnzoo.version import __version__

METRIC_FIELDS = ("epoch", "train_loss", "train_top1", "val_loss", "val_top1", "val_top5", "lr", "epoch_time_s")


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def write_recipe(run_dir: Path, recipe: dict[str, Any]) -> None:
    _atomic_write(run_dir / "recipe.yaml", yaml.safe_dump(recipe, sort_keys=False))


def hardware(device: torch.device, world_size: int) -> str:
    """A short description such as ``2-core CPU, torch 2.14.1`` or ``2x NVIDIA H100, torch ...``."""
    if device.type == "cuda":
        what = f"{world_size}x {torch.cuda.get_device_name(device)}"
    else:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
        what = f"{cores}-core CPU" + (f", {world_size} processes" if world_size > 1 else "")
    return f"{what}, torch {torch.__version__}"


def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).resolve().parent)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def write_environment(run_dir: Path, device: torch.device, world_size: int) -> None:
    """Versions, hardware and command line, so a number can be traced to what produced it."""
    import timm

    env = {
        "command": sys.argv,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "processor": platform.processor(),
        "torch": torch.__version__,
        "timm": timm.__version__,
        "attnzoo": __version__,
        "git_commit": _git_commit(),
        "device": str(device),
        "hardware": hardware(device, world_size),
        "world_size": world_size,
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
    }
    _atomic_write(run_dir / "environment.json", json.dumps(env, indent=2) + "\n")


def write_metrics(path: Path, rows: list[dict[str, Any]]) -> None:
    """Write ``metrics.csv`` from the full history (so a resumed run never duplicates rows); a commit
    (:mod:`attnzoo.train.commit`) puts it in place together with the weights and summary."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=METRIC_FIELDS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: (f"{row[k]:.6g}" if isinstance(row[k], float) else row[k]) for k in METRIC_FIELDS})
    path.write_text(buf.getvalue())


def write_summary(path: Path, summary: dict[str, Any]) -> None:
    """Write ``summary.json``; like :func:`write_metrics`, only ever into a commit."""
    path.write_text(json.dumps(summary, indent=2) + "\n")


class Scalars:
    """TensorBoard scalars, created on first use (importing tensorboard costs seconds)."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir, self._writer = run_dir, None

    def add(self, tag: str, value: float, step: int) -> None:
        if self._writer is None:
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(log_dir=str(self.run_dir))
        self._writer.add_scalar(tag, value, step)

    def flush(self) -> None:
        if self._writer is not None:
            self._writer.flush()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()


RUN_FILE = "run.json"
# What a run leaves behind; a folder holding any of these belongs to a run and is never trained into afresh.
RESULT_FILES = ("last.state.safetensors", "last.safetensors", "best.safetensors", "metrics.csv", "summary.json")


@dataclass
class RunClaim:
    """A run folder this process may write: its path, the run's identity, and the lock (rank 0 only)."""

    run_dir: Path
    run_id: str | None
    lock: RunLock | None
    created: bool = False  # this claim made the folder (a new run), so a run that fails to start removes it

    def release(self) -> None:
        if self.lock is not None:
            self.lock.release()

    def abandon(self) -> None:
        """Release the folder of a run that failed before its first commit; a folder this claim created
        goes away with its identity and lock, so a mistake in the recipe leaves nothing behind."""
        self.release()
        if self.created and self.lock is not None:
            for name in (RUN_FILE, self.lock.path.name):
                (self.run_dir / name).unlink(missing_ok=True)
            with contextlib.suppress(OSError):  # not empty: something else was put there meanwhile
                self.run_dir.rmdir()


def claim(recipe: Any, resume: str | None, is_main: bool) -> RunClaim:
    """The folder a run writes, locked and checked to belong to it, before any work starts.

    A new run gets ``output/name`` and refuses a folder that already holds a run. A resumed run gets the
    folder its checkpoint lies in, wherever the command runs from, and refuses a recipe whose name or
    output point elsewhere or a checkpoint of another run (identity in ``run.json``).
    """
    if resume is None:
        run_dir = Path(recipe.output) / recipe.name
        created = not run_dir.exists()
    else:
        created = False
        state = checkpoint.state_path_for(resume)
        run_dir = state.parent.resolve()
    lock = RunLock(run_dir).acquire() if is_main else None
    try:
        if is_main:
            commit.recover(run_dir)
        run_id = _fresh_identity(run_dir, recipe, is_main) if resume is None else \
            _resumed_identity(run_dir, recipe, checkpoint.read_header(resume), is_main)
    except BaseException:
        if lock is not None:
            lock.release()
        raise
    return RunClaim(run_dir, run_id, lock, created)


def _fresh_identity(run_dir: Path, recipe: Any, is_main: bool) -> str | None:
    held = [name for name in RESULT_FILES if (run_dir / name).exists()]
    if held:
        raise RunFolderError(f"run folder {run_dir} already holds a run; continue it with --resume "
                             f"{run_dir / 'last.safetensors'}, or choose another --set name=... (it has {held[0]})")
    if not is_main:
        return None
    run_id = uuid.uuid4().hex
    # The working directory too: the recipe's relative data.root means a folder under it (never published).
    record = {"run_id": run_id, "name": recipe.name, "cwd": os.getcwd()}
    _atomic_write(run_dir / RUN_FILE, json.dumps(record, indent=2) + "\n")
    return run_id


def _resumed_identity(run_dir: Path, recipe: Any, header: dict[str, Any], is_main: bool) -> str | None:
    saved = header.get("recipe") if isinstance(header.get("recipe"), dict) else {}
    for key in ("name", "output"):
        if key in saved and saved[key] != getattr(recipe, key):
            raise RunFolderError(
                f"--resume continues run {saved.get('name')!r} in its own folder {run_dir}, but the recipe sets "
                f"{key}={getattr(recipe, key)!r} (the run has {saved[key]!r}); drop that override, or start a "
                "new run from these weights with --set model.init=...")
    ckpt_id = header.get("run_id")
    folder_id = read_run_id(run_dir)
    _check_relative_data_root(run_dir, recipe)
    if ckpt_id and folder_id and ckpt_id != folder_id:
        raise RunFolderError(f"the checkpoint belongs to run {ckpt_id} but {run_dir} holds run {folder_id}; "
                             "resume from that folder's own last.safetensors")
    run_id = ckpt_id or folder_id or uuid.uuid4().hex
    if is_main and folder_id is None:  # a folder written before runs recorded their identity
        _atomic_write(run_dir / RUN_FILE, json.dumps({"run_id": run_id, "name": recipe.name}, indent=2) + "\n")
    return run_id


def _check_relative_data_root(run_dir: Path, recipe: Any) -> None:
    """A relative data.root names a folder under the directory the run started in: resumed from another
    directory it would read other data (or none), so that is refused."""
    root = recipe.data.root
    try:
        started_in = json.loads((run_dir / RUN_FILE).read_text()).get("cwd")
    except (OSError, ValueError, AttributeError):
        return  # a run from before the working directory was recorded
    if root and not Path(root).is_absolute() and isinstance(started_in, str) and Path(started_in) != Path.cwd():
        raise RunFolderError(f"recipe field data.root {root!r} is relative to the directory the run started in; "
                             f"resume from there (cd {started_in}) so that it reads the same data")


def read_run_id(run_dir: Path) -> str | None:
    """The identity recorded in ``run.json`` (None when absent); an unreadable file is an error."""
    path = Path(run_dir) / RUN_FILE
    if not path.is_file():
        return None
    try:
        run_id = json.loads(path.read_text())["run_id"]
    except (ValueError, KeyError, TypeError, UnicodeDecodeError):
        run_id = None
    if not isinstance(run_id, str) or not run_id:
        raise RunFolderError(f"{path} is not a run identity written by attnzoo train; restore it or move the "
                             "run folder aside")
    return run_id


def settle(run_dir: str | os.PathLike) -> None:
    """Finish (or drop) a commit a crash interrupted, so a reader sees one consistent run (no-op when there
    is none, and an error while a live process holds the folder)."""
    run_dir = Path(run_dir)
    if not commit.pending(run_dir):
        return
    lock = RunLock(run_dir).acquire()
    try:
        commit.recover(run_dir)
    finally:
        lock.release()
