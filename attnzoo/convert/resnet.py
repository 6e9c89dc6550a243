"""The ResNet layout that torchvision, the CBAM authors' code and timm share.

Their ImageNet ResNets name the stem, blocks, shortcuts and classifier alike (``conv1``, ``bn1``,
``layer{i}.{j}.conv{k}``/``bn{k}``, ``layer{i}.{j}.downsample.{0,1}``, ``fc``) and compute the same
function with them: 7x7/2 stem conv, BN, ReLU, 3x3/2 max-pool, stride on the blocks' 3x3 conv, global
average pool, linear classifier. Sources built on it only rename their attention modules.
"""

from __future__ import annotations

import re
from abc import abstractmethod
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from attnzoo.convert.reading import strip_data_parallel, tensors_only
from attnzoo.convert.registry import Source, list_sources
from attnzoo.errors import CheckpointError

_BACKBONE_KEY = re.compile(
    r"(conv1\.weight|bn1\.\w+|fc\.(weight|bias)"
    r"|layer[1-4]\.\d+\.(conv[1-3]\.weight|bn[1-3]\.\w+|downsample\.0\.weight|downsample\.1\.\w+))"
)
_BLOCK = re.compile(r"layer([1-4])\.(\d+)\.")
# (block type, blocks per stage) -> depth
_DEPTHS = {
    ("basic", (2, 2, 2, 2)): 18,
    ("basic", (3, 4, 6, 3)): 34,
    ("bottleneck", (3, 4, 6, 3)): 50,
    ("bottleneck", (3, 4, 23, 3)): 101,
    ("bottleneck", (3, 8, 36, 3)): 152,
}


def is_backbone_key(key: str) -> bool:
    """Whether ``key`` is a ResNet stem, block conv/BN, shortcut or classifier tensor (same name in timm)."""
    return _BACKBONE_KEY.fullmatch(key) is not None


def resnet_depth(keys: list[str] | Mapping[str, Any]) -> int | None:
    """ResNet depth (18, 34, 50, 101, 152) that the block names describe, or ``None``."""
    blocks = [0, 0, 0, 0]
    bottleneck = False
    for key in keys:
        found = _BLOCK.match(key)
        if found:
            stage, index = int(found.group(1)), int(found.group(2))
            blocks[stage - 1] = max(blocks[stage - 1], index + 1)
            bottleneck = bottleneck or ".conv3." in key
    return _DEPTHS.get(("bottleneck" if bottleneck else "basic", tuple(blocks)))


def resnet_model_kwargs(weights: Mapping[str, torch.Tensor], source: str) -> dict[str, Any]:
    """``num_classes`` and ``in_chans`` from the classifier and the stem conv."""
    for key in ("fc.weight", "conv1.weight"):
        if key not in weights:
            raise CheckpointError(f"{source} has no {key!r}, so it is not a ResNet checkpoint of this source")
    stem = weights["conv1.weight"]
    if tuple(stem.shape[2:]) != (7, 7):
        raise CheckpointError(
            f"{source} has a {stem.shape[2]}x{stem.shape[3]} stem conv (a CIFAR-style ResNet); only the "
            "ImageNet layout with the 7x7 stem maps onto timm's ResNets"
        )
    return {"num_classes": int(weights["fc.weight"].shape[0]), "in_chans": int(stem.shape[1])}


class ResNetSource(Source):
    """A source whose models are this ResNet layout with one attention module per block.

    Subclasses set ``attention`` (attnzoo's name, e.g. ``"cbam"``) and implement :meth:`attention_weights`;
    backbone tensors keep their names, and ``module.`` prefixes from ``nn.DataParallel`` are dropped.
    """

    attention: str

    def weights_of(self, checkpoint: dict[str, Any], source: str) -> dict[str, torch.Tensor]:
        if isinstance(checkpoint.get("state_dict"), Mapping):
            raise CheckpointError(
                f"{source} is a training checkpoint (entries {', '.join(map(repr, checkpoint))}), not the plain "
                f"state dict {self.name} saves; choose the --from of the code base that wrote it "
                f"(known: {', '.join(list_sources())})"
            )
        return strip_data_parallel(tensors_only(checkpoint, source))

    def model_kwargs(self, weights: Mapping[str, torch.Tensor], source: str) -> dict[str, Any]:
        return resnet_model_kwargs(weights, source)

    def to_attnzoo(
        self, weights: Mapping[str, torch.Tensor], model: nn.Module
    ) -> tuple[dict[str, torch.Tensor], list[str]]:
        target = model.state_dict()
        converted: dict[str, torch.Tensor] = {}
        unknown: list[str] = []
        for key, value in weights.items():
            if is_backbone_key(key):
                converted[key] = value
                continue
            found = _BLOCK.match(key)
            mapped = self.attention_weights(found.group(0), key[found.end() :], value, target) if found else None
            if mapped is None:
                unknown.append(key)
            else:
                converted.update(mapped)
        return converted, unknown

    @abstractmethod
    def attention_weights(
        self, block: str, name: str, value: torch.Tensor, target: Mapping[str, torch.Tensor]
    ) -> dict[str, torch.Tensor] | None:
        """attnzoo tensors for the block's source tensor ``name`` (``block`` is e.g. ``"layer1.0."``),
        or ``None`` if ``name`` is not one of the source's attention tensors. ``target`` is the model's
        own state dict, for shapes."""

    def guess_architecture(self, weights: Mapping[str, torch.Tensor]) -> str | None:
        depth = resnet_depth(weights)
        return f"resnet{depth}_{self.attention}" if depth else None
