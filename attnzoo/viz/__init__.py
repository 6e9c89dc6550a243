"""Visualisation: capture feature and attention maps with forward hooks, and plot them."""

from attnzoo.viz.capture import (
    AttentionMaps,
    Capture,
    UnknownLayerError,
    capture,
    capturing,
    find_attention,
    stage_layer_names,
)
from attnzoo.viz.plots import excitation_figure, image_figure, save_figure

__all__ = [
    "AttentionMaps",
    "Capture",
    "UnknownLayerError",
    "capture",
    "capturing",
    "excitation_figure",
    "find_attention",
    "image_figure",
    "save_figure",
    "stage_layer_names",
]
