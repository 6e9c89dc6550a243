"""Helpers for tests of the fused CPU kernels (:mod:`attnzoo.attention.kernels`).

Tests swap the kernels out through ``kernels._state``, the cache :func:`~attnzoo.attention.kernels.fused_ops`
reads: ``ATTNZOO_FUSED_KERNELS`` is read once per process, so there is no public switch once they are
loaded. The ``ops`` and ``counting`` fixtures (conftest.py) build on these.
"""

from __future__ import annotations

import collections
import contextlib
import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.testing import assert_close

from attention_helpers import assert_attention_matters, wake
from attnzoo.attention import kernels
from attnzoo.models import build_model


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



def parameter_gradient(grads: list[torch.Tensor], module: nn.Module, name: str) -> torch.Tensor:
    """The gradient of ``module``'s parameter ``name`` in what :func:`output_and_grads` returned for it (with the
    input's gradient, and every parameter requiring grad)."""
    names = [n for n, p in module.named_parameters() if p.requires_grad]
    return grads[2 + names.index(name)]

def training_step(
    model: nn.Module, x: torch.Tensor, target: torch.Tensor
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """The cross-entropy loss of ``model`` on ``(x, target)`` and its gradient for every parameter."""
    loss = F.cross_entropy(model(x.clone()), target)
    return loss.detach(), list(torch.autograd.grad(loss, list(model.parameters())))


def assert_resnet18_training_step_matches_the_plain_route(
    counting: CountingOps, attention: str, node: str, loss_tolerance: dict[str, float]
) -> None:
    """One training step of ``resnet18`` with ``attention`` by surgery (BatchNorms woken, train mode) runs
    ``node``, the attention's C++ autograd node, in each of its 8 blocks, and gives the loss (within
    ``loss_tolerance``, ``assert_close``'s ``rtol``/``atol``) and every parameter's gradient of the same
    step on the plain route."""
    torch.manual_seed(0)
    kernel_model = wake(build_model("resnet18", attention=attention, num_classes=10)).train()
    plain_model = copy.deepcopy(kernel_model)
    x, target = torch.randn(4, 3, 64, 64), torch.randint(0, 10, (4,))
    assert_attention_matters(kernel_model, x)

    kernel_loss, kernel_grads = training_step(kernel_model, x, target)
    assert counting.calls[node] == 8  # every block's attention trained on the node
    with plain_route():
        plain_loss, plain_grads = training_step(plain_model, x, target)
    assert_close(kernel_loss, plain_loss, **loss_tolerance)
    # train-mode BatchNorm backward amplifies float32 summation-order differences through eight blocks
    # (to ~1e-5 of a gradient's scale here): equal relative to each gradient's scale
    for ours, theirs in zip(kernel_grads, plain_grads, strict=True):
        assert_close(ours, theirs, rtol=1e-4, atol=1e-4 * theirs.abs().max().item())
