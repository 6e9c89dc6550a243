"""The leaderboard: every run under ``runs/`` grouped by (model, recipe) over seeds, with its cost.

Writes ``leaderboard.csv`` (one row per group), ``runs.csv`` (one row per run), ``LEADERBOARD.md`` and
``pareto.png``. Every output is a pure function of the run folders (latency comes from each run's cached
``cost.json``), so re-running on the same runs reproduces the files byte for byte.
"""

from __future__ import annotations

import csv
import io
import json
import os
import statistics
from dataclasses import dataclass, field
from pathlib import Path

from attnzoo.errors import AttnzooError
from attnzoo.evaluate.cost import LATENCY_BATCH, LATENCY_THREADS, run_gmacs, run_latency
from attnzoo.evaluate.flops import MAC_CONVENTION


class LeaderboardError(AttnzooError, ValueError):
    """A runs folder with nothing to rank, or a run folder that cannot be read."""


@dataclass(frozen=True)
class Run:
    """One finished training run, read from its folder."""

    name: str
    summary: dict
    epochs_logged: int
    ms_per_img: float
    hardware: str

    @property
    def architecture(self) -> str:
        return self.summary["model"]["architecture"]

    @property
    def base(self) -> str:
        return self.summary["model"].get("base", self.architecture)

    @property
    def recipe(self) -> str:
        """Repo-relative recipe path ("" for a run trained from an in-memory recipe)."""
        return self.summary["recipe"] or ""

    @property
    def has_attention(self) -> bool:
        return any(op.get("op") == "attention" for op in self.summary["model"].get("surgery", [])) or (
            self.architecture != self.base)


@dataclass
class Group:
    """Runs of one model under one recipe, differing only in seed."""

    runs: list[Run]
    gmacs: float
    baseline: Group | None = field(default=None, repr=False)

    @property
    def first(self) -> Run:
        return self.runs[0]

    @property
    def model(self) -> str:
        return self.first.architecture

    @property
    def recipe(self) -> str:
        return self.first.recipe

    def mean(self, key: str) -> float:
        return statistics.fmean(float(r.summary[key]) for r in self.runs)

    def std(self, key: str) -> float | None:
        """Sample standard deviation over seeds; None for a single seed."""
        values = [float(r.summary[key]) for r in self.runs]
        return statistics.stdev(values) if len(values) > 1 else None

    @property
    def ms_per_img(self) -> float:
        return statistics.fmean(r.ms_per_img for r in self.runs)

    @property
    def family(self) -> tuple:
        """What a baseline must share: backbone, data, image size and training length."""
        s = self.first.summary
        return self.first.base, s["dataset"], int(s["img_size"]), int(s["epochs"])


REQUIRED_KEYS = ("model", "recipe", "seed", "dataset", "img_size", "epochs", "top1", "top5", "params")


def _read_run(run_dir: Path) -> Run:
    try:
        summary = json.loads((run_dir / "summary.json").read_text())
        metrics = run_dir / "metrics.csv"
        epochs_logged = sum(1 for _ in csv.DictReader(metrics.open())) if metrics.is_file() else 0
    except (OSError, ValueError) as err:
        raise LeaderboardError(f"run {run_dir} cannot be read ({err}); fix or move the run folder") from None
    missing = [key for key in REQUIRED_KEYS if key not in summary]
    if missing:
        raise LeaderboardError(
            f"{run_dir}/summary.json lacks {', '.join(missing)}; re-write it with `attnzoo train` or move the run"
        )
    cost = run_latency(run_dir, summary)
    return Run(run_dir.name, summary, epochs_logged, float(cost["ms_per_img"]), cost["hardware"])


def gather_runs(runs_dir: str | os.PathLike) -> tuple[list[Run], list[str]]:
    """Complete runs under ``runs_dir`` (sorted by name), and the names of runs left out as unfinished."""
    runs_dir = Path(runs_dir)
    folders = sorted(p.parent for p in runs_dir.glob("*/summary.json")) if runs_dir.is_dir() else []
    if not folders:
        raise LeaderboardError(
            f"no runs under {runs_dir}: expected {runs_dir}/<name>/summary.json as written by `attnzoo train`"
        )
    runs, unfinished = [], []
    for folder in folders:
        status = json.loads((folder / "summary.json").read_text()).get("status", "complete")
        if status == "complete":
            runs.append(_read_run(folder))
        else:
            unfinished.append(folder.name)
    if not runs:
        raise LeaderboardError(
            f"no complete runs under {runs_dir} ({len(unfinished)} unfinished: {', '.join(unfinished)}); "
            "finish them with `attnzoo train --resume runs/<name>/last.safetensors`"
        )
    return runs, unfinished


def group_runs(runs: list[Run]) -> list[Group]:
    """Group by (model, recipe), link each group to its baseline, and sort best first within a dataset."""
    keyed: dict[tuple[str, str], list[Run]] = {}
    for run in runs:
        keyed.setdefault((run.architecture, run.recipe), []).append(run)
    groups = [Group(sorted(rs, key=lambda r: (int(r.summary["seed"]), r.name)), run_gmacs(rs[0].summary))
              for rs in keyed.values()]
    for group in groups:
        candidates = [g for g in groups if not g.first.has_attention and g.family == group.family]
        # Prefer the baseline whose recipe path shares the most with this group's (same recipe folder/file).
        group.baseline = max(candidates, key=lambda g: (len(os.path.commonprefix([g.recipe, group.recipe])),
                                                         g.recipe), default=None)
    groups.sort(key=lambda g: (g.first.summary["dataset"], -round(g.mean("top1"), 6), g.model, g.recipe))
    return groups


def _f(value: float | None, digits: int) -> str:
    return "" if value is None else f"{value:.{digits}f}"


CSV_COLUMNS = ["dataset", "model", "recipe", "seeds", "top1_mean", "top1_std", "top5_mean", "top5_std",
               "params_m", "gmacs", "ms_per_img", "baseline", "top1_gain", "gmacs_ratio", "latency_ratio",
               "epochs", "img_size", "train_time_s_mean", "runs"]


def group_row(group: Group) -> dict[str, str]:
    """The CSV row of a group: numbers formatted with fixed decimals, so files compare byte for byte."""
    s = group.first.summary
    base = group.baseline
    row = {
        "dataset": s["dataset"], "model": group.model, "recipe": group.recipe, "seeds": str(len(group.runs)),
        "top1_mean": _f(group.mean("top1"), 2), "top1_std": _f(group.std("top1"), 2),
        "top5_mean": _f(group.mean("top5"), 2), "top5_std": _f(group.std("top5"), 2),
        "params_m": _f(float(s["params"]) / 1e6, 3), "gmacs": _f(group.gmacs, 6),
        "ms_per_img": _f(group.ms_per_img, 3),
        "baseline": base.model if base else "",
        "top1_gain": _f(group.mean("top1") - base.mean("top1"), 2) if base else "",
        "gmacs_ratio": _f(group.gmacs / base.gmacs, 3) if base else "",
        "latency_ratio": _f(group.ms_per_img / base.ms_per_img, 3) if base else "",
        "epochs": str(s["epochs"]), "img_size": str(s["img_size"]),
        "train_time_s_mean": _f(group.mean("train_time_s"), 0),
        "runs": ";".join(r.name for r in group.runs),
    }
    return row


RUN_COLUMNS = ["name", "model", "recipe", "seed", "dataset", "epochs", "epochs_logged", "top1", "top5",
               "best_top1", "train_time_s", "ms_per_img", "hardware"]


def _csv(rows: list[dict], columns: list[str]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def _run_row(run: Run) -> dict[str, str]:
    s = run.summary
    return {"name": run.name, "model": run.architecture, "recipe": run.recipe, "seed": str(s["seed"]),
            "dataset": s["dataset"], "epochs": str(s["epochs"]), "epochs_logged": str(run.epochs_logged),
            "top1": _f(float(s["top1"]), 2), "top5": _f(float(s["top5"]), 2),
            "best_top1": _f(float(s.get("best_top1", s["top1"])), 2),
            "train_time_s": _f(float(s.get("train_time_s", 0.0)), 0), "ms_per_img": _f(run.ms_per_img, 3),
            "hardware": run.hardware}


def _pm(mean: str, std: str) -> str:
    return f"{mean} ± {std}" if std else mean


def _vs_baseline(row: dict[str, str], group: Group) -> str:
    if group.baseline is None:
        return "no baseline run"
    if group.baseline is group:
        return "baseline"
    gain = float(row["top1_gain"])
    return (f"{gain:+.2f} pts vs {row['baseline']}; ×{row['gmacs_ratio']} GMACs, "
            f"×{row['latency_ratio']} latency")


def render_markdown(groups: list[Group], unfinished: list[str]) -> str:
    """LEADERBOARD.md: one table per dataset, best mean top-1 first."""
    lines = ["# Leaderboard", "",
             "Generated by `attnzoo leaderboard` from the run folders; do not edit by hand.", "",
             "- top-1 / top-5: test accuracy (%) after the last epoch, mean ± sample std over seeds.",
             f"- {MAC_CONVENTION}, per image at the run's input size, attention included.",
             f"- ms/img: latency as CPU time per image of eval-mode inference, batch {LATENCY_BATCH}, "
             f"{LATENCY_THREADS} thread, median of timed passes (CPU time, not wall clock, so runs measured "
             "under different loads of a shared machine compare), measured once per run, cached in its "
             "`cost.json`.",
             "- vs baseline: top-1 gain in points and cost ratios against the same backbone without "
             "attention, trained for as many epochs at the same image size on the same data.", ""]
    datasets = sorted({g.first.summary["dataset"] for g in groups})
    for dataset in datasets:
        lines += [f"## {dataset}", "",
                  "| # | model | seeds | top-1 % | top-5 % | params M | GMACs | ms/img | vs baseline | recipe |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        ranked = [g for g in groups if g.first.summary["dataset"] == dataset]
        for rank, group in enumerate(ranked, 1):
            row = group_row(group)
            lines.append(
                f"| {rank} | {row['model']} | {row['seeds']} | {_pm(row['top1_mean'], row['top1_std'])} | "
                f"{_pm(row['top5_mean'], row['top5_std'])} | {row['params_m']} | {row['gmacs']} | "
                f"{row['ms_per_img']} | {_vs_baseline(row, group)} | `{row['recipe']}` |")
        lines.append("")
    hardware = sorted({r.hardware for g in groups for r in g.runs})
    lines.append(f"Latency measured on: {'; '.join(hardware)}.")
    if unfinished:
        lines += ["", f"Left out (not complete): {', '.join(unfinished)}."]
    return "\n".join(lines) + "\n"


def write_leaderboard(runs_dir: str | os.PathLike, out_dir: str | os.PathLike) -> list[Path]:
    """Gather, group and write the leaderboard files into ``out_dir``; returns the paths written."""
    from attnzoo.evaluate.pareto import plot_pareto  # matplotlib is only needed here

    runs, unfinished = gather_runs(runs_dir)
    groups = group_runs(runs)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files = {
        "leaderboard.csv": _csv([group_row(g) for g in groups], CSV_COLUMNS),
        "runs.csv": _csv([_run_row(r) for r in runs], RUN_COLUMNS),
        "LEADERBOARD.md": render_markdown(groups, unfinished),
    }
    written = []
    for name, text in files.items():
        (out / name).write_text(text, encoding="utf-8")
        written.append(out / name)
    written.append(plot_pareto(groups, out / "pareto.png"))
    return written
