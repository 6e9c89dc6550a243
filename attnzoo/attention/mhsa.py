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

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        # (B, 3C, H, W) -> 3 x (B, heads, HW, C/heads)
        q, k, v = self.qkv(x).reshape(b, 3, self.num_heads, c // self.num_heads, h * w).transpose(-1, -2).unbind(1)
        out = F.scaled_dot_product_attention(q, k, v)
        return x + self.proj(out.transpose(-1, -2).reshape(b, c, h, w))

    def init_identity(self) -> float:
        """Zero the output projection: the residual branch adds nothing, gain 1."""
        zero_(self.proj)
        return 1.0
