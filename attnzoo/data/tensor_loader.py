"""Batches straight from in-memory tensors, augmented a whole batch at a time.

For datasets that fit in memory (Fashion-MNIST is 47 MB as uint8) a DataLoader's per-image transforms and
worker processes cost more than the model on a 2-core machine. Here an epoch is a seeded permutation and
each batch is cropped, flipped and erased as one tensor on the training device. Every random choice is a
function of (seed, epoch, step, rank), so a run resumed mid-epoch sees exactly the batches it would have.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
import torch.nn.functional as F
from timm.data.random_erasing import RandomErasing


def seeded_generator(*key: int, device: torch.device | str = "cpu") -> torch.Generator:
    """A generator whose seed is a stable hash of the integers in ``key``."""
    seed = int(np.random.SeedSequence([k & 0xFFFFFFFF for k in key]).generate_state(1)[0])
    return torch.Generator(device=device).manual_seed(seed)


def step_indices(
    num_samples: int, batch_size: int, *, train: bool, seed: int, epoch: int, rank: int, world_size: int
) -> list[torch.Tensor]:
    """This rank's sample indices for each step of ``epoch``.

    Training shuffles with a generator keyed on (seed, epoch), cuts global batches of
    ``batch_size * world_size`` (dropping the incomplete last one) and gives rank r the r-th slice of each,
    so the processes together see what one process with the global batch would. Evaluation gives each rank
    a strided shard of every sample, with no padding, so summed metrics are exact.
    """
    if train:
        order = torch.randperm(num_samples, generator=seeded_generator(seed, epoch))
        global_batch = batch_size * world_size
        return [
            order[step * global_batch + rank * batch_size: step * global_batch + (rank + 1) * batch_size]
            for step in range(num_samples // global_batch)
        ]
    shard = torch.arange(rank, num_samples, world_size)
    return list(shard.split(batch_size))


def resize_images(images: torch.Tensor, size: int, mode: str) -> torch.Tensor:
    """uint8 N x C x H x W images at ``size`` x ``size``: zero-padded and centred (``"pad"``), or bilinear.

    Done once on the whole in-memory set, so that every epoch reads images already at the model's size.
    """
    h = images.shape[-1]
    if size == h:
        return images
    if mode == "pad":
        if size < h:
            raise ValueError(f"cannot pad {h} px images to {size} px; resize with mode 'bilinear' to shrink")
        lo = (size - h) // 2
        return F.pad(images, (lo, size - h - lo, lo, size - h - lo))
    out = F.interpolate(images.float(), size=(size, size), mode="bilinear", align_corners=False)
    return out.round_().clamp_(0, 255).to(torch.uint8)


class TensorBatches:
    """Normalised, augmented float batches of ``images`` (uint8, N x C x H x W) and ``labels``.

    Training (``train=True``) splits the global batch ``batch_size * world_size`` across ranks and drops
    the last incomplete one, so every process takes the same number of steps; evaluation gives each rank a
    disjoint strided shard of all samples.
    """

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        batch_size: int,
        *,
        train: bool,
        mean: tuple[float, ...],
        std: tuple[float, ...],
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        crop_padding: int = 0,
        hflip: float = 0.0,
        re_prob: float = 0.0,
        device: torch.device | str = "cpu",
    ) -> None:
        self.images, self.labels = images.to(device), labels.to(device)
        self.batch_size, self.train, self.seed = batch_size, train, seed
        self.rank, self.world_size, self.device = rank, world_size, torch.device(device)
        self.crop_padding, self.hflip = crop_padding, hflip
        self.mean = torch.tensor(mean, device=device).view(1, -1, 1, 1)
        self.std = torch.tensor(std, device=device).view(1, -1, 1, 1)
        self.erase = RandomErasing(re_prob, mode="pixel", device=str(self.device)) if re_prob > 0 else None

    @property
    def num_samples(self) -> int:
        return len(self.labels)

    def _plan(self, epoch: int) -> list[torch.Tensor]:
        return step_indices(self.num_samples, self.batch_size, train=self.train, seed=self.seed, epoch=epoch,
                            rank=self.rank, world_size=self.world_size)

    def __len__(self) -> int:
        return len(self._plan(0))

    def batches(self, epoch: int = 0, start: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Batches of ``epoch`` from step ``start`` on (``start > 0`` when resuming mid-epoch)."""
        for step, idx in enumerate(self._plan(epoch)[start:], start):
            idx = idx.to(self.device)
            images, labels = self.images[idx], self.labels[idx]
            if self.train:
                yield self._augment(images, epoch, step), labels
            else:
                yield self._normalise(images.float().div_(255)), labels

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        return self.batches()

    def _normalise(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std

    def _augment(self, images: torch.Tensor, epoch: int, step: int) -> torch.Tensor:
        gen = seeded_generator(self.seed, epoch, step, self.rank, device=self.device)
        x = images.float().div_(255)
        n, c, h, w = x.shape
        if self.crop_padding:
            p = self.crop_padding
            padded = F.pad(x, (p, p, p, p))
            oy, ox = (torch.randint(0, 2 * p + 1, (n, 1), generator=gen, device=self.device) for _ in range(2))
            rows = (oy + torch.arange(h, device=self.device))[:, None, :, None]
            cols = (ox + torch.arange(w, device=self.device))[:, None, None, :]
            batch = torch.arange(n, device=self.device)[:, None, None, None]
            chans = torch.arange(c, device=self.device)[None, :, None, None]
            x = padded[batch, chans, rows, cols]
        if self.hflip:
            flip = torch.rand(n, generator=gen, device=self.device) < self.hflip
            x = torch.where(flip[:, None, None, None], x.flip(3), x)
        x = self._normalise(x)
        if self.erase is not None:
            x = self.erase(x)
        return x.contiguous()
