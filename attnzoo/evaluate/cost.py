"""The cost of a trained run's model, for the leaderboard: GMACs from its config, latency measured once.

GMACs are recomputed from ``summary.json``'s model config on every call (they are exact). Latency depends on
the machine and its load, so it is measured once and cached in ``runs/<name>/cost.json``; the leaderboard
reads the cache, which keeps its output reproducible byte for byte. Delete ``cost.json`` to re-measure.
"""

from __future__ import annotations

import json
import math
import os
import platform
from pathlib import Path

import torch

from attnzoo.flops import count_macs
from attnzoo.evaluate.throughput import measure_throughput
from attnzoo.models import model_from_config

COST_FILE = "cost.json"
LATENCY_BATCH = 32
LATENCY_THREADS = 1
LATENCY_RUNS = 10


def run_input_size(summary: dict) -> tuple[int, int, int]:
    """(C, H, W) a run was trained and evaluated at."""
    size = int(summary["img_size"])
    return int(summary["model"]["in_chans"]), size, size


def run_gmacs(summary: dict) -> float:
    """GMACs per image of the run's model at its image size."""
    model = model_from_config(summary["model"])
    return count_macs(model, run_input_size(summary)).gmacs


def _hardware() -> str:
    return f"{platform.machine()} {os.cpu_count()}-core CPU, torch {torch.__version__.split('+')[0]}"


def _read_cost(path: Path) -> dict | None:
    """The cached cost, or None when there is none or it is not a cost a measurement wrote."""
    try:
        cost = json.loads(path.read_text())
        ms = cost["ms_per_img"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    usable = isinstance(ms, (int, float)) and not isinstance(ms, bool) and math.isfinite(ms) and ms > 0
    return cost if usable else None


def run_latency(run_dir: Path, summary: dict) -> dict:
    """Cached latency of the run's model: CPU time per image, batch 32, one thread, eval mode.

    CPU time rather than wall clock, because runs are measured at different moments of a shared machine's
    load, and one thread's CPU time barely moves with it (the wall clock is kept as ``wall_ms_per_img``).

    Measures and writes ``cost.json`` (atomically) when absent or damaged; otherwise returns what it holds.
    """
    path = Path(run_dir) / COST_FILE
    cached = _read_cost(path)
    if cached is not None:
        return cached
    model = model_from_config(summary["model"])
    speed = measure_throughput(model, run_input_size(summary), batch_size=LATENCY_BATCH,
                               threads=LATENCY_THREADS, runs=LATENCY_RUNS, warmup=3)
    cost = {
        "ms_per_img": round(speed.cpu_ms_per_img, 4),
        "wall_ms_per_img": round(speed.ms_per_img, 4),
        "batch_size": speed.batch_size,
        "threads": speed.threads,
        "timed_runs": speed.runs,
        "img_size": int(summary["img_size"]),
        "device": speed.device,
        "hardware": _hardware(),
    }
    tmp = path.with_name(f".{COST_FILE}.tmp")
    tmp.write_text(json.dumps(cost, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)
    return cost
