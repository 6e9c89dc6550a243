"""``official-cbam``: checkpoints of the CBAM authors' code (github.com/Jongchan/attention-module).

Their ``ResidualNet('ImageNet', depth, 1000, 'CBAM')`` (``MODELS/model_resnet.py``) is the torchvision
ResNet layout with ``CBAM(channels, 16)`` (``MODELS/cbam.py``) applied to the residual branch after its last
BN, before the shortcut add: attnzoo's placement. ``train_imagenet.py`` saves
``{'epoch', 'arch', 'state_dict', 'best_prec1', 'optimizer'}`` from ``nn.DataParallel`` (``module.``
prefix). The CBAM tensors map onto attnzoo's ``cbam`` as follows:

- ``ChannelGate.mlp.1`` / ``mlp.3`` (``Linear`` with bias, C -> C/16 -> C) -> ``channel.fc1`` / ``fc2``
  (1x1 convs with bias): the same numbers, reshaped.
- ``SpatialGate.spatial.conv`` (7x7, 2 -> 1, no bias) -> ``spatial.conv.conv``. The authors pool
  (max, mean) over channels, attnzoo (mean, max), so the two input channels of the weight are swapped.
- ``SpatialGate.spatial.bn`` (their ``BasicConv`` with ``bn=True, relu=False``) -> ``spatial.conv.bn``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from attnzoo.convert.reading import strip_data_parallel, tensors_only
from attnzoo.convert.registry import PublishedResult, register_source
from attnzoo.convert.resnet import ResNetSource
from attnzoo.errors import CheckpointError

# Entries train_imagenet.py saves next to the weights; they are training bookkeeping, not converted.
BOOKKEEPING = ("epoch", "arch", "best_prec1", "optimizer")
_SPATIAL_BN = "cbam.SpatialGate.spatial.bn."
_SPATIAL_CONV = "cbam.SpatialGate.spatial.conv.weight"
# the authors' CBAM tensor names (inside a block) -> attnzoo's
_RENAMES = {
    "cbam.ChannelGate.mlp.1.weight": "se.channel.fc1.weight",
    "cbam.ChannelGate.mlp.1.bias": "se.channel.fc1.bias",
    "cbam.ChannelGate.mlp.3.weight": "se.channel.fc2.weight",
    "cbam.ChannelGate.mlp.3.bias": "se.channel.fc2.bias",
    _SPATIAL_CONV: "se.spatial.conv.conv.weight",
}


class OfficialCbam(ResNetSource):
    name = "official-cbam"
    title = "the CBAM authors' code (Woo, Park, Lee, Kweon)"
    repo_url = "https://github.com/Jongchan/attention-module"
    license = "mit"
    tag = "official_in1k"
    attention = "cbam"
    architectures = {
        f"resnet{depth}_cbam": f"ResidualNet('ImageNet', {depth}, num_classes, 'CBAM') in MODELS/model_resnet.py"
        for depth in (18, 34, 50, 101)
    }
    published = {
        "resnet50_cbam": (
            PublishedResult(
                checkpoint="RESNET50_CBAM_new_name_wrap.pth",
                top1=77.622,
                top5=93.948,
                citation="Jongchan/attention-module README, 'Resume with checkpoints' (ImageNet-1k val, "
                "100 epochs)",
            ),
            PublishedResult(
                checkpoint="the paper's ResNet-50 + CBAM",
                top1=77.34,
                citation="Woo et al., CBAM: Convolutional Block Attention Module, ECCV 2018, ImageNet-1k "
                "results (top-1 error 22.66 %)",
            ),
        ),
    }
    notes = (
        "ChannelGate.mlp Linear layers become the 1x1 convs channel.fc1/fc2 (same numbers, reshaped).",
        "The spatial gate's 7x7 conv weight has its two input channels swapped: the authors stack the "
        "channel (max, mean) maps, attnzoo (mean, max).",
        "The authors' model pools with AvgPool2d(7), which equals timm's global average pool only where "
        "the last feature map is 7x7 (inputs of 193-224 px); at other sizes timm pools globally.",
    )

    def weights_of(self, checkpoint: dict[str, Any], source: str) -> dict[str, torch.Tensor]:
        if "state_dict" not in checkpoint:  # a bare state dict, re-saved by a user
            return super().weights_of(checkpoint, source)
        extra = sorted(set(checkpoint) - {"state_dict", *BOOKKEEPING})
        if extra:
            raise CheckpointError(
                f"{source} has entries {', '.join(map(repr, extra))} next to 'state_dict', which "
                f"train_imagenet.py does not write; is it a checkpoint of another code base?"
            )
        return strip_data_parallel(tensors_only(checkpoint["state_dict"], f"{source} ['state_dict']"))

    def attention_weights(
        self, block: str, name: str, value: torch.Tensor, target: Mapping[str, torch.Tensor]
    ) -> dict[str, torch.Tensor] | None:
        if name.startswith(_SPATIAL_BN):
            return {f"{block}se.spatial.conv.bn.{name[len(_SPATIAL_BN):]}": value}
        if name not in _RENAMES:
            return None
        if name.endswith("mlp.1.weight") or name.endswith("mlp.3.weight"):
            value = value[..., None, None] if value.ndim == 2 else value  # Linear -> 1x1 conv
        elif name == _SPATIAL_CONV and value.ndim == 4 and value.shape[1] == 2:
            value = value[:, [1, 0]]  # (max, mean) -> (mean, max)
        return {f"{block}{_RENAMES[name]}": value}


register_source(OfficialCbam())
