"""Evaluation data, prepared the way the model being evaluated expects."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import torch
from PIL import Image
from timm.data import create_transform, resolve_data_config
from torch import nn
from torch.utils.data import DataLoader
from torchvision.datasets import ImageFolder

from attnzoo.data import TensorBatches, fashion_mnist, resize_images
from attnzoo.errors import DatasetNotFoundError


@dataclass(frozen=True)
class EvalData:
    """Batches of (images, labels) in a fixed order, and the number of classes of the dataset."""

    batches: Iterable[tuple[torch.Tensor, torch.Tensor]]
    num_classes: int
    name: str


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


def fashion_mnist_test(input_size: tuple[int, int, int], batch_size: int) -> EvalData:
    """The 10 000 test images, prepared exactly as training validates: zero-padded to the image size
    (centred) and normalised with Fashion-MNIST's mean and std; grey repeated for 3-channel models."""
    in_chans, size, _ = input_size
    images, labels = fashion_mnist.load_fashion_mnist("test")
    images = resize_images(images.unsqueeze(1), size, "pad").expand(-1, in_chans, -1, -1)
    batches = TensorBatches(images, labels, batch_size, train=False, mean=fashion_mnist.MEAN * in_chans,
                            std=fashion_mnist.STD * in_chans)
    return EvalData(batches, num_classes=10, name="fashion-mnist")


def image_folder(root: Path, model: nn.Module, input_size: tuple[int, int, int], batch_size: int,
                 workers: int = 0) -> EvalData:
    """An image folder with one subfolder per class, through the model's own eval transform."""
    mode = "L" if input_size[0] == 1 else "RGB"
    try:
        dataset = ImageFolder(root, transform=eval_transform(model, input_size), loader=partial(_open_image, mode=mode))
    except FileNotFoundError as err:
        raise DatasetNotFoundError(f"no images under {root}: {err}; use one subfolder per class") from None
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=workers)
    return EvalData(loader, num_classes=len(dataset.classes), name=str(root))


def open_dataset(spec: str, model: nn.Module, input_size: tuple[int, int, int], batch_size: int = 32,
                 workers: int = 0) -> EvalData:
    """The evaluation split named by ``spec``: ``fashion-mnist`` (test split) or an image folder."""
    if spec == "fashion-mnist":
        return fashion_mnist_test(input_size, batch_size)
    root = Path(spec)
    if not root.is_dir():
        raise DatasetNotFoundError(
            f"dataset {spec!r} is neither 'fashion-mnist' nor a folder; pass an image folder with one "
            "subfolder per class, or --no-data for cost only"
        )
    return image_folder(root, model, input_size, batch_size, workers)
