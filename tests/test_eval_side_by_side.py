"""Models timed side by side: one pass of each per round, ratios taken within a round, so a load that
comes and goes changes the absolute speeds but not the ratios. Driven by a fake clock (no timing here)."""

import types

import pytest
import torch
from torch import nn

from attnzoo.evaluate import throughput
from attnzoo.evaluate.evaluate import evaluate_side_by_side, format_table
from attnzoo.evaluate.throughput import measure_side_by_side


class FakeClock:
    """Time advances only inside a model's forward: its cost times the load of the current round."""

    def __init__(self, loads: list[float], models: int) -> None:
        self.now, self.loads, self.models, self.calls = 0.0, loads, models, []

    def tick(self, name: str, cost: float) -> None:
        self.now += cost * self.loads[len(self.calls) // self.models]
        self.calls.append(name)


class Costly(nn.Module):
    def __init__(self, clock: FakeClock, name: str, cost: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1))
        self.clock, self.name, self.cost = clock, name, cost

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.clock.tick(self.name, self.cost)
        return x


def test_ratios_hold_while_a_load_slows_some_rounds(monkeypatch):
    clock = FakeClock(loads=[1, 4, 4, 4, 1, 1], models=2)  # warm-up round, then 5 rounds, 3 of them busy
    monkeypatch.setattr(throughput, "time", types.SimpleNamespace(perf_counter=lambda: clock.now,
                                                                  process_time=lambda: clock.now))
    plain, attn = Costly(clock, "plain", 1.0), Costly(clock, "attn", 3.0)
    speeds, ratios = measure_side_by_side([plain, attn], [(1, 2, 2)] * 2, batch_size=8, warmup=1, runs=5)
    assert clock.calls == ["plain", "attn"] * 6  # in turn, every round
    assert ratios == [1.0, 3.0]
    assert speeds[0].ms_per_batch == 4000.0  # the busy rounds dominate the absolute median
    assert speeds[1].img_per_s == pytest.approx(8 / 12.0)


def test_rows_carry_time_relative_to_the_first_model():
    rows = evaluate_side_by_side(["cnn3", "cnn3_cbam"], num_classes=10, img_size=28, runs=2, batch_size=2)
    assert rows[0]["time_vs_first"] == 1.0
    assert rows[1]["time_vs_first"] > 0 and rows[1]["timed_runs"] == 2
    table = format_table(rows)
    assert "time vs 1st" in table and "comparable between runs only on an idle machine" in table
