"""The leaderboard: run folders grouped into tracks, variants within a track over seeds, each attention
variant compared with its plain baseline on the same seeds.

A *track* is a set of runs that may be ranked together: same dataset, image size, epochs, training-set
size, recipe family (the recipe's folder), start (from scratch or fine-tuned) and protocol (selection on a
validation split, or the old protocol that selected and reported on test). Within a track a *variant* is
one recipe; a seed counts once per variant (a second run with the same seed is listed as a duplicate, not
averaged). Writes ``leaderboard.csv`` (one row per variant), ``runs.csv`` (one row per run), ``paired.csv`` (every
pair of variants of a track on their shared seeds),
``LEADERBOARD.md`` and ``pareto.png`` (one panel per track). Every output is a pure function of the run
folders (latency comes from a cached ``cost.json``), so re-running reproduces the files byte for byte.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import statistics
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from attnzoo.errors import AttnzooError
from attnzoo.evaluate.cost import LATENCY_BATCH, LATENCY_THREADS, run_gmacs, run_latency
from attnzoo.flops import MAC_CONVENTION
from attnzoo.evaluate.paired import PairedDifference, paired_difference
from attnzoo.models.config_check import MAX_IMG_SIZE, check_config
from attnzoo.outputs import check_output_folder, prepare_output_folder
from attnzoo.train.commit import pending as commit_pending


class LeaderboardError(AttnzooError, ValueError):
    """A runs folder with nothing to rank."""


REQUIRED_KEYS = ("model", "recipe", "seed", "dataset", "img_size", "epochs", "top1", "top5", "params")


@dataclass(frozen=True)
class Run:
    """One finished training run, read from its folder."""

    folder: Path
    summary: dict
    recipe_cfg: dict  # the run's resolved recipe.yaml ({} when absent)
    epochs_logged: int

    @property
    def name(self) -> str:
        return self.folder.name

    @property
    def seed(self) -> int:
        return int(self.summary["seed"])

    @property
    def architecture(self) -> str:
        return self.summary["model"]["architecture"]

    @property
    def model_label(self) -> str:
        """The architecture and any surgery on it, e.g. ``resnet18 + se (preserve, gate_init=identity)``."""
        parts = [self.architecture]
        for op in self.summary["model"].get("surgery", []):
            if op.get("op") == "attention":
                notes = (["preserve"] if op.get("preserve") else []) + [
                    f"{k}={v}" for k, v in sorted((op.get("kwargs") or {}).items())]
                parts.append(f"{op['attn']}" + (f" ({', '.join(notes)})" if notes else ""))
        return " + ".join(parts)

    @property
    def recipe(self) -> str:
        """Repo-relative recipe path ("" for a run trained from an in-memory recipe)."""
        return self.summary["recipe"] or ""

    @property
    def has_attention(self) -> bool:
        model = self.summary["model"]
        return any(op.get("op") == "attention" for op in model.get("surgery", [])) or (
            self.architecture != model.get("base", self.architecture))

    @property
    def old_protocol(self) -> bool:
        """Selected its best epoch on the split it reports (written before the validation split)."""
        return self.summary.get("selection") != "val"

    @property
    def test_top1(self) -> float:
        """Test top-1 of the final weights (old protocol: the 'val' split was the test set)."""
        return float(self.summary["top1"] if self.old_protocol else self.summary["test_top1"])

    @property
    def best_test_top1(self) -> float | None:
        """Test top-1 of the weights selected on val (None under the old protocol)."""
        value = None if self.old_protocol else self.summary.get("best_test_top1")
        return None if value is None else float(value)

    @property
    def val_top1(self) -> float | None:
        return None if self.old_protocol else float(self.summary["top1"])

    @property
    def finetuned(self) -> bool:
        model = self.recipe_cfg.get("model") or {}
        return bool(model.get("pretrained") or model.get("init") or str(model.get("name", "")).startswith("hf-hub:"))

    @property
    def num_train(self) -> int | None:
        return (self.summary.get("splits") or {}).get("num_train")

    @property
    def track(self) -> tuple:
        s = self.summary
        family = str(Path(self.recipe).parent) if self.recipe else ""
        return (s["dataset"], int(s["img_size"]), int(s["epochs"]), self.num_train or 0, family,
                self.finetuned, self.old_protocol)

    @property
    def variant(self) -> str:
        """The recipe's file name (an old-protocol or recipe-less run: its architecture)."""
        return self.architecture if self.old_protocol or not self.recipe else Path(self.recipe).stem


@dataclass
class Group:
    """Runs of one variant of a track, one per seed."""

    runs: list[Run]
    gmacs: float
    baseline: Group | None = field(default=None, repr=False)

    @property
    def first(self) -> Run:
        return self.runs[0]

    @property
    def variant(self) -> str:
        return self.first.variant

    @property
    def scores(self) -> dict[int, float]:
        """Test top-1 of the final weights by seed."""
        return {r.seed: r.test_top1 for r in self.runs}

    def mean(self, attr: str) -> float | None:
        values = [getattr(r, attr) for r in self.runs]
        return None if None in values else statistics.fmean(values)

    def std(self, attr: str) -> float | None:
        """Sample standard deviation over seeds; None for a single seed."""
        values = [getattr(r, attr) for r in self.runs]
        return statistics.stdev(values) if len(values) > 1 and None not in values else None

    @property
    def ms_per_img(self) -> float:
        """Latency of the variant's model, measured once (on its first run) and cached in cost.json."""
        return float(run_latency(self.first.folder, self.first.summary)["ms_per_img"])

    @property
    def paired(self) -> PairedDifference | None:
        if self.baseline is None or self.baseline is self:
            return None
        return paired_difference(self.scores, self.baseline.scores)


@dataclass
class Track:
    """Variants that may be ranked together, best mean test top-1 first."""

    key: tuple
    groups: list[Group]

    @property
    def title(self) -> str:
        dataset, img_size, epochs, num_train, family, finetuned, old = self.key
        images = f"{num_train:,} train images, " if num_train else ""
        start = "fine-tuned" if finetuned else "from scratch"
        name = Path(family).name or "no recipe"
        title = f"{name}: {dataset} {img_size} px, {epochs} epoch{'s' * (epochs != 1)}, {images}{start}"
        return title + (" (old protocol: selected and reported on test)" if old else "")

    @property
    def old_protocol(self) -> bool:
        return self.key[-1]


@dataclass
class Board:
    """Everything the leaderboard files are written from."""

    tracks: list[Track]
    unfinished: list[str]
    unreadable: list[str]
    duplicates: list[str]


def _read_run(folder: Path) -> Run:
    """The run in ``folder``; ValueError/OSError when its files are unreadable or incomplete."""
    summary = json.loads((folder / "summary.json").read_text())
    if not isinstance(summary, dict):
        raise ValueError("summary.json is not a JSON object")
    missing = [key for key in REQUIRED_KEYS if key not in summary]
    if missing:
        raise ValueError(f"summary.json lacks {', '.join(missing)}")
    recipe_file = folder / "recipe.yaml"
    recipe_cfg = yaml.safe_load(recipe_file.read_text()) if recipe_file.is_file() else {}
    metrics = folder / "metrics.csv"
    with metrics.open() if metrics.is_file() else io.StringIO("") as f:
        epochs_logged = sum(1 for _ in csv.DictReader(f))
    run = Run(folder, summary, recipe_cfg if isinstance(recipe_cfg, dict) else {}, epochs_logged)
    if summary.get("status", "complete") == "complete":  # a stopped run has no score yet: unfinished
        _check_run(run)
    return run


def _check_run(run: Run) -> None:
    """ValueError (or KeyError, TypeError) for a summary whose values the board cannot rank, so that one
    damaged run is left out here rather than stopping the whole board later."""
    summary = run.summary
    check_config(summary["model"], "summary.json model")
    for key, high in (("seed", 2**32 - 1), ("img_size", MAX_IMG_SIZE), ("epochs", 10**6)):
        if not isinstance(summary[key], int) or isinstance(summary[key], bool) or not 0 <= summary[key] <= high:
            raise ValueError(f"summary.json {key} is {summary[key]!r}, not an integer in 0..{high}")
    run.track, run.model_label, run.variant  # noqa: B018 - each fails on a value of the wrong type
    scores = {"test_top1": run.test_top1, "best_test_top1": run.best_test_top1, "val_top1": run.val_top1,
              "params": float(summary["params"])}
    bad = [name for name, value in scores.items() if value is not None and not math.isfinite(value)]
    if bad:
        raise ValueError(f"summary.json {bad[0]} is {scores[bad[0]]}")


def gather_runs(runs_dir: str | os.PathLike) -> tuple[list[Run], list[str], list[str]]:
    """Complete runs under ``runs_dir`` (any depth, sorted by path), the unfinished runs' names, and one
    line per unreadable run folder (reported, never fatal)."""
    runs_dir = Path(runs_dir)
    folders = sorted(p.parent for p in runs_dir.rglob("summary.json")
                     if not any(part.startswith(".") for part in p.relative_to(runs_dir).parts[:-1])
                     ) if runs_dir.is_dir() else []  # not the inside of a commit (.staging/, .commit/)
    if not folders:
        raise LeaderboardError(
            f"no runs under {runs_dir}: expected {runs_dir}/<name>/summary.json as written by `attnzoo train`"
        )
    runs, unfinished, unreadable = [], [], []
    for folder in folders:
        rel = folder.relative_to(runs_dir).as_posix()
        if commit_pending(folder):  # its files may be half old, half new until `--resume` finishes the commit
            unfinished.append(f"{rel} (a crash interrupted its last commit)")
            continue
        try:
            run = _read_run(folder)
        except (OSError, ValueError, KeyError, TypeError, yaml.YAMLError) as err:
            unreadable.append(f"{rel} ({str(err).splitlines()[0] if str(err) else type(err).__name__})")
            continue
        if run.summary.get("status", "complete") == "complete":
            runs.append(run)
        else:
            unfinished.append(rel)
    if not runs:
        raise LeaderboardError(
            f"no complete runs under {runs_dir} ({len(unfinished)} unfinished, {len(unreadable)} unreadable); "
            "finish them with `attnzoo train --resume <run folder>/last.safetensors`"
        )
    return runs, unfinished, unreadable


def build_board(runs: list[Run], unfinished: list[str] = (), unreadable: list[str] = ()) -> Board:
    """Tracks of variants with one run per seed, each variant linked to its track's plain baseline."""
    by_track: dict[tuple, dict[str, list[Run]]] = {}
    for run in runs:
        by_track.setdefault(run.track, {}).setdefault(run.recipe + "\0" + run.variant, []).append(run)
    tracks, duplicates = [], []
    for key in sorted(by_track, key=repr):
        groups = []
        for variant_runs in by_track[key].values():
            kept: dict[int, Run] = {}
            for run in sorted(variant_runs, key=lambda r: (r.seed, r.name)):
                if run.seed in kept:
                    duplicates.append(f"{run.folder.parent.name}/{run.name} (seed {run.seed} of "
                                      f"{kept[run.seed].name})")
                else:
                    kept[run.seed] = run
            groups.append(Group(list(kept.values()), run_gmacs(variant_runs[0].summary)))
        plain = [g for g in groups if not g.first.has_attention]
        for group in groups:
            group.baseline = max(plain, key=lambda g: (len(os.path.commonprefix([g.first.recipe, group.first.recipe])),
                                                       g.first.recipe), default=None)
        groups.sort(key=lambda g: (-round(g.mean("test_top1"), 6), g.variant))
        tracks.append(Track(key, groups))
    tracks.sort(key=lambda t: (t.old_protocol, t.key[0], t.title))
    return Board(tracks, list(unfinished), list(unreadable), duplicates)


def _f(value: float | None, digits: int) -> str:
    return "" if value is None else f"{value:.{digits}f}"


CSV_COLUMNS = ["track", "variant", "model", "recipe", "seeds", "test_top1_mean", "test_top1_std",
               "best_test_top1_mean", "val_top1_mean", "params_m", "gmacs", "ms_per_img", "baseline",
               "paired_n", "paired_diff", "ci_low", "ci_high", "ci_excludes_0", "train_time_s_mean", "runs"]


def group_row(track: Track, group: Group) -> dict[str, str]:
    """The CSV row of a variant: numbers formatted with fixed decimals, so files compare byte for byte."""
    s = group.first.summary
    paired = group.paired
    return {
        "track": track.title, "variant": group.variant, "model": group.first.model_label,
        "recipe": group.first.recipe, "seeds": str(len(group.runs)),
        "test_top1_mean": _f(group.mean("test_top1"), 2), "test_top1_std": _f(group.std("test_top1"), 2),
        "best_test_top1_mean": _f(group.mean("best_test_top1"), 2), "val_top1_mean": _f(group.mean("val_top1"), 2),
        "params_m": _f(float(s["params"]) / 1e6, 3), "gmacs": _f(group.gmacs, 6),
        "ms_per_img": _f(group.ms_per_img, 3),
        "baseline": group.baseline.variant if group.baseline else "",
        "paired_n": str(paired.n) if paired else "", "paired_diff": _f(paired.mean if paired else None, 2),
        "ci_low": _f(paired.low if paired else None, 2), "ci_high": _f(paired.high if paired else None, 2),
        "ci_excludes_0": ("yes" if paired.excludes_zero else "no") if paired and paired.low is not None else "",
        "train_time_s_mean": _f(statistics.fmean(float(r.summary.get("train_time_s", 0.0)) for r in group.runs), 0),
        "runs": ";".join(r.name for r in group.runs),
    }


RUN_COLUMNS = ["track", "name", "variant", "model", "recipe", "seed", "protocol", "epochs", "epochs_logged",
               "num_train", "val_top1", "test_top1", "best_epoch", "best_test_top1", "train_time_s", "hardware"]


def _csv(rows: list[dict], columns: list[str]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def _run_row(track: Track, run: Run) -> dict[str, str]:
    s = run.summary
    return {"track": track.title, "name": run.name, "variant": run.variant, "model": run.model_label,
            "recipe": run.recipe, "seed": str(run.seed),
            "protocol": "old: selected and reported on test" if run.old_protocol else "selection on val",
            "epochs": str(s["epochs"]), "epochs_logged": str(run.epochs_logged), "num_train": str(run.num_train or ""),
            "val_top1": _f(run.val_top1, 2), "test_top1": _f(run.test_top1, 2),
            "best_epoch": str(s.get("best_epoch") or ""), "best_test_top1": _f(run.best_test_top1, 2),
            "train_time_s": _f(float(s.get("train_time_s", 0.0)), 0), "hardware": str(s.get("hardware", ""))}


PAIR_COLUMNS = ["track", "variant", "vs", "n", "mean_diff", "ci_low", "ci_high", "ci_excludes_0"]


def pair_rows(track: Track) -> list[dict[str, str]]:
    """Every ordered pair of the track's variants that share a seed: test top-1 of ``variant`` minus ``vs``
    on the shared seeds, with the 95% interval (answers questions such as preserve vs no preserve)."""
    rows = []
    for a in track.groups:
        for b in track.groups:
            p = paired_difference(a.scores, b.scores) if a is not b else None
            if p is not None:
                rows.append({"track": track.title, "variant": a.variant, "vs": b.variant, "n": str(p.n),
                             "mean_diff": _f(p.mean, 2), "ci_low": _f(p.low, 2), "ci_high": _f(p.high, 2),
                             "ci_excludes_0": ("yes" if p.excludes_zero else "no") if p.low is not None else ""})
    return rows


def _pairs_markdown(track: Track) -> list[str]:
    """The track's pairwise paired differences as a matrix (row minus column), if it has two variants."""
    if len(track.groups) < 2:
        return []
    cells = {(r["variant"], r["vs"]): r for r in pair_rows(track)}
    names = [g.variant for g in track.groups]
    lines = ["Paired differences in test top-1 points, row minus column, on the seeds both ran: mean "
             "[95% t interval] (n).", "",
             "| row − column | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for a in names:
        row = []
        for b in names:
            r = cells.get((a, b))
            if a == b or r is None:
                row.append("")
            elif r["ci_low"]:
                mark = " **excl. 0**" if r["ci_excludes_0"] == "yes" else ""
                row.append(f"{float(r['mean_diff']):+.2f} [{float(r['ci_low']):+.2f}, {float(r['ci_high']):+.2f}] "
                           f"({r['n']}){mark}")
            else:
                row.append(f"{float(r['mean_diff']):+.2f} ({r['n']})")
        lines.append(f"| {a} | " + " | ".join(row) + " |")
    return lines + [""]


def _pm(mean: str, std: str) -> str:
    return f"{mean} ± {std}" if std else mean


def _paired_cell(group: Group) -> str:
    if group.baseline is None:
        return "no baseline in track"
    if group.baseline is group:
        return "baseline"
    p = group.paired
    if p is None:
        return f"no seed shared with {group.baseline.variant}"
    if p.low is None:
        return f"{p.mean:+.2f} (n=1, no interval)"
    mark = " **excludes 0**" if p.excludes_zero else ""
    return f"{p.mean:+.2f} [{p.low:+.2f}, {p.high:+.2f}] (n={p.n}){mark}"


def render_markdown(board: Board) -> str:
    """LEADERBOARD.md: one section per track, variants best mean test top-1 first."""
    lines = ["# Leaderboard", "",
             "Generated by `attnzoo leaderboard` from the run folders; do not edit by hand.", "",
             "- Splits: `val` is 5,000 images held out of the 60,000 Fashion-MNIST training images (500 per "
             "class, fixed seed) and selects the best epoch; `test` is the 10,000 official test images, "
             "evaluated once at the end of each run and never used for selection.",
             "- test top-1: test accuracy (%) of the final weights, mean ± sample std over seeds; "
             "best-on-val: test accuracy of the epoch with the best val top-1; val: val top-1 of the final weights.",
             "- vs baseline: mean paired difference in test top-1 points against the track's plain model on the "
             "same seeds, with its 95% Student-t interval [low, high] and the number of pairs n; "
             "**excludes 0** marks an interval that does not contain 0.",
             f"- {MAC_CONVENTION}, per image at the run's input size, attention included.",
             f"- ms/img: CPU time per image of eval-mode inference, batch {LATENCY_BATCH}, {LATENCY_THREADS} "
             "thread, measured once per variant and cached in its first run's `cost.json`.",
             "- A seed counts once per variant; a second run with the same seed is listed under duplicates.", ""]
    for track in board.tracks:
        lines += [f"## {track.title}", ""]
        if track.old_protocol:
            lines += ["Old protocol: these runs chose their best epoch on the test split and report it; their "
                      "numbers are kept for the record and are not comparable with the tracks above.", ""]
        lines += ["| # | variant | model | seeds | test top-1 % | best-on-val test % | val top-1 % | params M | "
                  "GMACs | ms/img | vs baseline (test pts) | recipe |",
                  "|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for rank, group in enumerate(track.groups, 1):
            row = group_row(track, group)
            lines.append(
                f"| {rank} | {row['variant']} | {row['model']} | {row['seeds']} | "
                f"{_pm(row['test_top1_mean'], row['test_top1_std'])} | {row['best_test_top1_mean'] or '-'} | "
                f"{row['val_top1_mean'] or '-'} | {row['params_m']} | {row['gmacs']} | {row['ms_per_img']} | "
                f"{_paired_cell(group)} | `{row['recipe']}` |")
        lines.append("")
        lines += _pairs_markdown(track)
    hardware = sorted({str(r.summary.get("hardware", "")) for t in board.tracks for g in t.groups for r in g.runs})
    lines.append(f"Trained on: {'; '.join(hardware)}.")
    for label, items in (("Duplicates (counted once)", board.duplicates),
                         ("Left out (not complete)", board.unfinished),
                         ("Left out (unreadable)", board.unreadable)):
        if items:
            lines += ["", f"{label}: {', '.join(items)}."]
    return "\n".join(lines) + "\n"


def write_leaderboard(runs_dir: str | os.PathLike, out_dir: str | os.PathLike) -> list[Path]:
    """Gather, group and write the leaderboard files into ``out_dir``; returns the paths written."""
    from attnzoo.evaluate.pareto import plot_pareto  # matplotlib is only needed here

    check_output_folder(out_dir, "the leaderboard")  # before minutes of work
    board = build_board(*gather_runs(runs_dir))
    out = prepare_output_folder(out_dir, "the leaderboard")
    files = {
        "leaderboard.csv": _csv([group_row(t, g) for t in board.tracks for g in t.groups], CSV_COLUMNS),
        "runs.csv": _csv([_run_row(t, r) for t in board.tracks for g in t.groups for r in g.runs], RUN_COLUMNS),
        "paired.csv": _csv([row for t in board.tracks for row in pair_rows(t)], PAIR_COLUMNS),
        "LEADERBOARD.md": render_markdown(board),
    }
    written = []
    for name, text in files.items():
        (out / name).write_text(text, encoding="utf-8")
        written.append(out / name)
    written.append(plot_pareto(board.tracks, out / "pareto.png"))
    return written
