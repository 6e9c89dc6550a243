"""The Coordinate Attention authors' MobileNetV2 (``mbv2_ca``), rebuilt for tests.

Written from github.com/houqb/CoordAttention, ``mbv2_ca.py`` (``MBV2_CA``: stem ``conv_3x3_bn``, the
``InvertedResidual`` settings t, c, n, s = (1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2),
(6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1), ``conv_1x1_bn`` to 1280 (``_make_divisible(1280 * width)``
when width > 1), ``AdaptiveAvgPool2d``, ``Dropout(0.1)`` + ``Linear``; ``CoordAtt(hidden, hidden)`` after the
depthwise conv's BN-ReLU6 of each block with expansion > 1) and its ``CoordAtt`` (mip = max(8, C // 32),
``conv1`` with bias - ``bn1`` - ``h_swish``, then ``conv2`` (height) / ``conv3`` (width) with bias and
sigmoid; ``coordatt.py`` names them ``conv_h`` / ``conv_w``). Module names are theirs, so state dicts match.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

SETTINGS = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2),
            (6, 320, 1, 1))


def make_divisible(value: float, divisor: int = 8) -> int:
    """The TensorFlow MobileNet rounding ``_make_divisible`` implements: nearest multiple, at most 10 % down."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


class HSwish(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * nn.functional.relu6(x + 3) / 6


class CoordAtt(nn.Module):
    def __init__(self, inp: int, oup: int, groups: int = 32, gate_names: tuple[str, str] = ("conv2", "conv3")) -> None:
        super().__init__()
        mip = max(8, inp // groups)
        self.conv1 = nn.Conv2d(inp, mip, 1)
        self.bn1 = nn.BatchNorm2d(mip)
        self.relu = HSwish()
        self.gate_names = gate_names
        for name in gate_names:
            setattr(self, name, nn.Conv2d(mip, oup, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[2:]
        pooled_h = x.mean(3, keepdim=True)  # AdaptiveAvgPool2d((None, 1))
        pooled_w = x.mean(2, keepdim=True).permute(0, 1, 3, 2)  # AdaptiveAvgPool2d((1, None)), then H <-> W
        y = self.relu(self.bn1(self.conv1(torch.cat([pooled_h, pooled_w], dim=2))))
        y_h, y_w = torch.split(y, [h, w], dim=2)
        conv_h, conv_w = (getattr(self, name) for name in self.gate_names)
        return x * conv_w(y_w.permute(0, 1, 3, 2)).sigmoid() * conv_h(y_h).sigmoid()


class InvertedResidual(nn.Module):
    def __init__(self, inp: int, oup: int, stride: int, expand_ratio: int, gate_names: tuple[str, str]) -> None:
        super().__init__()
        hidden = round(inp * expand_ratio)
        self.identity = stride == 1 and inp == oup
        depthwise = [nn.Conv2d(hidden, hidden, 3, stride, 1, groups=hidden, bias=False), nn.BatchNorm2d(hidden),
                     nn.ReLU6(inplace=True)]
        project = [nn.Conv2d(hidden, oup, 1, bias=False), nn.BatchNorm2d(oup)]
        if expand_ratio == 1:
            self.conv = nn.Sequential(*depthwise, *project)
        else:
            expand = [nn.Conv2d(inp, hidden, 1, bias=False), nn.BatchNorm2d(hidden), nn.ReLU6(inplace=True)]
            self.conv = nn.Sequential(*expand, *depthwise, CoordAtt(hidden, hidden, gate_names=gate_names), *project)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.identity else self.conv(x)


def _conv_bn_relu6(cin: int, cout: int, kernel: int, stride: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, kernel, stride, kernel // 2, bias=False), nn.BatchNorm2d(cout),
                         nn.ReLU6(inplace=True))


class MBV2_CA(nn.Module):  # noqa: N801 - the authors' class name
    def __init__(self, num_classes: int = 1000, width_mult: float = 1.0,
                 gate_names: tuple[str, str] = ("conv2", "conv3")) -> None:
        """``gate_names``: mbv2_ca.py's ``("conv2", "conv3")``, or coordatt.py's ``("conv_h", "conv_w")``."""
        super().__init__()
        channels = make_divisible(32 * width_mult)
        layers: list[nn.Module] = [_conv_bn_relu6(3, channels, 3, 2)]
        for t, c, n, s in SETTINGS:
            out = make_divisible(c * width_mult)
            for i in range(n):
                layers.append(InvertedResidual(channels, out, s if i == 0 else 1, t, gate_names))
                channels = out
        self.features = nn.Sequential(*layers)
        last = make_divisible(1280 * width_mult) if width_mult > 1.0 else 1280
        self.conv = _conv_bn_relu6(channels, last, 1, 1)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.classifier = nn.Sequential(nn.Dropout(0.1), nn.Linear(last, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.avgpool(self.conv(self.features(x)))
        return self.classifier(x.view(x.size(0), -1))


def without_ca(model: MBV2_CA) -> MBV2_CA:
    """The same network with every CoordAtt removed (for showing that the attention matters)."""
    plain = copy.deepcopy(model)
    for block in plain.features[1:]:
        block.conv = nn.Sequential(*(m for m in block.conv if not isinstance(m, CoordAtt)))
    return plain
