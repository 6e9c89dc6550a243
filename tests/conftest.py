"""Shared test set-up: deterministic, single-threaded torch (the suite runs on small CPUs)."""

import pytest
import torch


@pytest.fixture(autouse=True)
def _seeded_torch():
    torch.manual_seed(0)
    torch.set_num_threads(1)
    yield
