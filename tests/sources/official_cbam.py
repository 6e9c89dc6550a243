"""The CBAM authors' ImageNet ResNet + CBAM, rebuilt for tests.

Written from github.com/Jongchan/attention-module, ``MODELS/model_resnet.py`` (commit c06383c,
``ResidualNet('ImageNet', depth, num_classes, att_type)``) and ``MODELS/cbam.py`` (``CBAM``, ``ChannelGate``,
``SpatialGate``, ``BasicConv``): same module names (so the state dict has the authors' keys) and the same
arithmetic, including the spatial gate's (max, mean) channel order, its BN with ``momentum=0.01`` and no
ReLU, and the fixed ``AvgPool2d(7)`` before the classifier. ``att_type=None`` builds the plain ResNet.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

DEPTHS = {18: ("basic", (2, 2, 2, 2)), 34: ("basic", (3, 4, 6, 3)), 50: ("bottleneck", (3, 4, 6, 3)),
          101: ("bottleneck", (3, 4, 23, 3))}


class Flatten(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.view(x.size(0), -1)


class BasicConv(nn.Module):
    """conv (no bias) + BN, as the spatial gate builds it (``relu=False``)."""

    def __init__(self, cin: int, cout: int, k: int, padding: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, k, stride=1, padding=padding, bias=False)
        self.bn = nn.BatchNorm2d(cout, eps=1e-5, momentum=0.01, affine=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.conv(x))


class ChannelGate(nn.Module):
    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()
        self.mlp = nn.Sequential(Flatten(), nn.Linear(channels, channels // reduction), nn.ReLU(),
                                 nn.Linear(channels // reduction, channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = (x.size(2), x.size(3))
        raw = self.mlp(F.avg_pool2d(x, size, stride=size)) + self.mlp(F.max_pool2d(x, size, stride=size))
        return x * torch.sigmoid(raw)[:, :, None, None]


class SpatialGate(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.spatial = BasicConv(2, 1, 7, padding=3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = torch.cat((x.max(1, keepdim=True)[0], x.mean(1, keepdim=True)), dim=1)  # (max, mean)
        return x * torch.sigmoid(self.spatial(pooled))


class CBAM(nn.Module):
    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()
        self.ChannelGate = ChannelGate(channels, reduction)
        self.SpatialGate = SpatialGate()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.SpatialGate(self.ChannelGate(x))


def _conv3x3(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None,
                 use_cbam: bool = False) -> None:
        super().__init__()
        self.conv1, self.bn1 = _conv3x3(inplanes, planes, stride), nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2, self.bn2 = _conv3x3(planes, planes), nn.BatchNorm2d(planes)
        self.downsample = downsample
        self.cbam = CBAM(planes, 16) if use_cbam else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))
        residual = self.downsample(x) if self.downsample is not None else x
        if self.cbam is not None:
            out = self.cbam(out)
        return self.relu(out + residual)


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None,
                 use_cbam: bool = False) -> None:
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(inplanes, planes, 1, bias=False), nn.BatchNorm2d(planes)
        self.conv2, self.bn2 = _conv3x3(planes, planes, stride), nn.BatchNorm2d(planes)
        self.conv3, self.bn3 = nn.Conv2d(planes, planes * 4, 1, bias=False), nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample
        self.cbam = CBAM(planes * 4, 16) if use_cbam else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        residual = self.downsample(x) if self.downsample is not None else x
        if self.cbam is not None:
            out = self.cbam(out)
        return self.relu(out + residual)


class ResNet(nn.Module):
    """The ``network_type == "ImageNet"`` branch of the authors' ResNet."""

    def __init__(self, depth: int, num_classes: int = 1000, att_type: str | None = "CBAM") -> None:
        super().__init__()
        kind, layers = DEPTHS[depth]
        block = BasicBlock if kind == "basic" else Bottleneck
        self.inplanes = 64
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        self.avgpool = nn.AvgPool2d(7)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        use_cbam = att_type == "CBAM"
        self.layer1 = self._make_layer(block, 64, layers[0], 1, use_cbam)
        self.layer2 = self._make_layer(block, 128, layers[1], 2, use_cbam)
        self.layer3 = self._make_layer(block, 256, layers[2], 2, use_cbam)
        self.layer4 = self._make_layer(block, 512, layers[3], 2, use_cbam)
        self.fc = nn.Linear(512 * block.expansion, num_classes)

    def _make_layer(self, block: type, planes: int, blocks: int, stride: int, use_cbam: bool) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(
                nn.Conv2d(self.inplanes, planes * block.expansion, 1, stride=stride, bias=False),
                nn.BatchNorm2d(planes * block.expansion),
            )
        layers = [block(self.inplanes, planes, stride, downsample, use_cbam=use_cbam)]
        self.inplanes = planes * block.expansion
        layers += [block(self.inplanes, planes, use_cbam=use_cbam) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(self.avgpool(x).view(x.size(0), -1))


def save_like_train_imagenet(model: ResNet, path: str, epoch: int = 100) -> None:
    """The file ``train_imagenet.py``'s ``save_checkpoint`` writes: DataParallel keys plus bookkeeping, in the
    pre-1.6 (non-zip) serialization of the PyTorch 0.4.1 the authors used."""
    wrapped = nn.DataParallel(model)
    optimizer = torch.optim.SGD(wrapped.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    torch.save({"epoch": epoch, "arch": "resnet", "state_dict": wrapped.state_dict(),
                "best_prec1": torch.tensor(77.622), "optimizer": optimizer.state_dict()}, path,
               _use_new_zipfile_serialization=False)
