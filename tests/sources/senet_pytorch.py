"""moskomule/senet.pytorch's SE-ResNets, rebuilt for tests.

Written from github.com/moskomule/senet.pytorch, ``senet/se_resnet.py`` (``SEBasicBlock``,
``SEBottleneck``, ``se_resnet{18,34,50,101,152}``: torchvision's ``ResNet`` with these blocks and an
``AdaptiveAvgPool2d(1)``) and ``senet/se_module.py`` (``SELayer``: average pool, bias-free
``Linear(C, C // 16) - ReLU - Linear(C // 16, C) - Sigmoid``). torchvision's ``ResNet`` is used as is, as
the source does.
"""

from __future__ import annotations

import torch
from torch import nn
from torchvision.models import ResNet

LAYERS = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3), 50: (3, 4, 6, 3), 101: (3, 4, 23, 3), 152: (3, 8, 36, 3)}


class SELayer(nn.Module):
    def __init__(self, channel: int, reduction: int = 16) -> None:
        super().__init__()
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Sequential(nn.Linear(channel, channel // reduction, bias=False), nn.ReLU(inplace=True),
                                nn.Linear(channel // reduction, channel, bias=False), nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c = x.shape[:2]
        return x * self.fc(self.avg_pool(x).view(b, c)).view(b, c, 1, 1)


class SEBasicBlock(nn.Module):
    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None,
                 groups: int = 1, base_width: int = 64, dilation: int = 1, norm_layer: type | None = None,
                 *, reduction: int = 16) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.se = SELayer(planes, reduction)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.se(self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x))))))
        residual = self.downsample(x) if self.downsample is not None else x
        return self.relu(out + residual)


class SEBottleneck(nn.Module):
    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None,
                 groups: int = 1, base_width: int = 64, dilation: int = 1, norm_layer: type | None = None,
                 *, reduction: int = 16) -> None:
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(inplanes, planes, 1, bias=False), nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3, self.bn3 = nn.Conv2d(planes, planes * 4, 1, bias=False), nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.se = SELayer(planes * 4, reduction)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.se(self.bn3(self.conv3(out)))
        residual = self.downsample(x) if self.downsample is not None else x
        return self.relu(out + residual)


def se_resnet(depth: int, num_classes: int = 1000) -> ResNet:
    """``se_resnet{depth}(num_classes)``."""
    block = SEBasicBlock if depth in (18, 34) else SEBottleneck
    model = ResNet(block, list(LAYERS[depth]), num_classes=num_classes)
    model.avgpool = nn.AdaptiveAvgPool2d(1)
    return model
