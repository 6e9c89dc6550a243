"""The run folder ``runs/<name>/``: resolved recipe, environment, per-epoch metrics and the summary that
evaluation, the leaderboard and the Hub export read."""

from __future__ import annotations

import csv
import io
import json
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

import torch
import yaml

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

    import attnzoo

    env = {
        "command": sys.argv,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "processor": platform.processor(),
        "torch": torch.__version__,
        "timm": timm.__version__,
        "attnzoo": attnzoo.__version__,
        "git_commit": _git_commit(),
        "device": str(device),
        "hardware": hardware(device, world_size),
        "world_size": world_size,
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
    }
    _atomic_write(run_dir / "environment.json", json.dumps(env, indent=2) + "\n")


def write_metrics(run_dir: Path, rows: list[dict[str, Any]]) -> None:
    """Rewrite ``metrics.csv`` from the full history (so a resumed run never duplicates rows)."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=METRIC_FIELDS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: (f"{row[k]:.6g}" if isinstance(row[k], float) else row[k]) for k in METRIC_FIELDS})
    _atomic_write(run_dir / "metrics.csv", buf.getvalue())


def write_summary(run_dir: Path, summary: dict[str, Any]) -> None:
    _atomic_write(run_dir / "summary.json", json.dumps(summary, indent=2) + "\n")


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
