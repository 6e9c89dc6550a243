"""``coord-attention``: the Coordinate Attention authors' MobileNetV2 (github.com/houqb/CoordAttention).

Their ``mbv2_ca(num_classes, width_mult)`` (``mbv2_ca.py``) is MobileNetV2 exactly as timm's
``mobilenetv2_100`` / ``mobilenetv2_140`` build it (stem 3x3/2 conv-BN-ReLU6, the same seven stages, widths
rounded to multiples of 8 the same way, 1x1 conv to 1280 (x1.4: 1792) -BN-ReLU6, global average pool,
dropout, linear), with their ``CoordAtt`` after the depthwise conv's BN-ReLU6 of every inverted residual
that expands (not in the first, depthwise-separable block). ``CoordAtt(C, C)`` is timm's ``CoordAttn``
(attnzoo's ``coord``) with three differences, each absorbed exactly:

- its bottleneck is ``max(8, C // 32)`` wide, block by block; attnzoo's ``coord`` takes one width for all
  blocks, so the converted model uses the widest (30 at x1.0) and the narrower blocks' extra hidden units
  get zero weights in and out and a zero BN affine: they output zero and add nothing;
- its three 1x1 convs have biases: the converted model is built with ``attn_kwargs={"bias": True, ...}``;
- it is placed in stages 2-7 only: ``stages=[2, 3, 4, 5, 6, 7]``.

``h_swish`` is ``x * relu6(x + 3) / 6``, torch's ``Hardswish``, which timm's ``CoordAttn`` uses.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from attnzoo.convert.reading import strip_data_parallel, tensors_only
from attnzoo.convert.registry import PublishedResult, Source, register_source
from attnzoo.convert.widen import zero_pad
from attnzoo.errors import CheckpointError

BLOCKS_PER_STAGE = (1, 2, 3, 4, 3, 3, 1)  # MobileNetV2's inverted residual settings, timm's and theirs
CA_STAGES = [2, 3, 4, 5, 6, 7]  # 1-based: every stage but the first (expansion 1, no CA)
STEM_WIDTHS = {32: "mobilenetv2_100_coord", 48: "mobilenetv2_140_coord"}  # width_mult 1.0 / 1.4

# their Sequential indices inside ``features.N.conv`` -> timm's block attributes
_DEPTHWISE_SEPARABLE = {"0": "conv_dw", "1": "bn1", "3": "conv_pw", "4": "bn2"}
_INVERTED_RESIDUAL = {"0": "conv_pw", "1": "bn1", "3": "conv_dw", "4": "bn2", "7": "conv_pwl", "8": "bn3"}
# CoordAtt's tensors: mbv2_ca.py names the gate convs conv2 (height) / conv3 (width), coordatt.py conv_h / conv_w
_CA = {"conv1": "conv1", "bn1": "bn1", "conv2": "conv_h", "conv3": "conv_w", "conv_h": "conv_h", "conv_w": "conv_w"}
_FEATURE = re.compile(r"features\.(\d+)\.(.+)")
_BLOCK_LAYER = re.compile(r"conv\.(\d+)\.(.+)")
_CA_TENSOR = re.compile(r"conv\.6\.(\w+)\.(\w+)")
_CA_WIDTH = re.compile(r"features\.\d+\.conv\.6\.conv1\.weight")  # (bottleneck, C, 1, 1)


def _block_names() -> list[str]:
    """timm's ``blocks.S.J`` for their ``features.1`` ... ``features.17``, in order."""
    return [f"blocks.{stage}.{j}" for stage, count in enumerate(BLOCKS_PER_STAGE) for j in range(count)]


class CoordAttentionMbv2(Source):
    name = "coord-attention"
    title = "the Coordinate Attention authors' code (Hou, Zhou, Feng)"
    repo_url = "https://github.com/houqb/CoordAttention"
    license = "mit"
    tag = "official_in1k"
    architectures = {
        "mobilenetv2_100_coord": "mbv2_ca(num_classes=num_classes) in mbv2_ca.py",
        "mobilenetv2_140_coord": "mbv2_ca(num_classes=num_classes, width_mult=1.4) in mbv2_ca.py",
    }
    published = {
        "mobilenetv2_100_coord": (
            PublishedResult(
                checkpoint="the released MobileNetV2 + CA model (README 'link')",
                top1=74.3,
                citation="houqb/CoordAttention README, 'Numerical results on ImageNet' (MobileNetV2 + CA, "
                "3.95M params), the code of Hou et al., Coordinate Attention for Efficient Mobile Network "
                "Design, CVPR 2021",
            ),
        ),
    }
    notes = (
        "The model is attnzoo's architecture with coord attention in stages 2-7 only (the authors put none in "
        "the first, depthwise-separable block) and with biases in its 1x1 convs, as the authors' CoordAtt: "
        "config.json records stages and attn_kwargs, and the loading calls below pass them.",
        "The authors' bottleneck is max(8, C // 32) wide per block; attnzoo's coord has one width for every "
        "block, the widest of them. In narrower blocks the extra hidden units have zero weights in and out "
        "and a zero BN affine, so they output zero and contribute nothing.",
        "mbv2_ca.py's conv2 / conv3 (coordatt.py's conv_h / conv_w) gate the height / width: attnzoo's "
        "conv_h / conv_w.",
    )

    def weights_of(self, checkpoint: dict[str, Any], source: str) -> dict[str, torch.Tensor]:
        if isinstance(checkpoint.get("state_dict"), Mapping):  # a training script's checkpoint
            return strip_data_parallel(tensors_only(checkpoint["state_dict"], f"{source} ['state_dict']"))
        return strip_data_parallel(tensors_only(checkpoint, source))

    def model_kwargs(self, weights: Mapping[str, torch.Tensor], source: str) -> dict[str, Any]:
        for key in ("features.0.0.weight", "classifier.1.weight"):
            if key not in weights:
                raise CheckpointError(f"{source} has no {key!r}, so it is not a checkpoint of mbv2_ca.py's MBV2_CA")
        widths = [v.shape[0] for k, v in weights.items() if _CA_WIDTH.fullmatch(k)]
        if not widths:
            raise CheckpointError(f"{source} has no CoordAtt tensors (features.N.conv.6.conv1.weight); it is a "
                                  "MobileNetV2 without coordinate attention")
        return {
            "num_classes": int(weights["classifier.1.weight"].shape[0]),
            "in_chans": int(weights["features.0.0.weight"].shape[1]),
            "stages": CA_STAGES,
            "attn_kwargs": {"rd_channels": int(max(widths)), "bias": True},
        }

    def to_attnzoo(
        self, weights: Mapping[str, torch.Tensor], model: nn.Module
    ) -> tuple[dict[str, torch.Tensor], list[str]]:
        target = model.state_dict()
        blocks = _block_names()
        converted: dict[str, torch.Tensor] = {}
        unknown: list[str] = []
        for key, value in weights.items():
            name = self._timm_name(key, blocks)
            if name is None:
                unknown.append(key)
            elif name in target and ".se." in name:
                fill = 1.0 if name.endswith("running_var") else 0.0
                converted[name] = zero_pad(value, target[name].shape, fill)
            else:
                converted[name] = value
        return converted, unknown

    @staticmethod
    def _timm_name(key: str, blocks: list[str]) -> str | None:
        """timm's name for their tensor ``key``, or ``None`` if it is not one of MBV2_CA's."""
        top = {"features.0.0.weight": "conv_stem.weight", "conv.0.weight": "conv_head.weight",
               "classifier.1.weight": "classifier.weight", "classifier.1.bias": "classifier.bias"}
        if key in top:
            return top[key]
        for prefix, bn in (("features.0.1.", "bn1."), ("conv.1.", "bn2.")):
            if key.startswith(prefix):
                return bn + key[len(prefix):]
        found = _FEATURE.fullmatch(key)
        if not found or not 1 <= int(found.group(1)) <= len(blocks):
            return None
        block, rest = blocks[int(found.group(1)) - 1], found.group(2)
        attention = _CA_TENSOR.fullmatch(rest)
        if attention and block != blocks[0]:
            module = _CA.get(attention.group(1))
            return f"{block}.se.{module}.{attention.group(2)}" if module else None
        layer = _BLOCK_LAYER.fullmatch(rest)
        layers = _DEPTHWISE_SEPARABLE if block == blocks[0] else _INVERTED_RESIDUAL
        if layer and layer.group(1) in layers:
            return f"{block}.{layers[layer.group(1)]}.{layer.group(2)}"
        return None

    def guess_architecture(self, weights: Mapping[str, torch.Tensor]) -> str | None:
        stem = weights.get("features.0.0.weight")
        return STEM_WIDTHS.get(int(stem.shape[0])) if stem is not None else None


register_source(CoordAttentionMbv2())
