"""Helpers for tests of the fused CPU kernels (:mod:`attnzoo.attention.kernels`).

Tests swap the kernels out through ``kernels._state``, the cache :func:`~attnzoo.attention.kernels.fused_ops`
reads: ``ATTNZOO_FUSED_KERNELS`` is read once per process, so there is no public switch once they are
loaded. The ``ops`` and ``counting`` fixtures (conftest.py) build on these.
"""

from __future__ import annotations

import collections
import contextlib

import pytest

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
