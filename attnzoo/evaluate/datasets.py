"""Evaluation datasets, transformed the way the model being evaluated expects."""

from __future__ import annotations

from functools import partial
from pathlib import Path

from PIL import Image
from timm.data import create_transform, resolve_data_config
from torch import nn
from torch.utils.data import Dataset
from torchvision.datasets import ImageFolder

from attnzoo.errors import DatasetNotFoundError


def eval_transform(model: nn.Module, input_size: tuple[int, int, int]):
    """timm's eval transform from the model's pretrained config (resize, centre crop, normalise).

    When the model's channel count differs from its config's (a 1-channel model built from an ImageNet
    config), mean and std are averaged over channels, as timm averages the stem weights.
    """
    cfg = resolve_data_config({"input_size": input_size}, model=model)
    in_chans = input_size[0]
    for key in ("mean", "std"):
        if len(cfg[key]) != in_chans:
            cfg[key] = (sum(cfg[key]) / len(cfg[key]),) * in_chans
    return create_transform(**cfg, is_training=False)


def _open_image(path: str, mode: str) -> Image.Image:
    with Image.open(path) as image:
        return image.convert(mode)


def open_dataset(spec: str, model: nn.Module, input_size: tuple[int, int, int]) -> Dataset:
    """The evaluation split named by ``spec`` (``fashion-mnist`` or an image folder); has ``.classes``."""
    if spec == "fashion-mnist":
        return _fashion_mnist(model, input_size)
    root = Path(spec)
    if not root.is_dir():
        raise DatasetNotFoundError(
            f"dataset {spec!r} is neither 'fashion-mnist' nor a folder; pass an image folder with one "
            "subfolder per class, or --no-data for cost only"
        )
    mode = "L" if input_size[0] == 1 else "RGB"
    try:
        return ImageFolder(root, transform=eval_transform(model, input_size),
                           loader=partial(_open_image, mode=mode))
    except FileNotFoundError as err:
        raise DatasetNotFoundError(f"no images under {root}: {err}; use one subfolder per class") from None
