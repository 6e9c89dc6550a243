"""Inference speed and peak memory of a model, measured the same way for every model.

Speed: forward passes on a random batch under ``torch.inference_mode``, after warm-up, reporting the
median of several timed runs (the median resists the interference of other processes on shared
machines) and the thread count used. Several models are timed in turn, round by round, so that a load
which comes and goes slows them alike; their one-thread CPU times relative to the first model's, taken
within each round, hold on a busy machine where the wall-clock numbers do not. Peak memory: bytes the torch allocator holds at its peak during
one forward pass beyond what was allocated before it (weights and input excluded): on CUDA from
``torch.cuda.max_memory_allocated``; on CPU, where the allocator keeps no statistics, by replaying the
allocation events of the PyTorch profiler in time order.
"""

from __future__ import annotations

import contextlib
import os
import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class Throughput:
    """Median speed of ``runs`` timed forward passes of ``batch_size`` images.

    ``cpu_ms_per_batch`` is the process CPU time of a pass (all threads). With one thread it is the
    work the model needs, and barely changes when other processes share the machine, which makes it
    the fairer comparison between models on a busy CPU; wall-clock numbers are what a user waits.
    """

    img_per_s: float
    ms_per_batch: float
    cpu_ms_per_batch: float
    batch_size: int
    threads: int
    runs: int
    device: str

    @property
    def ms_per_img(self) -> float:
        return self.ms_per_batch / self.batch_size

    @property
    def cpu_ms_per_img(self) -> float:
        return self.cpu_ms_per_batch / self.batch_size


@dataclass(frozen=True)
class PeakMemory:
    """Peak bytes allocated by torch during one forward pass, and how that was measured."""

    bytes: int
    method: str

    @property
    def mib(self) -> float:
        return self.bytes / 2**20


@contextlib.contextmanager
def num_threads(threads: int | None) -> Iterator[int]:
    """Run the block with ``threads`` intra-op threads (None: leave as is); yields the count in use."""
    previous = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        yield torch.get_num_threads()
    finally:
        torch.set_num_threads(previous)


def _device_of(model: nn.Module) -> torch.device:
    param = next(model.parameters(), None)
    return param.device if param is not None else torch.device("cpu")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# A timed sample spans at least this long (several passes of a fast model), so that scheduler noise on a
# busy machine is small against it; MAX_PASSES bounds the passes per sample.
MIN_SAMPLE_S = 0.1
MAX_PASSES = 100


def measure_throughput(
    model: nn.Module,
    input_size: tuple[int, int, int],
    *,
    batch_size: int = 32,
    warmup: int = 2,
    runs: int = 5,
    threads: int | None = None,
) -> Throughput:
    """Images per second of eval-mode inference at ``batch_size`` on the model's device."""
    speeds, _ = measure_side_by_side([model], [input_size], batch_size=batch_size, warmup=warmup, runs=runs,
                                     threads=threads)
    return speeds[0]


def measure_side_by_side(
    models: Sequence[nn.Module],
    input_sizes: Sequence[tuple[int, int, int]],
    *,
    batch_size: int = 32,
    warmup: int = 2,
    runs: int = 5,
    threads: int | None = None,
) -> tuple[list[Throughput], list[float]]:
    """Throughput of each model, timed in turn (``runs`` rounds after ``warmup`` passes each; in a round,
    each model runs as many passes as fill about ``MIN_SAMPLE_S``), and each model's time relative to the
    first's: the median over rounds of the ratio of process CPU times within a round. With one thread, CPU
    time is the work a pass needs, barely changed by other processes on the cores, and pairing within a
    round cancels what is left of a load that changes from round to round."""
    inputs = [torch.randn((batch_size, *size), device=_device_of(m)) for m, size in zip(models, input_sizes)]
    modes = [m.training for m in models]
    wall: list[list[float]] = [[] for _ in models]
    cpu: list[list[float]] = [[] for _ in models]
    passes = [1] * len(models)
    try:
        for m in models:
            m.eval()
        with num_threads(threads) as used, torch.inference_mode():
            for i in range(warmup + runs):
                for k, (model, x) in enumerate(zip(models, inputs)):
                    _sync(x.device)
                    start, start_cpu = time.perf_counter(), time.process_time()
                    for _ in range(passes[k]):
                        model(x)
                    _sync(x.device)
                    seconds = (time.perf_counter() - start) / passes[k]
                    if i >= warmup:
                        wall[k].append(seconds)
                        cpu[k].append((time.process_time() - start_cpu) / passes[k])
                    elif i == warmup - 1:  # the last warm-up pass sizes the timed rounds
                        passes[k] = max(1, min(MAX_PASSES, round(MIN_SAMPLE_S / max(seconds, 1e-9))))
    finally:
        for m, mode in zip(models, modes):
            m.train(mode)
    speeds = [
        Throughput(img_per_s=batch_size / statistics.median(w), ms_per_batch=statistics.median(w) * 1e3,
                   cpu_ms_per_batch=statistics.median(c) * 1e3, batch_size=batch_size, threads=used, runs=runs,
                   device=str(x.device))
        for w, c, x in zip(wall, cpu, inputs)
    ]
    ratios = [statistics.median(t / t0 for t, t0 in zip(c, cpu[0])) for c in cpu]
    return speeds, ratios


@contextlib.contextmanager
def quiet_stderr() -> Iterator[None]:
    """Silence the profiler's C++ start/stop log lines, written straight to file descriptor 2."""
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def peak_allocated(fn: Callable[[], object]) -> int:
    """Most bytes the torch CPU allocator holds beyond its level at the start, while ``fn`` runs.

    Replayed from the allocation events of ``torch.profiler`` (``profile_memory=True``): the CPU allocator
    keeps no peak counter of its own, unlike CUDA's.
    """
    activities = [torch.profiler.ProfilerActivity.CPU]
    with quiet_stderr(), torch.profiler.profile(activities=activities, profile_memory=True) as prof:
        fn()
    events = sorted(
        (e.start_ns(), e.nbytes())
        for e in prof.profiler.kineto_results.events()
        if e.name() == "[memory]" and e.device_type() == torch.autograd.DeviceType.CPU
    )
    current = peak = 0
    for _, nbytes in events:
        current += nbytes
        peak = max(peak, current)
    return peak


def measure_peak_memory(model: nn.Module, input_size: tuple[int, int, int], *, batch_size: int = 32) -> PeakMemory:
    """Peak memory torch allocates for one eval-mode forward pass of ``batch_size`` images."""
    device = _device_of(model)
    x = torch.randn((batch_size, *input_size), device=device)
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            if device.type == "cuda":
                torch.cuda.synchronize(device)
                base = torch.cuda.memory_allocated(device)
                torch.cuda.reset_peak_memory_stats(device)
                model(x)
                torch.cuda.synchronize(device)
                peak = torch.cuda.max_memory_allocated(device) - base
                method = "torch.cuda.max_memory_allocated during one forward, beyond weights and input"
            else:
                peak = peak_allocated(lambda: model(x))
                method = "torch CPU allocations during one forward (profiler replay), beyond weights and input"
    finally:
        model.train(was_training)
    return PeakMemory(bytes=peak, method=method)
