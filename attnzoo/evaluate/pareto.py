"""The Pareto plot of the leaderboard: one panel per track, test top-1 against GMACs."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after selecting the non-interactive backend)
from matplotlib.ticker import FuncFormatter, MaxNLocator  # noqa: E402

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


_MARKERS = "osD^v<>ph*"


def plot_pareto(tracks: list, path: Path) -> Path:
    """One panel per track (budgets never share a frontier): mean test top-1 against GMACs per image, error
    bars the std over seeds, the track's Pareto front ringed and joined by a dashed line. Variants are told
    apart by marker and colour in each panel's legend, so no label can overlap a point or another label."""
    cols = min(2, len(tracks))
    rows = -(-len(tracks) // cols)
    with plt.rc_context(_STYLE):
        fig, axes = plt.subplots(rows, cols, figsize=(6.4 * cols, 5.0 * rows), squeeze=False)
        for ax in axes.flat[len(tracks):]:
            ax.set_visible(False)
        for ax, track in zip(axes.flat, tracks):
            points = [(g.gmacs, g.mean("test_top1")) for g in track.groups]
            for i, (g, (x, y)) in enumerate(zip(track.groups, points)):
                ax.errorbar(x, y, yerr=g.std("test_top1") or 0.0, fmt=_MARKERS[i % len(_MARKERS)], ms=6, capsize=3,
                            color=f"C{i % 10}", label=f"{g.variant} (n={len(g.runs)})")
            front = pareto_front(points)
            # ringed points, so a front of one point (cheapest and best) shows too
            ax.plot([p[0] for p in front], [p[1] for p in front], "--o", color="0.5", lw=1, ms=13, mfc="none",
                    label="Pareto front (ringed)")
            ax.xaxis.set_major_locator(MaxNLocator(4))
            ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:.4g}"))
            ax.margins(x=0.15, y=0.15)
            ax.set_xlabel("GMACs per image (multiply-adds)")
            ax.set_ylabel("test top-1 % (mean ± std over seeds)")
            ax.set_title(_wrap(track.title), fontsize=9)
            ax.grid(True, alpha=0.3)
            # below the axes: a legend inside could cover a point
            ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=3, fontsize=7, frameon=False)
        fig.tight_layout()
        fig.savefig(path, format="png", metadata=_PNG_METADATA)
        plt.close(fig)
    return path


def _wrap(title: str, width: int = 70) -> str:
    """The title on lines of at most ``width`` characters, broken at spaces."""
    lines, line = [], ""
    for word in title.split():
        if line and len(line) + 1 + len(word) > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}".strip()
    return "\n".join(lines + [line])
