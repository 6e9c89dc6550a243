"""Images to visualise: a class-balanced handful from the Fashion-MNIST test split, normalised for the model."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from attnzoo.data.fashion_mnist import MEAN, STD, load_fashion_mnist

FASHION_MNIST_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)


def fashion_mnist_test() -> tuple[torch.Tensor, torch.Tensor]:
    """The 10,000 test images (N, 28, 28) uint8 and their labels (N,), from the installed IDX files."""
    return load_fashion_mnist("test")


def balanced_indices(labels: torch.Tensor, count: int) -> torch.Tensor:
    """``count`` indices taking the classes in turn (first unused image of each), so a few images show many."""
    per_class = [torch.nonzero(labels == c).flatten() for c in labels.unique().tolist()]
    order = [idx[i] for i in range(max(len(idx) for idx in per_class)) for idx in per_class if i < len(idx)]
    return torch.stack(order[:count])


def prepare(images: torch.Tensor, in_chans: int = 1, img_size: int = 28, resize: str = "pad") -> torch.Tensor:
    """uint8 (N, H, W) grey images -> normalised float (N, in_chans, img_size, img_size) model inputs.

    ``resize`` is how training brought the images to ``img_size`` (a recipe's ``data.resize``): ``pad``
    centres them on black, ``bilinear`` scales them.
    """
    x = images.float().div(255).unsqueeze(1)
    side = x.shape[-1]
    if resize == "pad" and img_size >= side:
        low = (img_size - side) // 2
        x = F.pad(x, (low, img_size - side - low, low, img_size - side - low))
    elif resize in ("pad", "bilinear"):
        x = F.interpolate(x, size=(img_size, img_size), mode="bilinear", align_corners=False)
    else:
        raise ValueError(f"resize {resize!r} is not 'pad' or 'bilinear'")
    x = (x - MEAN[0]) / STD[0]
    return x.expand(-1, in_chans, -1, -1).contiguous()
