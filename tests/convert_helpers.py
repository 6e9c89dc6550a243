"""Shared pieces of the converter tests: source models with weights that make attention matter, and the
comparison of a converted model's logits with the source's."""

from __future__ import annotations

import copy

import torch
from torch import nn

from sources import fill_random_

IMAGE = (3, 224, 224)  # the CBAM authors' AvgPool2d(7) needs a 7x7 last feature map


def images(n: int = 2, seed: int = 1) -> torch.Tensor:
    return torch.randn(n, *IMAGE, generator=torch.Generator().manual_seed(seed))


def randomized(model: nn.Module, seed: int = 0) -> nn.Module:
    """``model`` with random non-zero BN affines and statistics measured on a random batch, in eval mode."""
    return fill_random_(model, seed=seed, batch=images(4, seed=seed + 100))


@torch.no_grad()
def logits(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    out = model.eval()(x)
    assert torch.isfinite(out).all()
    return out


def assert_same_logits(source: nn.Module, converted: nn.Module, x: torch.Tensor) -> None:
    """Equal logits to 1e-5, on logits of order one (so the bound is not met by vanishing outputs).

    Both run in float64, so that what is left is the mapping, not float32 rounding through the depth
    (which alone reaches ~2e-5 on a ResNet-34); the weights are the float32 ones, widened exactly.
    """
    expected = logits(copy.deepcopy(source).double(), x.double())
    assert expected.std() > 0.1
    torch.testing.assert_close(logits(copy.deepcopy(converted).double(), x.double()), expected, rtol=0, atol=1e-5)


def assert_attention_matters(with_attention: nn.Module, without: nn.Module, x: torch.Tensor) -> None:
    """Removing the attention moves the logits far beyond the tolerance, so equality above means something."""
    assert (logits(with_attention, x) - logits(without, x)).abs().max() > 1e-2
