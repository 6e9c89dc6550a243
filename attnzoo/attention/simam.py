"""SimAM: a parameter-free attention (Yang et al., ICML 2021).

Each activation is weighted by the sigmoid of its inverse energy, which grows with its squared distance
from the channel mean relative to the channel variance. The paper estimates the variance over the other
``n = H*W - 1`` positions of the channel; a 1x1 map has none (0 / 0), so attnzoo takes ``n`` to be at least
1: a 1x1 map then has variance 0 and distance 0, its energy term is 0 and every activation is scaled by
sigmoid(0.5) (about 0.62), the same factor an activation exactly at its channel's mean gets on a larger
map. The output is finite at every map size (the paper's formula is unchanged wherever it is defined).
Having no parameters, SimAM cannot be initialised to the identity, so ``preserve=True`` surgery refuses it.
"""

from __future__ import annotations

import torch
from timm.layers import create_act_layer
from torch import nn

from attnzoo.attention.registry import register_attention


@torch.fx.wrap  # an int from the traced shape: FX records the call rather than branching on it
def variance_count(height: int, width: int) -> int:
    """The variance estimate's denominator: ``H*W - 1`` as in the paper, and 1 for a 1x1 map."""
    return max(height * width - 1, 1)


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
        d = (x - x.mean(dim=(2, 3), keepdim=True)).square()
        variance = d.sum(dim=(2, 3), keepdim=True) / variance_count(x.shape[2], x.shape[3])
        return {"element": self.gate(d / (4 * (variance + self.e_lambda)) + 0.5)}
