"""Evaluate models: accuracy on a dataset and cost (params, GMACs, speed, memory) as one row per model."""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from timm.data import resolve_data_config
from torch import nn
from tqdm import tqdm

from attnzoo.errors import AttnzooError, DatasetNotFoundError, NonFiniteOutputError
from attnzoo.evaluate.datasets import open_dataset
from attnzoo.flops import MAC_CONVENTION, MacCount, count_macs
from attnzoo.loading import load_eval_model
from attnzoo.evaluate.throughput import Throughput, measure_peak_memory, measure_side_by_side, num_threads


class ClassCountError(AttnzooError, ValueError):
    """A dataset whose number of classes differs from the model's head."""


class InputSizeError(AttnzooError, ValueError):
    """An input size the model cannot run at (e.g. a fixed-size classifier such as cnn3's)."""


@dataclass(frozen=True)
class Accuracy:
    """Top-1/top-5 (percent) and mean cross-entropy over ``images`` images; top-5 is None below 5 classes."""

    top1: float
    top5: float | None
    loss: float
    images: int


def measure_accuracy(model: nn.Module, loader: Iterable, *, progress: bool = False) -> Accuracy:
    """Accuracy and loss of eval-mode ``model`` over every (images, labels) batch of ``loader``."""
    device = next(model.parameters()).device
    model.eval()
    correct1 = correct5 = images = outputs = 0
    loss_sum = 0.0
    with torch.inference_mode():
        # disable=None: the bar shows only on a terminal, never in logs or captured output.
        batches = tqdm(loader, desc="eval", unit="batch", disable=None if progress else True, leave=False)
        for batch, (x, y) in enumerate(batches, 1):
            x, y = x.to(device), y.to(device)
            logits = model(x)
            if not bool(torch.isfinite(logits).all()):
                raise NonFiniteOutputError(
                    f"the model's logits are NaN or infinite on {int((~torch.isfinite(logits)).any(1).sum())} of "
                    f"{len(logits)} images in batch {batch}; accuracy would be meaningless: check the "
                    "checkpoint (a diverged run?) and evaluate at the input size it was trained at")
            outputs = logits.shape[1]
            loss_sum += F.cross_entropy(logits, y, reduction="sum").item()
            top = logits.topk(min(5, logits.shape[1]), dim=1).indices
            hits = top == y[:, None]
            correct1 += hits[:, 0].sum().item()
            correct5 += hits.any(dim=1).sum().item()
            images += y.numel()
    if images == 0:
        raise DatasetNotFoundError("the dataset has no images; point --data at a folder with one subfolder per class")
    return Accuracy(
        top1=100.0 * correct1 / images,
        top5=100.0 * correct5 / images if outputs >= 5 else None,
        loss=loss_sum / images,
        images=images,
    )


def input_size_of(model: nn.Module, img_size: int | None = None) -> tuple[int, int, int]:
    """(C, H, W) the model is evaluated at: its first conv's channels and ``img_size`` or its config's size."""
    in_chans = next(m for m in model.modules() if isinstance(m, nn.Conv2d)).in_channels
    if img_size is None:
        img_size = resolve_data_config({}, model=model)["input_size"][-1]
    return in_chans, img_size, img_size


def count_macs_checked(model: nn.Module, input_size: tuple[int, int, int]) -> MacCount:
    """:func:`count_macs`, turning a model that cannot take ``input_size`` into an :class:`InputSizeError`."""
    try:
        return count_macs(model, input_size)
    except RuntimeError as err:
        size = "x".join(map(str, input_size))
        raise InputSizeError(f"the model cannot run on {size} input ({str(err).splitlines()[0]}); pass the "
                             "--img-size it was built for") from None


def measure_size(model: nn.Module, input_size: tuple[int, int, int], *, batch_size: int = 32,
                 threads: int | None = None) -> dict:
    """Params, GMACs (total and inside attention modules) and peak memory of ``model``."""
    macs = count_macs_checked(model, input_size)
    with num_threads(threads):
        memory = measure_peak_memory(model, input_size, batch_size=batch_size)
    return {
        "params_m": sum(p.numel() for p in model.parameters()) / 1e6,
        "gmacs": macs.gmacs,
        "attn_gmacs": macs.attention(model) / 1e9,
        "peak_mem_mib": memory.mib,
        "memory_method": memory.method,
    }


def speed_columns(speed: Throughput, ratio: float) -> dict:
    """A row's speed columns: absolute, and relative to the first model timed beside it."""
    return {"img_per_s": speed.img_per_s, "ms_per_img": speed.ms_per_img, "cpu_ms_per_img": speed.cpu_ms_per_img,
            "time_vs_first": ratio, "batch_size": speed.batch_size, "threads": speed.threads,
            "timed_runs": speed.runs, "device": speed.device}


def check_classes(n: int, model: nn.Module, name: str, data: str) -> None:
    """Raise :class:`ClassCountError` when the dataset's ``n`` classes and the model's head disagree."""
    if n != model.num_classes:
        raise ClassCountError(
            f"{data} has {n} classes but {name}'s head has {model.num_classes} outputs; pass "
            f"--num-classes {n} to reset the head (an untrained head scores at chance) or use a checkpoint "
            f"trained on {data}"
        )


def run_img_size(checkpoint: str | None) -> int | None:
    """The image size a run trained at, when ``checkpoint`` lies in a run folder (next to summary.json)."""
    if checkpoint is None or str(checkpoint).startswith("hf-hub:"):
        return None
    summary = Path(checkpoint).parent / "summary.json"
    try:
        return int(json.loads(summary.read_text())["img_size"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def evaluate(name: str, *, checkpoint: str | None = None, **options: Any) -> dict:
    """One row describing model ``name``: accuracy on ``data`` (None: cost only) and its cost; ``options``
    as for :func:`evaluate_side_by_side`."""
    return evaluate_side_by_side([name], checkpoints=[checkpoint], **options)[0]


def evaluate_side_by_side(
    names: Sequence[str],
    *,
    checkpoints: Sequence[str | None] | None = None,
    data: str | None = None,
    img_size: int | None = None,
    batch_size: int = 32,
    num_classes: int | None = None,
    threads: int | None = None,
    device: str = "cpu",
    runs: int = 5,
    workers: int = 0,
    progress: bool = False,
) -> list[dict]:
    """One row per model: accuracy on ``data`` (None: cost only) and cost, with the models' speeds timed
    in turn in the same rounds, so that each row's ``time_vs_first`` holds on a busy machine. Speed is
    timed with ``threads`` threads, one unless given (one thread's CPU time is the work a model needs);
    accuracy runs with ``threads`` or torch's choice.

    ``data`` is ``"fashion-mnist"`` (test split) or an image folder with one subfolder per class. The image
    size defaults to the run's (a checkpoint inside a run folder), else 28 for Fashion-MNIST, else the
    model's pretrained config.
    """
    checkpoints = list(checkpoints) if checkpoints is not None else [None] * len(names)
    rows, models, sizes = [], [], []
    for name, checkpoint in zip(names, checkpoints):
        model = load_eval_model(name, checkpoint, num_classes=num_classes).to(device)
        size = img_size or run_img_size(checkpoint) or (28 if data == "fashion-mnist" else None)
        input_size = input_size_of(model, size)
        count_macs_checked(model, input_size)  # a wrong size fails here, before minutes of evaluation
        row: dict = {"model": name, "checkpoint": str(checkpoint) if checkpoint else None, "data": data,
                     "img_size": input_size[-1], "in_chans": input_size[0], "num_classes": model.num_classes}
        with num_threads(threads):
            if data is not None:
                dataset = open_dataset(data, model, input_size, batch_size, workers)
                check_classes(dataset.num_classes, model, name, data)
                accuracy = measure_accuracy(model, dataset.batches, progress=progress)
                row.update(top1=accuracy.top1, top5=accuracy.top5, loss=accuracy.loss, images=accuracy.images)
            else:
                row.update(top1=None, top5=None, loss=None, images=0)
        row.update(measure_size(model, input_size, batch_size=batch_size, threads=threads))
        rows.append(row)
        models.append(model)
        sizes.append(input_size)
    speeds, ratios = measure_side_by_side(models, sizes, batch_size=batch_size, runs=runs,
                                          threads=threads if threads is not None else 1)
    for row, speed, ratio in zip(rows, speeds, ratios):
        row.update(speed_columns(speed, ratio), mac_convention=MAC_CONVENTION)
    return rows


def _fmt(value, digits: int) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


TABLE_COLUMNS = [  # (row key, header, decimals)
    ("model", "model", 0), ("input", "input", 0), ("top1", "top-1 %", 2), ("top5", "top-5 %", 2), ("loss", "loss", 4),
    ("params_m", "params M", 2), ("gmacs", "GMACs", 4), ("attn_gmacs", "attn GMACs", 4),
    ("time_vs_first", "time vs 1st", 3), ("img_per_s", "img/s", 1), ("ms_per_img", "ms/img", 2),
    ("peak_mem_mib", "peak MiB", 1),
]


def format_table(rows: Sequence[dict]) -> str:
    """Aligned text table, with footnotes stating the MAC convention and how speed and memory were measured."""
    rows = [{**r, "input": f"{r['in_chans']}x{r['img_size']}x{r['img_size']}"} for r in rows]
    cells = [[h for _, h, _ in TABLE_COLUMNS]] + [[_fmt(r[k], d) for k, _, d in TABLE_COLUMNS] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(TABLE_COLUMNS))]
    lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths)))
             for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    first = rows[0]
    lines += [
        "",
        f"{first['mac_convention']}, per image at the input size shown.",
        f"Speed: forward passes at batch {first['batch_size']}, {first['threads']} "
        f"thread{'s' if first['threads'] != 1 else ''}, {first['device']}, the models timed in turn for "
        f"{first['timed_runs']} rounds after warm-up. time vs 1st: the CPU time of a pass relative to the "
        "first row's in the same round, median over rounds (with 1 thread it holds on a busy machine); "
        "img/s, ms/img: wall-clock medians, comparable between runs only on an idle machine.",
        f"peak MiB: {first['memory_method']}, batch {first['batch_size']}.",
    ]
    return "\n".join(lines)


def write_rows(rows: Sequence[dict], *, json_path: str | None = None, csv_path: str | None = None) -> None:
    """Write evaluation rows as a JSON list and/or CSV (every row carries the MAC convention)."""
    if json_path:
        with open(json_path, "w", encoding="utf-8") as f:
            json.dump(list(rows), f, indent=2)
            f.write("\n")
    if csv_path:
        with open(csv_path, "w", encoding="utf-8", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]), lineterminator="\n")
            writer.writeheader()
            writer.writerows(rows)
