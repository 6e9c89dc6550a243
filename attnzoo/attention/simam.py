"""SimAM: a parameter-free attention (Yang et al., ICML 2021).

Each activation is weighted by the sigmoid of its inverse energy, which grows with its squared distance
from the channel mean relative to the channel variance. Having no parameters, it cannot be initialised to
the identity, so ``preserve=True`` surgery refuses it.
"""

from __future__ import annotations

import torch
from timm.layers import create_act_layer
from torch import nn

from attnzoo.attention.registry import register_attention


@register_attention("simam")
class SimAM(nn.Module):
    """``x * sigmoid((x - mu)^2 / (4 (var + e_lambda)) + 0.5)`` per channel."""

    def __init__(self, channels: int | None = None, e_lambda: float = 1e-4) -> None:
        super().__init__()
        self.e_lambda = e_lambda
        self.gate = create_act_layer("sigmoid")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.attention_maps(x)["element"]

    def attention_maps(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """The per-activation gate, shape (B, C, H, W)."""
        n = x.shape[2] * x.shape[3] - 1
        d = (x - x.mean(dim=(2, 3), keepdim=True)).square()
        energy = d / (4 * (d.sum(dim=(2, 3), keepdim=True) / n + self.e_lambda)) + 0.5
        return {"element": self.gate(energy)}
