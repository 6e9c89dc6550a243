"""ECA: Efficient Channel Attention (Wang et al., CVPR 2020).

timm's ``EcaModule`` already is the paper form (global average pool, 1-D conv across channels with the
adaptive kernel size k = |log2(C)/gamma + b/gamma| rounded up to odd, sigmoid); attnzoo registers it and adds
the identity initialisation, keeping timm's state-dict names.
"""

from __future__ import annotations

import torch
from timm.layers import EcaModule

from attnzoo.attention.identity import zero_
from attnzoo.attention.registry import register_attention


@register_attention("eca")
class Eca(EcaModule):
    """ECA with an adaptive kernel size derived from ``channels``."""

    def __init__(self, channels: int, kernel_size: int = 3, gamma: int = 2, beta: int = 1) -> None:
        super().__init__(channels=channels, kernel_size=kernel_size, gamma=gamma, beta=beta)

    def attention_maps(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """The channel gate for input ``x``, shape (B, C)."""
        return {"channel": self.gate(self.conv(x.mean((2, 3)).unsqueeze(1))).squeeze(1)}

    def init_identity(self) -> float:
        """Zero the 1-D conv so the gate is sigmoid(0) = 0.5."""
        zero_(self.conv)
        return 0.5
