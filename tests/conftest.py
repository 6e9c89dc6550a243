"""Shared test set-up: deterministic, single-threaded torch (the suite runs on small CPUs), the fused
kernels' fixtures, and a spy that shows where SE trains on MeanGated."""

import pytest
import torch

from attnzoo.attention import kernels
from attnzoo.attention.fused import MeanGated
from attnzoo.attention.kernels import DISABLE_VARIABLE, fused_ops
from kernel_helpers import CountingOps


@pytest.fixture(autouse=True)
def _seeded_torch():
    torch.manual_seed(0)
    torch.set_num_threads(1)
    yield


@pytest.fixture
def ops():
    """The loaded operators; tests that need them skip where they are disabled or unavailable, which
    test_fused_kernels.py's test_kernels_are_built_wherever_they_are_not_disabled turns into a failure."""
    loaded = fused_ops()
    if loaded is None:
        pytest.skip(f"fused kernels disabled or unavailable (see test_kernels_are_built_...; {DISABLE_VARIABLE})")
    return loaded


@pytest.fixture
def counting(ops, monkeypatch) -> CountingOps:
    """Installs a :class:`CountingOps` as the loaded operators for the test."""
    proxy = CountingOps(ops)
    monkeypatch.setitem(kernels._state, "ops", proxy)
    return proxy


@pytest.fixture
def mean_gated(monkeypatch) -> list[torch.Size]:
    """The input shapes ``MeanGated`` is applied to, in order."""
    applied = []
    original = MeanGated.apply
    monkeypatch.setattr(MeanGated, "apply", lambda *args: applied.append(args[0].shape) or original(*args))
    return applied
