"""Small-input stem surgery: keep resolution in the stem for 28-64 px images.

ImageNet stems downsample 4x (ResNet: 7x7/2 conv + max-pool) or 2x (EfficientNet family: 3x3/2 conv)
before the first stage, which leaves a 28x28 image with a 7x7 map at stage 1 and 1x1 at the end.
For ResNets the stem becomes a 3x3 stride-1 (or 2) conv without max-pool (as CIFAR ResNets do; a deep stem
keeps its convs, unstrided); for the
EfficientNet family the stem conv's stride becomes 1 (or the stride asked for).
"""

from __future__ import annotations

from timm.layers import create_conv2d
from torch import nn

from attnzoo.errors import UnsupportedArchitectureError
from attnzoo.surgery.record import record_surgery


def adapt_small_input(model: nn.Module, stride: int = 1) -> nn.Module:
    """Rewrite ``model``'s stem in place for small images, record it, and return the model.

    ``stride=2`` keeps one 2x downsampling in the stem: a quarter of the compute of stride 1, which is
    what makes ResNets on 28 px images affordable on a CPU.
    """
    conv1 = getattr(model, "conv1", None)
    if isinstance(conv1, nn.Conv2d) and hasattr(model, "maxpool"):
        model.conv1 = nn.Conv2d(
            conv1.in_channels, conv1.out_channels, kernel_size=3, stride=stride, padding=1, bias=False,
            **_factory_kwargs(conv1),
        )
        model.maxpool = nn.Identity()
    elif isinstance(conv1, nn.Sequential) and hasattr(model, "maxpool"):
        conv1[0].stride = (stride, stride)  # deep stems (resnet*d): three 3x3 convs, the first strided
        model.maxpool = nn.Identity()
    elif isinstance(getattr(model, "conv_stem", None), nn.Conv2d):
        old = model.conv_stem
        model.conv_stem = create_conv2d(
            old.in_channels, old.out_channels, old.kernel_size[0], stride=stride, padding="", **_factory_kwargs(old)
        )
    else:
        raise UnsupportedArchitectureError(
            f"small_input: {type(model).__name__} has neither a ResNet stem (conv1 + maxpool) nor an "
            "EfficientNet-family stem (conv_stem); use small_input=False or upsample the images"
        )
    record_surgery(model, {"op": "small_input", "stride": stride})
    return model


def _factory_kwargs(old: nn.Module) -> dict:
    # the new stem conv lives where the old one did (e.g. the meta device of create_model(device="meta"))
    return dict(device=old.weight.device, dtype=old.weight.dtype)
