"""From a recipe's ``data``/``aug`` sections to train and validation batch sources."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD, create_dataset, create_transform

from attnzoo.data import fashion_mnist
from attnzoo.data.tensor_loader import TensorBatches, resize_images, seeded_generator, step_indices
from attnzoo.errors import DatasetNotFoundError, RecipeError


class Batches(Protocol):
    """What the trainer iterates: ``len()`` steps per epoch, resumable at any step."""

    def __len__(self) -> int: ...

    def batches(self, epoch: int = 0, start: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]: ...


@dataclass
class DataBundle:
    """Train and validation batches plus what the model needs to know about the data."""

    train: Batches
    val: Batches
    num_classes: int
    in_chans: int
    img_size: int
    num_train: int
    num_val: int
    test: Batches | None = None  # the held-out split reported at the end, if the recipe names one
    num_test: int = 0


class LoaderBatches:
    """A ``torch.utils.data`` dataset served through a DataLoader per epoch, sharded like
    :class:`TensorBatches` (same step plan, so resuming skips the finished steps without loading them)."""

    def __init__(self, dataset: Any, batch_size: int, *, train: bool, seed: int, rank: int, world_size: int,
                 workers: int) -> None:
        self.dataset, self.batch_size, self.train = dataset, batch_size, train
        self.seed, self.rank, self.world_size, self.workers = seed, rank, world_size, workers

    def _plan(self, epoch: int) -> list[torch.Tensor]:
        return step_indices(len(self.dataset), self.batch_size, train=self.train, seed=self.seed, epoch=epoch,
                            rank=self.rank, world_size=self.world_size)

    def __len__(self) -> int:
        return len(self._plan(0))

    def batches(self, epoch: int = 0, start: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        plan = [idx.tolist() for idx in self._plan(epoch)[start:]]
        loader = torch.utils.data.DataLoader(
            self.dataset, batch_sampler=plan, num_workers=self.workers, persistent_workers=False,
            generator=seeded_generator(self.seed, epoch, start, self.rank),
        )
        yield from loader


def _fashion_mnist(recipe: Any, per_rank: int, eval_per_rank: int, rank: int, world: int,
                   device: torch.device) -> DataBundle:
    data, aug = recipe.data, recipe.aug
    size = data.img_size or 28
    if data.resize == "pad" and size < 28:
        raise RecipeError(f"recipe field data.img_size: {size} is smaller than the images (28); "
                          "use data.resize=bilinear to shrink")
    splits = {}
    for split in filter(None, (data.train_split, data.val_split, data.test_split)):
        images, labels = fashion_mnist.load_fashion_mnist(split, data.root, data.download)
        splits[split] = (resize_images(images.unsqueeze(1), size, data.resize), labels)
    common = dict(mean=fashion_mnist.MEAN, std=fashion_mnist.STD, seed=recipe.seed, rank=rank, world_size=world,
                  device=device)
    images, labels = splits[data.train_split]
    if data.train_subset is not None:
        images, labels = _subset(images, labels, data.train_subset)
    train = TensorBatches(images, labels, per_rank, train=True, crop_padding=aug.crop_padding,
                          hflip=aug.hflip, re_prob=aug.re_prob, **common)
    val = TensorBatches(*splits[data.val_split], eval_per_rank, train=False, **common)
    test = (TensorBatches(*splits[data.test_split], eval_per_rank, train=False, **common)
            if data.test_split else None)
    return DataBundle(train, val, num_classes=10, in_chans=1, img_size=size, num_train=train.num_samples,
                      num_val=val.num_samples, test=test, num_test=test.num_samples if test else 0)


def _subset(images: torch.Tensor, labels: torch.Tensor, count: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A fixed stratified subset of about ``count`` images (the same for every seed, so that runs on a
    short track differ only by their seed's initialisation and batch order)."""
    if count > len(labels):
        raise RecipeError(f"recipe field data.train_subset: {count} exceeds the {len(labels)} training images; "
                          "lower it or set null")
    keep = fashion_mnist.stratified_subset(labels, count / len(labels), fashion_mnist.VAL_SEED + 1)
    return images[keep], labels[keep]


def _num_classes(dataset: Any) -> int | None:
    reader = getattr(dataset, "reader", None)
    for source in (getattr(reader, "class_to_idx", None), getattr(dataset, "classes", None),
                   getattr(getattr(dataset, "parser", None), "class_to_idx", None)):
        if source:
            return len(source)
    return None


def _timm_dataset(recipe: Any, per_rank: int, eval_per_rank: int, rank: int, world: int) -> DataBundle:
    data, aug = recipe.data, recipe.aug
    name = "" if data.dataset == "folder" else data.dataset
    size = data.img_size or 224
    in_chans = recipe.model.in_chans or 3
    mean, std = IMAGENET_DEFAULT_MEAN[:in_chans], IMAGENET_DEFAULT_STD[:in_chans]
    sets = {}
    for split, train in ((data.train_split, True), (data.val_split, False), (data.test_split, None)):
        if split is None:
            continue
        try:
            dataset = create_dataset(name, root=data.root, split=split, is_training=bool(train), download=data.download,
                                     batch_size=per_rank, input_img_mode="L" if in_chans == 1 else "RGB")
        except (FileNotFoundError, RuntimeError, AssertionError) as err:
            raise DatasetNotFoundError(f"dataset {data.dataset!r} split {split!r} under {data.root}: {err}; "
                                       "check data.root and data.train_split/val_split") from None
        dataset.transform = create_transform(
            size, is_training=bool(train), scale=tuple(aug.scale), hflip=aug.hflip, auto_augment=aug.auto_augment,
            color_jitter=aug.color_jitter or 0.0, re_prob=aug.re_prob if train else 0.0, mean=mean, std=std,
        )
        sets[train] = dataset
    num_classes = recipe.model.num_classes or _num_classes(sets[True])
    if num_classes is None:
        raise RecipeError(f"recipe field model.num_classes: dataset {data.dataset!r} does not say how many "
                          "classes it has; set model.num_classes")
    common = dict(seed=recipe.seed, rank=rank, world_size=world, workers=data.workers)
    test = sets.get(None)
    return DataBundle(LoaderBatches(sets[True], per_rank, train=True, **common),
                      LoaderBatches(sets[False], eval_per_rank, train=False, **common),
                      num_classes=num_classes, in_chans=in_chans, img_size=size,
                      num_train=len(sets[True]), num_val=len(sets[False]),
                      test=LoaderBatches(test, eval_per_rank, train=False, **common) if test is not None else None,
                      num_test=len(test) if test is not None else 0)


def build_data(recipe: Any, rank: int = 0, world_size: int = 1, device: torch.device | str = "cpu") -> DataBundle:
    """The recipe's datasets, split for process ``rank`` of ``world_size``.

    ``recipe.batch_size`` is the global batch; each process gets an equal share (an error if it does not
    divide).
    """
    if recipe.batch_size % world_size:
        raise RecipeError(f"recipe field batch_size: {recipe.batch_size} does not split evenly across "
                          f"{world_size} processes; use a multiple of {world_size}")
    per_rank = recipe.batch_size // world_size
    eval_per_rank = recipe.eval_batch_size or 2 * per_rank
    if recipe.data.dataset == "fashion-mnist":
        return _fashion_mnist(recipe, per_rank, eval_per_rank, rank, world_size, torch.device(device))
    if recipe.data.root and not Path(recipe.data.root).exists() and not recipe.data.download:
        raise DatasetNotFoundError(f"data.root {recipe.data.root} does not exist")
    return _timm_dataset(recipe, per_rank, eval_per_rank, rank, world_size)
