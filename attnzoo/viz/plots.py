"""Figures of captured tensors: per-image feature and attention maps, and per-class channel gates.

Figures are built as plain :class:`~matplotlib.figure.Figure` objects rendered by the Agg canvas, never
through pyplot: no display is needed, no global backend is switched and nothing is left open.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from matplotlib import colormaps
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from attnzoo.viz.capture import AttentionMaps, Capture

OVERLAY_CMAP = "jet"
FEATURE_CMAP = "viridis"


def display_image(image: torch.Tensor) -> np.ndarray:
    """A (C, H, W) model input as an (H, W) or (H, W, 3) array in [0, 1] (min-max, undoing normalisation)."""
    image = image.detach().float().cpu()
    image = (image - image.min()) / (image.max() - image.min()).clamp_min(1e-12)
    return image[0].numpy() if image.shape[0] == 1 else image[:3].permute(1, 2, 0).numpy()


def last_per_stage(captured: Capture, has: str) -> dict[int, AttentionMaps]:
    """For each stage, its last attention module that has a ``"spatial"`` or ``"channel"`` map."""
    chosen = {}
    for stage, items in captured.stage_attention().items():
        usable = [item for item in items if getattr(item, has)() is not None]
        if usable:
            chosen[stage] = usable[-1]
    return chosen


def _colour_range(values: torch.Tensor, min_span: float = 0.02) -> dict[str, float]:
    """vmin/vmax spanning ``values``, widened to ``min_span`` of their magnitude.

    An untrained gate is nearly constant (e.g. 0.5 +- 1e-8); stretching that to the full colour map
    would paint noise as structure and make the colour bar's ticks unreadable.
    """
    low, high = float(values.min()), float(values.max())
    span = min_span * max(abs(low), abs(high), 1e-6)
    if high - low < span:
        middle = (low + high) / 2
        low, high = middle - span / 2, middle + span / 2
    return {"vmin": low, "vmax": high}


def _label(index: int, class_names: Sequence[str] | None) -> str:
    return class_names[index] if class_names and 0 <= index < len(class_names) else str(index)


def image_figure(
    captured: Capture,
    images: torch.Tensor,
    index: int,
    *,
    channels: int = 8,
    title: str = "",
    label: int | None = None,
    prediction: int | None = None,
    class_names: Sequence[str] | None = None,
) -> Figure:
    """One image: the input, each stage's spatial attention overlaid on it, then each layer's first channels.

    ``captured`` and ``images`` are those of :func:`attnzoo.viz.capture`; ``index`` picks the image.
    """
    spatial = last_per_stage(captured, "spatial")
    layers = list(captured.features)
    ncols = max(channels, 1 + len(spatial))
    fig = Figure(figsize=(1.7 * ncols + 1, 1.9 * (1 + len(layers)) + 0.4), layout="constrained")
    axes = fig.subplots(1 + len(layers), ncols, squeeze=False)
    for ax in axes.flat:
        ax.set_axis_off()
    picture = display_image(images[index])
    gray = "gray" if picture.ndim == 2 else None
    axes[0, 0].imshow(picture, cmap=gray)
    caption = [f"label: {_label(label, class_names)}"] if label is not None else []
    if prediction is not None:
        caption.append(f"pred: {_label(prediction, class_names)}")
    axes[0, 0].set_title("input\n" + "\n".join(caption), fontsize=8)

    size = picture.shape[:2]
    for ax, (stage, item) in zip(axes[0, 1:], spatial.items()):
        heat = F.interpolate(item.spatial()[index : index + 1], size=size, mode="bilinear", align_corners=False)
        ax.imshow(picture, cmap=gray)
        shown = ax.imshow(heat[0, 0].numpy(), cmap=OVERLAY_CMAP, alpha=0.5, **_colour_range(heat))
        ax.set_title(f"stage {stage} {item.kind}\n{item.name}", fontsize=7)
        # Below the map, so the columns of the feature rows stay aligned with the overlays.
        bar = fig.colorbar(shown, ax=ax, location="bottom", fraction=0.05, pad=0.02, format="%.3g")
        bar.ax.xaxis.set_major_locator(MaxNLocator(3))
        bar.ax.tick_params(labelsize=7)

    for row, layer in zip(axes[1:], layers):
        maps = captured.features[layer][index]
        shown_maps = maps[:channels]
        scale = _colour_range(shown_maps)
        for channel, ax in enumerate(row[: len(shown_maps)]):
            shown = ax.imshow(shown_maps[channel].numpy(), cmap=FEATURE_CMAP, **scale)
            ax.set_title(f"{layer} {tuple(maps.shape)}\nch 0" if channel == 0 else f"ch {channel}", fontsize=7)
        # One colour scale per layer, so channels compare; the bar sits by the row's last map.
        bar = fig.colorbar(shown, ax=row[len(shown_maps) - 1], fraction=0.046, pad=0.02, format="%.3g")
        bar.ax.tick_params(labelsize=7)
    fig.suptitle(title, fontsize=10)
    return fig


def excitation_figure(
    captured: Capture,
    labels: torch.Tensor,
    *,
    class_names: Sequence[str] | None = None,
    title: str = "",
) -> Figure | None:
    """Per stage, the mean channel gate per class (the SE paper's excitation plots); None without gates.

    For each stage's last module with a channel gate, two panels over the channel index: on top the gate
    averaged over the images of each class (one line per class, dashed black over all images), on the
    same 0..1 scale as the SE paper; below, each class's mean minus the mean over all images, on its own
    scale. Where the class lines coincide the gate ignores the class; where they part it is class-specific.
    """
    gates = last_per_stage(captured, "channel")
    if not gates:
        return None
    ncols = min(len(gates), 4)
    nrows = -(-len(gates) // ncols)
    fig = Figure(figsize=(4.2 * ncols + 1.5, 5.0 * nrows + 0.8), layout="constrained")
    axes = fig.subplots(2 * nrows, ncols, squeeze=False)
    for empty in range(len(gates), nrows * ncols):  # unused slots of the last row
        axes[-2, empty % ncols].set_axis_off()
        axes[-1, empty % ncols].set_axis_off()
    classes = sorted(int(c) for c in labels.unique())
    colours = colormaps["tab10" if len(classes) <= 10 else "tab20"]
    for n, (stage, item) in enumerate(gates.items()):
        top, bottom = axes[2 * (n // ncols), n % ncols], axes[2 * (n // ncols) + 1, n % ncols]
        bottom.sharex(top)
        top.tick_params(labelbottom=False)
        gate = item.channel()
        overall = gate.mean(0)
        x = np.arange(gate.shape[1])
        for k, cls in enumerate(classes):
            mean = gate[labels == cls].mean(0)
            style = dict(lw=0.8, color=colours(k % colours.N), label=_label(cls, class_names))
            top.plot(x, mean.numpy(), **style)
            bottom.plot(x, (mean - overall).numpy(), **style)
        top.plot(x, overall.numpy(), lw=1.0, color="black", ls="--", label="all")
        bottom.axhline(0, lw=0.8, color="black", ls="--")
        top.set_title(f"stage {stage} {item.kind}: {item.name}", fontsize=9)
        top.set_ylabel("mean gate")
        top.set_ylim(-0.02, 1.02)
        bottom.set_ylabel("class mean - all")
        bottom.set_xlabel("channel")
    handles, names = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, names, loc="outside right center", fontsize=8)
    fig.suptitle(title, fontsize=10)
    return fig


def save_figure(fig: Figure, path: str | Path, dpi: int = 100) -> Path:
    """Write ``fig`` as a PNG, creating folders."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    return path
