"""``senet-pytorch``: checkpoints of moskomule/senet.pytorch's SE-ResNets (github.com/moskomule/senet.pytorch).

Its ``se_resnet{18,34,50,101,152}`` (``senet/se_resnet.py``) are torchvision's ``ResNet`` with
``SEBasicBlock`` / ``SEBottleneck``, which apply ``SELayer(channels, 16)`` (``senet/se_module.py``) after the
residual branch's last BN, before the shortcut add: attnzoo's placement. The published weights are a plain
state dict (``model.load_state_dict(torch.load(...))``). ``SELayer.fc`` is
``Linear(C, C // 16, bias=False) - ReLU - Linear(C // 16, C, bias=False) - Sigmoid``; attnzoo's ``se`` has
1x1 convs with bias, so:

- ``se.fc.0`` / ``se.fc.2`` -> ``se.fc1`` / ``se.fc2``, reshaped, with zero biases (exact: the source
  adds nothing).
- attnzoo rounds the bottleneck up to a multiple of 8 (timm's rule, so timm's ``seresnet*`` weights load);
  where C // 16 is smaller (the 64-channel stage of ResNet-18/34: 4 units, attnzoo 8) the extra hidden
  units get zero weights in and out, so they output ReLU(0) = 0 and add nothing.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from attnzoo.convert.registry import PublishedResult, register_source
from attnzoo.convert.resnet import ResNetSource
from attnzoo.convert.widen import zero_pad

_FC = {"se.fc.0.weight": "se.fc1", "se.fc.2.weight": "se.fc2"}


class SenetPytorch(ResNetSource):
    name = "senet-pytorch"
    title = "moskomule/senet.pytorch (Ryuichiro Hataya)"
    repo_url = "https://github.com/moskomule/senet.pytorch"
    license = "mit"
    tag = "senet_pytorch_in1k"
    attention = "se"
    architectures = {
        f"resnet{depth}_se": f"se_resnet{depth}(num_classes) in senet/se_resnet.py" for depth in (18, 34, 50, 101, 152)
    }
    published = {
        "resnet50_se": (
            PublishedResult(
                checkpoint="seresnet50-60a8950a85b2b.pkl (torch.hub entry in senet/se_resnet.py; the README "
                "links seresnet50-f6e7c9de8bf52b5.pkl)",
                top1=77.06,
                citation="moskomule/senet.pytorch README, 'SE-ResNet50/ImageNet': max. test accuracy (top1), "
                "the best epoch on ImageNet-1k val, trained with imagenet.py --distributed on 8 GPUs",
            ),
        ),
    }
    notes = (
        "SELayer's bias-free Linear layers become the 1x1 convs se.fc1/fc2 with zero biases.",
        "Where attnzoo's bottleneck (rounded up to a multiple of 8, as timm's) is wider than C // 16, the "
        "extra hidden units have zero weights in and out and contribute nothing.",
    )

    def attention_weights(
        self, block: str, name: str, value: torch.Tensor, target: Mapping[str, torch.Tensor]
    ) -> dict[str, torch.Tensor] | None:
        fc = _FC.get(name)
        if fc is None:
            return None
        weight, bias = f"{block}{fc}.weight", f"{block}{fc}.bias"
        value = value[..., None, None] if value.ndim == 2 else value
        if weight not in target:  # a block the chosen architecture lacks: the strict load names it
            return {weight: value, bias: value.new_zeros(value.shape[0])}
        return {weight: zero_pad(value, target[weight].shape), bias: torch.zeros_like(target[bias])}


register_source(SenetPytorch())
