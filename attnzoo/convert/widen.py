"""Widening a source's narrower bottleneck to attnzoo's width without changing what it computes.

Where attnzoo's attention has more hidden units than the source's, the extra units get zero weights in
and out (and, behind a BN, a zero affine), so they output zero and add nothing.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def zero_pad(value: torch.Tensor, shape: torch.Size | tuple[int, ...], fill: float = 0.0) -> torch.Tensor:
    """``value`` padded with ``fill`` at the end of each dimension up to ``shape``; unchanged if it cannot be
    (a larger or differently ranked tensor is left for the strict load to report)."""
    if value.ndim != len(shape) or any(have > want for have, want in zip(value.shape, shape)):
        return value
    padding = [p for have, want in zip(reversed(value.shape), reversed(shape)) for p in (0, want - have)]
    return F.pad(value, padding, value=fill)
