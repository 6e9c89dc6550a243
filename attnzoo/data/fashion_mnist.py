"""Fashion-MNIST from the original IDX files (Debian's ``dataset-fashion-mnist`` installs them), falling back
to torchvision's downloader when asked to.

Splits: the 60,000 official training images are divided once, by a seed fixed here, into ``val`` (5,000
images, 500 per class) and ``train`` (the other 55,000); ``trainval`` is all 60,000 and ``test`` the 10,000
official test images. Selection (best checkpoint, recipe choices) uses ``val``; ``test`` is only reported.
"""

from __future__ import annotations

import gzip
import math
import os
import zlib
from pathlib import Path

import numpy as np
import torch

from attnzoo.errors import DataFileError, DatasetNotFoundError

FASHION_MNIST_ROOT = Path("/usr/share/datasets/fashion-mnist")
MEAN, STD = (0.2860,), (0.3530,)
NUM_CLASSES = 10
MAX_IDX_BYTES = 1 << 31  # the train images are 47 MB
_FILES = {
    "trainval": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
SPLITS = ("train", "val", "trainval", "test")
VAL_FRACTION = 1 / 12  # of each class: 500 of the 6,000 training images per class
VAL_SEED = 20260101  # fixed forever: changing it changes every number selected on val


def stratified_subset(labels: torch.Tensor, fraction: float, seed: int) -> torch.Tensor:
    """Sorted indices of ``round(fraction * n_c)`` images of each class ``c`` (at least one of any class with
    two or more), drawn by ``seed``: the same indices on every machine and every run."""
    gen = torch.Generator().manual_seed(seed)
    chosen = []
    for label in torch.unique(labels).tolist():
        members = torch.nonzero(labels == label).flatten()
        take = max(1, round(fraction * len(members))) if len(members) > 1 else 0
        chosen.append(members[torch.randperm(len(members), generator=gen)[:take]])
    return torch.cat(chosen).sort().values


def validation_mask(labels: torch.Tensor) -> torch.Tensor:
    """True for the ``val`` images among the official training images (one twelfth of each class)."""
    mask = torch.zeros(len(labels), dtype=torch.bool)
    mask[stratified_subset(labels, VAL_FRACTION, VAL_SEED)] = True
    return mask


def read_idx(path: str | os.PathLike, max_bytes: int = MAX_IDX_BYTES) -> np.ndarray:
    """An IDX file (gzipped or not) as a uint8 array of the shape its header declares.

    The header is read first and the body never beyond what it declares (at most ``max_bytes``), so a
    gzip bomb cannot exhaust memory; a truncated, CRC-broken or non-gzip ``.gz`` is a :class:`DataFileError`.
    """
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            head = f.read(4)
            if len(head) < 4 or head[:2] != b"\x00\x00" or head[2] != 0x08 or not 1 <= head[3] <= 4:
                raise DataFileError(f"{path} is not a uint8 IDX file (bad magic {head.hex()}); reinstall the dataset")
            dims = f.read(4 * head[3])
            shape = tuple(int.from_bytes(dims[i: i + 4], "big") for i in range(0, len(dims), 4))
            size = math.prod(shape)
            if len(shape) != head[3] or size > max_bytes:
                raise DataFileError(f"{path} has an IDX header promising {size} bytes (shape {shape}), over the "
                                    f"{max_bytes}-byte limit or cut short; the file is damaged, reinstall the dataset")
            body = f.read(size + 1)  # one byte more than promised reveals trailing data
    except (OSError, EOFError, zlib.error) as err:
        kind = "gzip " if opener is gzip.open else ""
        raise DataFileError(f"{path} is not a readable {kind}IDX file ({err}); the file is damaged or truncated, "
                            "reinstall the dataset") from None
    if len(body) != size:
        raise DataFileError(f"{path} holds {len(body)} data bytes, its header promises {size}; the file is "
                            "truncated or has trailing data, reinstall the dataset")
    return np.frombuffer(body, dtype=np.uint8).reshape(shape)


def _find(root: Path, stem: str) -> Path | None:
    for candidate in (root / f"{stem}.gz", root / stem, root / "FashionMNIST" / "raw" / stem):
        if candidate.is_file():
            return candidate
    return None


def load_fashion_mnist(
    split: str, root: str | os.PathLike | None = None, download: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """``split`` (one of :data:`SPLITS`) as uint8 images (N, 28, 28) and int64 labels (N,).

    Looks in ``root`` (default ``$ATTNZOO_FASHION_MNIST`` or the Debian package's folder); with
    ``download`` it lets torchvision fetch the files into ``root`` when they are not there.
    """
    if split not in SPLITS:
        raise DatasetNotFoundError(f"Fashion-MNIST has no split {split!r}; use one of {', '.join(SPLITS)}")
    if split in ("train", "val"):
        images, labels = load_fashion_mnist("trainval", root, download)
        keep = validation_mask(labels) == (split == "val")
        return images[keep], labels[keep]
    root = Path(root or os.environ.get("ATTNZOO_FASHION_MNIST", FASHION_MNIST_ROOT))
    paths = [_find(root, stem) for stem in _FILES[split]]
    if None in paths and download:
        import torchvision

        torchvision.datasets.FashionMNIST(str(root), train=split == "trainval", download=True)
        paths = [_find(root, stem) for stem in _FILES[split]]
    if None in paths:
        raise DatasetNotFoundError(
            f"Fashion-MNIST {split} files not found in {root}; run `apt-get install dataset-fashion-mnist`, "
            "or set data.root to a folder holding the IDX files, or set data.download=true"
        )
    images, labels = (torch.from_numpy(read_idx(p).copy()) for p in paths)
    if images.dim() != 3 or tuple(images.shape[1:]) != (28, 28) or labels.dim() != 1:
        raise DataFileError(f"Fashion-MNIST {split}: {paths[0]} holds images of shape {tuple(images.shape[1:])} and "
                            f"{paths[1]} labels of shape {tuple(labels.shape[1:])}; expected 28x28 images and one "
                            "label each, reinstall the dataset")
    if len(images) != len(labels):
        raise DataFileError(f"Fashion-MNIST {split}: {len(images)} images but {len(labels)} labels in {root}")
    if len(labels) and int(labels.max()) >= NUM_CLASSES:
        raise DataFileError(f"Fashion-MNIST {split}: {paths[1]} has label {int(labels.max())}; labels are "
                            f"0..{NUM_CLASSES - 1}, so the file is damaged, reinstall the dataset")
    return images, labels.long()
