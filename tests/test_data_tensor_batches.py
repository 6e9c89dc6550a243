"""In-memory batches: deterministic per (seed, epoch, step), sharded across ranks like one global batch."""

import torch

from attnzoo.data import TensorBatches


def _batches(world_size=1, rank=0, **kw):
    images = torch.arange(40, dtype=torch.uint8).view(40, 1, 1, 1).expand(40, 1, 6, 6).contiguous()
    labels = torch.arange(40)
    return TensorBatches(images, labels, 4 // world_size, train=True, mean=(0.0,), std=(1.0,), seed=3,
                         rank=rank, world_size=world_size, **kw)


def test_ranks_split_each_global_batch_without_overlap():
    single = [y for _, y in _batches().batches(epoch=1)]
    ranks = [[y for _, y in _batches(2, r).batches(epoch=1)] for r in range(2)]
    assert len(single) == len(ranks[0]) == len(ranks[1]) == 10
    for step, labels in enumerate(single):
        assert torch.equal(torch.cat([ranks[0][step], ranks[1][step]]), labels)


def test_epochs_shuffle_differently_but_reproducibly():
    first = torch.cat([y for _, y in _batches().batches(epoch=0)])
    assert torch.equal(first, torch.cat([y for _, y in _batches().batches(epoch=0)]))
    assert not torch.equal(first, torch.cat([y for _, y in _batches().batches(epoch=1)]))
    assert sorted(first.tolist()) == list(range(40))


def test_resuming_at_a_step_gives_the_same_augmented_batches():
    loader = _batches(crop_padding=2, hflip=0.5)
    full = list(loader.batches(epoch=2))
    resumed = list(loader.batches(epoch=2, start=6))
    for (x1, y1), (x2, y2) in zip(full[6:], resumed, strict=True):
        assert torch.equal(x1, x2) and torch.equal(y1, y2)


def test_crop_with_padding_shifts_content_and_fills_zeros():
    images = torch.full((64, 1, 4, 4), 255, dtype=torch.uint8)
    loader = TensorBatches(images, torch.zeros(64, dtype=torch.long), 64, train=True, mean=(0.0,), std=(1.0,),
                           crop_padding=2)
    x, _ = next(loader.batches())
    assert x.shape == (64, 1, 4, 4)
    assert set(x.unique().tolist()) == {0.0, 1.0}  # some crops reach into the zero padding
    assert (x == 1.0).flatten(1).any(1).all()  # every crop keeps part of the image


def test_evaluation_shards_cover_every_sample_once():
    images, labels = torch.zeros(11, 1, 2, 2, dtype=torch.uint8), torch.arange(11)
    seen = [y for r in range(3) for _, y in TensorBatches(images, labels, 2, train=False, mean=(0.0,), std=(1.0,),
                                                          rank=r, world_size=3).batches()]
    assert sorted(torch.cat(seen).tolist()) == list(range(11))
