"""Multi-head self-attention over the H x W positions of a feature map, with a residual connection.

Global attention costs O((HW)^2), so by default surgery puts it only in the last stage (as BoTNet does),
where the map is smallest.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from attnzoo.attention.identity import zero_
from attnzoo.attention.registry import register_attention
from attnzoo.errors import SurgeryError


@register_attention("mhsa")
class MultiHeadSelfAttention(nn.Module):
    """``x + proj(softmax(q k^T / sqrt(d)) v)`` with q, k, v from one 1x1 conv."""

    default_stages = "last"

    def __init__(self, channels: int, num_heads: int = 4, qkv_bias: bool = True) -> None:
        super().__init__()
        if channels % num_heads:
            raise SurgeryError(f"mhsa: channels={channels} is not divisible by num_heads={num_heads}")
        self.num_heads = num_heads
        self.qkv = nn.Conv2d(channels, 3 * channels, kernel_size=1, bias=qkv_bias)
        self.proj = nn.Conv2d(channels, channels, kernel_size=1)

    def _qkv(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        # (B, 3C, H, W) -> 3 x (B, heads, HW, C/heads)
        b, c, h, w = x.shape
        qkv = self.qkv(x).reshape(b, 3, self.num_heads, c // self.num_heads, h * w).transpose(-1, -2)
        return qkv[:, 0], qkv[:, 1], qkv[:, 2]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = self._qkv(x)
        out = F.scaled_dot_product_attention(q, k, v)
        return x + self.proj(out.transpose(-1, -2).reshape(x.shape))

    def attention_maps(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """How much attention each position receives, averaged over heads and queries: (B, 1, H, W)."""
        q, k, _ = self._qkv(x)
        weights = torch.softmax(q @ k.transpose(-1, -2) * q.shape[-1] ** -0.5, dim=-1)
        return {"spatial": weights.mean(dim=(1, 2)).reshape(x.shape[0], 1, *x.shape[2:])}

    def init_identity(self) -> float:
        """Zero the output projection: the residual branch adds nothing, gain 1."""
        zero_(self.proj)
        return 1.0
