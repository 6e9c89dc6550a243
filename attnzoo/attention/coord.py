"""Coordinate Attention (Hou et al., CVPR 2021).

Pools along height and width separately, so the two gates keep the position along the other axis.
timm's ``CoordAttn`` is used as is (its bottleneck width keeps parameters close to SE's); attnzoo registers
it and adds the identity initialisation.
"""

from __future__ import annotations

import torch
from timm.layers.coord_attn import CoordAttn
from torch import nn

from attnzoo.attention.identity import zero_
from attnzoo.attention.registry import register_attention


@register_attention("coord")
class CoordinateAttention(CoordAttn):
    """Coordinate attention: ``x * gate_h(x) * gate_w(x)``.

    ``bias`` gives the three 1x1 convs biases, as the authors' ``CoordAtt`` has (timm's default has none);
    weights converted from their MobileNetV2 need it (docs/convert.md).
    """

    def __init__(
        self,
        channels: int,
        rd_ratio: float = 1 / 16,
        rd_channels: int | None = None,
        rd_divisor: int = 8,
        bias: bool = False,
        act_layer: type[nn.Module] = nn.Hardswish,
        gate_layer: type[nn.Module] | str = "sigmoid",
    ) -> None:
        super().__init__(
            channels,
            rd_ratio=rd_ratio,
            rd_channels=rd_channels,
            rd_divisor=rd_divisor,
            bias=bias,
            act_layer=act_layer,
            gate_layer=gate_layer,
        )

    def attention_maps(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """The height gate (B, C, H, 1) and width gate (B, C, 1, W)."""
        h, w = x.shape[2:]
        pooled = torch.cat((x.mean(3, keepdim=True), x.mean(2, keepdim=True).transpose(-1, -2)), dim=2)
        y_h, y_w = torch.split(self.act(self.bn1(self.conv1(pooled))), [h, w], dim=2)
        return {"height": self.gate(self.conv_h(y_h)), "width": self.gate(self.conv_w(y_w.transpose(-1, -2)))}

    def init_identity(self) -> float:
        """Zero both gate convs: each gate is 0.5, their product 0.25."""
        zero_(self.conv_h, self.conv_w)
        return 0.25
