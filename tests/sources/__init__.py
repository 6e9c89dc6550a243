"""Re-implementations of third-party model code, to prove attnzoo's converters against the real thing.

Each module rebuilds one source's architecture with its exact module names and arithmetic, from the
source repository's published model code (cited in the module), so a test can save it in the source's own
file format, convert it, and compare logits.
"""

from __future__ import annotations

import torch
from torch import nn


@torch.no_grad()
def fill_random_(model: nn.Module, seed: int = 0, batch: torch.Tensor | None = None) -> nn.Module:
    """Give every layer weights that make attention matter, then leave ``model`` in eval mode.

    BN running statistics are measured on ``batch`` (so activations stay of order one through the depth),
    then every BN's affine and statistics are perturbed at random (none is zero, unlike timm's and the
    authors' initialisations, which zero some BNs so that a fresh network hides its attention).
    """
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.momentum = 1.0  # running stats := the calibration batch's
    if batch is not None:
        model.train()(batch)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.weight.copy_(torch.rand(m.weight.shape, generator=g) + 0.5)
            m.bias.copy_(torch.rand(m.bias.shape, generator=g) * 0.4 - 0.2)
            m.running_mean.add_(torch.rand(m.running_mean.shape, generator=g) * 0.2 - 0.1)
            m.running_var.mul_(torch.rand(m.running_var.shape, generator=g) * 0.5 + 0.75)
            m.num_batches_tracked.fill_(int(torch.randint(1, 1000, (), generator=g)))
            m.momentum = 0.1
    return model.eval()
