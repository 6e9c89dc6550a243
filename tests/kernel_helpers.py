"""Helpers for tests of the fused CPU kernels (:mod:`attnzoo.attention.kernels`).

Tests swap the kernels out through ``kernels._state``, the cache :func:`~attnzoo.attention.kernels.fused_ops`
reads: ``ATTNZOO_FUSED_KERNELS`` is read once per process, so there is no public switch once they are
loaded. The ``ops`` and ``counting`` fixtures (conftest.py) build on these.
"""

from __future__ import annotations

import collections
import contextlib

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from attnzoo.attention import kernels


class CountingOps:
    """Stands in for ``torch.ops.attnzoo_gating``: calls the real operators and counts the calls by name."""

    def __init__(self, ops) -> None:
        self.ops = ops
        self.calls: collections.Counter[str] = collections.Counter()

    def __getattr__(self, name: str):
        op = getattr(self.ops, name)

        def counted(*args, **kwargs):
            self.calls[name] += 1
            return op(*args, **kwargs)

        return counted


@contextlib.contextmanager
def plain_route():
    """Within the block every module takes its plain torch route, as where the kernels cannot build."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(kernels._state, "ops", None)
        yield


def output_and_grads(
    run, module: nn.Module, x: torch.Tensor, upstream: torch.Tensor, input_grad: bool = True
) -> list[torch.Tensor]:
    """``run(x)`` and the gradients of ``(run(x) * upstream).sum()`` for ``x`` (unless ``input_grad`` is
    False) and for those of ``module``'s parameters that require grad, in that order."""
    x = x.clone().requires_grad_(input_grad)
    out = run(x)
    leaves = [t for t in (x, *module.parameters()) if t.requires_grad]
    return [out.detach(), *torch.autograd.grad((out * upstream).sum(), leaves)]


def training_step(
    model: nn.Module, x: torch.Tensor, target: torch.Tensor
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """The cross-entropy loss of ``model`` on ``(x, target)`` and its gradient for every parameter."""
    loss = F.cross_entropy(model(x.clone()), target)
    return loss.detach(), list(torch.autograd.grad(loss, list(model.parameters())))
