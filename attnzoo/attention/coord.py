"""Coordinate Attention (Hou et al., CVPR 2021).

Pools along height and width separately, so the two gates keep the position along the other axis.
timm's ``CoordAttn`` is used as is (its bottleneck width keeps parameters close to SE's); attnzoo registers
it and adds the identity initialisation.
"""

from __future__ import annotations

from timm.layers.coord_attn import CoordAttn
from torch import nn

from attnzoo.attention.identity import zero_
from attnzoo.attention.registry import register_attention


@register_attention("coord")
class CoordinateAttention(CoordAttn):
    """Coordinate attention: ``x * gate_h(x) * gate_w(x)``."""

    def __init__(
        self,
        channels: int,
        rd_ratio: float = 1 / 16,
        rd_channels: int | None = None,
        rd_divisor: int = 8,
        act_layer: type[nn.Module] = nn.Hardswish,
        gate_layer: type[nn.Module] | str = "sigmoid",
    ) -> None:
        super().__init__(
            channels,
            rd_ratio=rd_ratio,
            rd_channels=rd_channels,
            rd_divisor=rd_divisor,
            act_layer=act_layer,
            gate_layer=gate_layer,
        )

    def init_identity(self) -> float:
        """Zero both gate convs: each gate is 0.5, their product 0.25."""
        zero_(self.conv_h, self.conv_w)
        return 0.25
