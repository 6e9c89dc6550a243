"""Images to visualise: a class-balanced handful from the Fashion-MNIST test split, normalised for the model.

Reads the IDX files installed by the ``dataset-fashion-mnist`` package (or ``$ATTNZOO_FASHION_MNIST``);
nothing is downloaded.
"""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from attnzoo.errors import DatasetNotFoundError
from attnzoo.models.registry import FMNIST_MEAN, FMNIST_STD

FASHION_MNIST_ROOT = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)


def _read_idx(path: Path) -> np.ndarray:
    with gzip.open(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def fashion_mnist_test(root: str | os.PathLike | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The 10,000 test images (N, 28, 28) uint8 and their labels (N,)."""
    root = Path(root or os.environ.get("ATTNZOO_FASHION_MNIST", FASHION_MNIST_ROOT))
    files = [root / "t10k-images-idx3-ubyte.gz", root / "t10k-labels-idx1-ubyte.gz"]
    missing = [f.name for f in files if not f.is_file()]
    if missing:
        raise DatasetNotFoundError(
            f"Fashion-MNIST test files {', '.join(missing)} not found in {root}; install the "
            "dataset-fashion-mnist package or set ATTNZOO_FASHION_MNIST to the folder holding them"
        )
    images, labels = (torch.from_numpy(_read_idx(f).copy()) for f in files)
    return images, labels.long()


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
    x = (x - FMNIST_MEAN[0]) / FMNIST_STD[0]
    return x.expand(-1, in_chans, -1, -1).contiguous()
