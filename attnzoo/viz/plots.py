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
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from attnzoo.viz.capture import AttentionMaps, Capture

OVERLAY_CMAP = "jet"
FEATURE_CMAP = "viridis"
DEVIATION_CMAP = "RdBu_r"
MIN_DEVIATION_SCALE = 0.01
ATTENTION_NAMES = {"se": "SE", "cbam": "CBAM", "cbam_channel": "CBAM channel", "cbam_spatial": "CBAM spatial",
                   "eca": "ECA", "coord": "coordinate attention", "simam": "SimAM", "mhsa": "self-attention"}


def gate_title(item: AttentionMaps, gate: str) -> str:
    """What a panel shows, in the papers' terms: e.g. "CBAM spatial gate, stage 2" (the figures show the
    last attention module of each stage; its module path is a timm slot name such as ``layer2.1.se``)."""
    kind = ATTENTION_NAMES.get(item.kind, item.kind)
    gate = "" if gate in kind else f" {gate}"
    return f"{kind}{gate} gate, stage {item.stage}"


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
    widest = max((captured.features[layer].shape[1] for layer in layers), default=1)
    ncols = max(min(channels, widest), 1 + len(spatial))  # no empty columns past the widest layer's channels
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
    for ax, item in zip(axes[0, 1:], spatial.values()):
        gate = item.spatial()[index : index + 1]
        panel = f"{gate_title(item, 'spatial')}\n{gate.shape[-2]}x{gate.shape[-1]} map"
        if gate.shape[-2:].numel() == 1:  # one position: a single number, nothing to locate
            ax.set_title(panel, fontsize=7)
            ax.text(0.5, 0.5, f"one position at this depth:\nthe gate is a single\nvalue ({float(gate):.3g})",
                    ha="center", va="center", fontsize=7, transform=ax.transAxes)
            continue
        heat = F.interpolate(gate, size=size, mode="bilinear", align_corners=False)
        ax.imshow(picture, cmap=gray)
        shown = ax.imshow(heat[0, 0].numpy(), cmap=OVERLAY_CMAP, alpha=0.5, **_colour_range(heat))
        ax.set_title(panel, fontsize=7)
        # Below the map, so the columns of the feature rows stay aligned with the overlays.
        bar = fig.colorbar(shown, ax=ax, location="bottom", fraction=0.05, pad=0.02, format="%.3g")
        bar.ax.xaxis.set_major_locator(MaxNLocator(3))
        bar.ax.tick_params(labelsize=7)

    for row, layer in zip(axes[1:], layers):
        maps = captured.features[layer][index]
        if maps.shape[-2:].numel() == 1:  # 1x1 maps would be flat squares: plot the channel values instead
            _channel_values(row[0], maps[:, 0, 0], f"{layer} {tuple(maps.shape)}\nchannel values")
            continue
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


def _channel_values(ax, values: torch.Tensor, title: str) -> None:
    """Every channel's value of a 1x1 feature map, as bars over the channel index."""
    ax.set_axis_on()
    ax.bar(np.arange(len(values)), values.numpy(), width=1.0, color="tab:blue")
    ax.set_title(title, fontsize=7)
    ax.set_xlabel("channel", fontsize=7)
    ax.tick_params(labelsize=6)


def excitation_figure(
    captured: Capture,
    labels: torch.Tensor,
    *,
    class_names: Sequence[str] | None = None,
    title: str = "",
) -> Figure | None:
    """Per stage, the mean channel gate per class (the SE paper's excitation plots); None without gates.

    For each stage's last module with a channel gate, two panels over the channel index: on top the gate
    averaged over all images (black) and the range the class means span (grey band), on the SE paper's
    0..1 scale; below, a heat map of each class's mean minus the mean over all images (one row per class,
    red above, blue below, on a scale symmetric about 0). A narrow band and a pale map: the gate ignores
    the class; a wide band and strong rows: it is class-specific, and the rows say for which classes.
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
    for n, item in enumerate(gates.values()):
        top, bottom = axes[2 * (n // ncols), n % ncols], axes[2 * (n // ncols) + 1, n % ncols]
        gate = item.channel()
        overall = gate.mean(0)
        means = torch.stack([gate[labels == cls].mean(0) for cls in classes])
        x = np.arange(gate.shape[1])
        top.fill_between(x, means.min(0).values.numpy(), means.max(0).values.numpy(), step="mid", color="0.7",
                         lw=0, label="range of the class means")
        top.plot(x, overall.numpy(), lw=0.8, color="black", drawstyle="steps-mid", label="all images")
        top.set_title(f"{gate_title(item, 'channel')}, {gate.shape[1]} channels", fontsize=9)
        top.set_ylabel("mean gate")
        top.set_ylim(-0.02, 1.02)
        top.set_xlim(-0.5, len(x) - 0.5)
        top.tick_params(labelbottom=False)
        deviation = (means - overall).numpy()
        # At least MIN_DEVIATION_SCALE: smaller differences of a 0..1 gate are noise, shown pale.
        limit = max(float(np.abs(deviation).max()), MIN_DEVIATION_SCALE)
        shown = bottom.imshow(deviation, aspect="auto", interpolation="nearest", cmap=DEVIATION_CMAP,
                              vmin=-limit, vmax=limit, extent=(-0.5, len(x) - 0.5, len(classes) - 0.5, -0.5))
        bottom.set_yticks(range(len(classes)), [_label(cls, class_names) for cls in classes], fontsize=7)
        bottom.set_xlabel("channel")
        bottom.set_title("class mean - mean over all images", fontsize=8)
        bar = fig.colorbar(shown, ax=bottom, fraction=0.05, pad=0.02, format="%.2g")
        bar.ax.tick_params(labelsize=7)
    handles, names = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, names, loc="outside lower center", ncols=2, fontsize=8)
    fig.suptitle(title, fontsize=10)
    return fig


def save_figure(fig: Figure, path: str | Path, dpi: int = 100) -> Path:
    """Write ``fig`` as a PNG, creating folders."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    return path
