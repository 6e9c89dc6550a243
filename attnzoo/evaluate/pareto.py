"""The Pareto plot of the leaderboard: top-1 against GMACs and against measured latency."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after selecting the non-interactive backend)
from matplotlib.ticker import FuncFormatter, NullFormatter  # noqa: E402

# PNG metadata carries no software version or date, so the bytes depend on the data alone.
_PNG_METADATA = {"Software": None}
_STYLE = {"figure.dpi": 100, "savefig.dpi": 100, "font.size": 8, "font.family": "DejaVu Sans",
          "svg.hashsalt": "attnzoo", "path.simplify": False}


def pareto_front(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Points no other point beats on both cost (lower) and accuracy (higher), by increasing cost."""
    front, best = [], float("-inf")
    for cost, acc in sorted(points, key=lambda p: (p[0], -p[1])):
        if acc > best:
            front.append((cost, acc))
            best = acc
    return front


def plot_pareto(groups: list, path: Path) -> Path:
    """Two panels, top-1 vs GMACs and vs ms/img; error bars are the std over seeds, the line the front."""
    axes_spec = [("gmacs", "GMACs per image (multiply-adds)"), ("ms_per_img", "latency, CPU ms per image (1 thread)")]
    datasets = sorted({g.first.summary["dataset"] for g in groups})
    with plt.rc_context(_STYLE):
        fig, axes = plt.subplots(len(datasets), 2, figsize=(10, 4 * len(datasets)), squeeze=False)
        for row, dataset in enumerate(datasets):
            ranked = [g for g in groups if g.first.summary["dataset"] == dataset]
            for ax, (attr, label) in zip(axes[row], axes_spec):
                points = [(getattr(g, attr), g.mean("top1")) for g in ranked]
                for g, (x, y) in zip(ranked, points):
                    ax.errorbar(x, y, yerr=g.std("top1") or 0.0, fmt="o", ms=4, capsize=2,
                                color="tab:blue" if g.first.has_attention else "tab:gray")
                    ax.annotate(g.model, (x, y), textcoords="offset points", xytext=(4, 3), fontsize=6)
                front = pareto_front(points)
                ax.plot([p[0] for p in front], [p[1] for p in front], "--", color="tab:orange", lw=1)
                ax.set_xscale("log")
                ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
                ax.xaxis.set_minor_formatter(NullFormatter())
                ax.set_xlabel(label)
                ax.set_ylabel(f"{dataset} top-1 % (mean over seeds)")
                ax.grid(True, alpha=0.3)
        fig.tight_layout()
        fig.savefig(path, format="png", metadata=_PNG_METADATA)
        plt.close(fig)
    return path
