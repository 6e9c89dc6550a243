"""Attention overhead as a ratio to the plain backbone, with timm's own modules alongside.

For each attention model the benchmark builds three candidates: the plain backbone, attnzoo's model, and
timm's native equivalent where timm has one (``seresnet50``, ``resnet50`` with ``attn_layer='cbam'``, ...,
built with the same weights so that the outputs can be compared). Timings interleave the candidates:
every round runs each of them in turn, the ratio to the backbone is taken within the round, and the median
over rounds is reported, which cancels most of the drift of a shared machine. Each mode is measured at every
thread setting asked for (by default torch's default thread count, then one thread), in the same process,
one table per setting: attention's passes over the feature maps gain less from more threads than the
convolutions do, so the overhead differs between settings. Peak training memory is the
most bytes the torch CPU allocator holds during one training step (weights, gradients, optimizer state and
activations), replayed from the PyTorch profiler's allocation events.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import timm
import torch
import torch.nn.functional as F
from torch import nn

from attnzoo.errors import NonFiniteOutputError, UnknownModelError
from attnzoo.evaluate.evaluate import InputSizeError, input_size_of
from attnzoo.evaluate.throughput import num_threads, peak_allocated, quiet_stderr
from attnzoo.models.registry import INJECTED

MODES = ("eager", "compiled", "onnx", "train", "memory")
RESNET_BASES = ("resnet", "resnext", "wide_resnet")


@dataclass(frozen=True)
class Candidate:
    """One model in a comparison; ``build`` makes it with a fixed seed."""

    label: str
    build: Callable[[], nn.Module]
    role: str  # "backbone", "attnzoo" or "timm"
    pair: str | None = None  # for timm's models: the attnzoo model computing the same function


@dataclass
class Setting:
    """Shapes and repetitions of a benchmark run."""

    infer_batch: int = 8
    infer_size: int = 224
    train_batch: int = 64
    train_size: int = 64
    rounds: int = 7
    iters: int = 3
    threads: tuple[int | None, ...] = (None, 1)  # thread settings measured in turn; None: torch's default
    clock: str = "wall"  # or "cpu": process CPU time, which ignores time spent waiting for a shared core

    def now(self) -> float:
        return time.process_time() if self.clock == "cpu" else time.perf_counter()


@dataclass
class Measurement:
    """One candidate in one mode: per-round values (ms per call, or MiB) and their ratios to the backbone."""

    label: str
    role: str
    values: list[float] = field(default_factory=list)
    ratios: list[float] = field(default_factory=list)

    @property
    def value(self) -> float:
        return statistics.median(self.values)

    @property
    def ratio(self) -> float:
        return statistics.median(self.ratios)

    @property
    def spread(self) -> tuple[float, float]:
        """Lower and upper quartile of the per-round ratios."""
        if len(self.ratios) < 2:
            return self.ratio, self.ratio
        q = statistics.quantiles(self.ratios, n=4)
        return q[0], q[2]


def _seeded(builder: Callable[[], nn.Module]) -> Callable[[], nn.Module]:
    @functools.wraps(builder)
    def build() -> nn.Module:
        torch.manual_seed(0)
        return builder()

    return build


def timm_equivalent(base: str, attn: str) -> Candidate | None:
    """timm's own module in the same slot of ``base``, if timm has one for ``attn`` (ResNet family only)."""
    if not base.startswith(RESNET_BASES):
        return None
    if attn == "se":
        native = f"se{base}" if base.startswith("resnet") and f"se{base}" in timm.list_models() else None
        layer, label = "se", f"timm {native or base + ' + SEModule'}"
    elif attn == "cbam":
        from timm.layers.cbam import CbamModule

        layer, label = functools.partial(CbamModule, mlp_bias=True), f"timm {base} + CbamModule"
    elif attn == "eca":
        layer, label = "eca", f"timm {base} + EcaModule"
    else:
        return None
    return Candidate(label, _seeded(lambda: timm.create_model(base, block_args=dict(attn_layer=layer))), "timm")


def _base(name: str) -> str:
    base = INJECTED.get(name)
    if base is None:
        raise UnknownModelError(
            f"{name!r} is not an attnzoo <backbone>_<attention> model; see `attnzoo list` for names"
        )
    return base


def candidates(names: str | list[str]) -> list[Candidate]:
    """The backbone, then each attnzoo model followed by timm's equivalent where timm has one.

    All ``names`` must share one backbone.
    """
    names = [names] if isinstance(names, str) else names
    bases = sorted({_base(name) for name in names})
    if len(bases) != 1:
        raise UnknownModelError(f"models {', '.join(names)} have different backbones ({', '.join(bases)}); "
                                "benchmark them in separate groups")
    base = bases[0]
    found = [Candidate(base, _seeded(lambda: timm.create_model(base)), "backbone")]
    for name in names:
        build = _seeded(functools.partial(timm.create_model, name))
        found.append(Candidate(name, build, "attnzoo"))
        twin = timm_equivalent(base, name[len(base) + 1 :])
        if twin:
            found.append(Candidate(twin.label, twin.build, "timm", pair=name))
    return found


def group_by_backbone(names: list[str]) -> dict[str, list[str]]:
    """``names`` grouped by their backbone, in first-seen order, so each backbone is timed once."""
    groups: dict[str, list[str]] = {}
    for name in names:
        groups.setdefault(_base(name), []).append(name)
    return groups


def identical_outputs(ours: nn.Module, theirs: nn.Module, x: torch.Tensor) -> float:
    """Max |logit difference| of the two models in eval mode, with timm's weights loaded into attnzoo's.

    timm zero-initialises each block's last BN, which would silence the attention branch; the BNs of a
    copy get random statistics and affine parameters first, so that the comparison means something.
    """
    theirs = copy.deepcopy(theirs).eval()
    generator = torch.Generator().manual_seed(1)
    for bn in (m for m in theirs.modules() if isinstance(m, nn.BatchNorm2d)):
        for t, lo, hi in ((bn.weight, 0.5, 1.5), (bn.bias, -0.2, 0.2), (bn.running_mean, -0.2, 0.2),
                          (bn.running_var, 0.5, 1.5)):
            t.data.copy_(torch.rand(t.shape, generator=generator) * (hi - lo) + lo)
    ours = copy.deepcopy(ours).eval()
    ours.load_state_dict(theirs.state_dict(), strict=True)
    with torch.inference_mode():
        a, b = ours(x), theirs(x)
    if not (bool(torch.isfinite(a).all()) and bool(torch.isfinite(b).all())):
        raise NonFiniteOutputError(f"logits are NaN or infinite at input {'x'.join(map(str, x.shape[1:]))} "
                                   "(attnzoo's or timm's model), so their difference means nothing; bench at a "
                                   "larger --infer-size")
    return float((a - b).abs().max())


# --- what one "call" is, per mode -------------------------------------------------------------------------


def _inference_step(model: nn.Module, x: torch.Tensor) -> Callable[[], None]:
    model.eval()

    def step() -> None:
        with torch.inference_mode():
            model(x)

    return step


def _compiled_step(model: nn.Module, x: torch.Tensor) -> Callable[[], None]:
    return _inference_step(torch.compile(model.eval()), x)


def _onnx_step(model: nn.Module, x: torch.Tensor, workdir: str, threads: int | None) -> Callable[[], None]:
    from attnzoo.export import INPUT_NAME, export_onnx, ort_session

    path = export_onnx(model, os.path.join(workdir, f"{id(model)}.onnx"), input_size=tuple(x.shape[1:]))
    session, feed = ort_session(path, threads), {INPUT_NAME: x.numpy()}
    return lambda: session.run(None, feed)


class TrainingStep:
    """One SGD-with-momentum step (forward, cross-entropy, backward, update) on a fixed batch."""

    def __init__(self, model: nn.Module, x: torch.Tensor) -> None:
        self.model, self.x = model.train(), x
        self.target = torch.randint(0, model.num_classes, (x.shape[0],), generator=torch.Generator().manual_seed(0))
        self.optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)

    def __call__(self) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(self.model(self.x), self.target).backward()
        self.optimizer.step()

    def resident_bytes(self) -> int:
        """Bytes held between steps: weights, buffers, momentum, the batch (gradients are freed)."""
        state = [t for s in self.optimizer.state.values() for t in s.values() if torch.is_tensor(t)]
        tensors = [*self.model.state_dict().values(), *state, self.x, self.target]
        return sum(t.nbytes for t in tensors)


def _interleave(steps: dict[str, Callable[[], None]], setting: Setting) -> dict[str, list[float]]:
    """Seconds per call of every step, per round; each round runs them all, in rotating order."""
    labels = list(steps)
    seconds: dict[str, list[float]] = {label: [] for label in labels}
    for step in steps.values():  # warm-up: allocator, oneDNN primitives, compiled graphs
        step()
        step()
    for r in range(setting.rounds):
        for label in labels[r % len(labels) :] + labels[: r % len(labels)]:
            start = setting.now()
            for _ in range(setting.iters):
                steps[label]()
            seconds[label].append((setting.now() - start) / setting.iters)
    return seconds


def training_peak_bytes(model: nn.Module, x: torch.Tensor) -> int:
    """Peak bytes of a training step: what is resident before it plus the most the step allocates."""
    step = TrainingStep(model, x)
    step()  # creates the momentum buffers
    return step.resident_bytes() + peak_allocated(step)


@dataclass
class Table:
    """One mode's results for one attnzoo model at one thread count: rows in candidate order, the backbone
    first. ``threads`` is None for a measurement that does not depend on it (memory)."""

    model: str
    mode: str
    unit: str
    rows: list[Measurement]
    notes: list[str] = field(default_factory=list)
    threads: int | None = None


def _timed_rows(cands: list[Candidate], models: dict[str, nn.Module], mode: str, x: torch.Tensor,
                setting: Setting, threads: int, workdir: str) -> list[Measurement]:
    """Interleaved timings (ms per call) of every candidate in ``mode`` with ``threads`` threads in use."""
    if mode == "compiled":
        torch.compiler.reset()  # each thread setting compiles afresh: inductor's CPU kernels bake in the count
    make = {
        "eager": _inference_step,
        "compiled": _compiled_step,
        "onnx": lambda m, x: _onnx_step(m, x, workdir, threads),
        "train": TrainingStep,
    }[mode]
    seconds = _interleave({label: make(model, x) for label, model in models.items()}, setting)
    return [Measurement(c.label, c.role, [s * 1e3 for s in seconds[c.label]]) for c in cands]


def _example_input(backbone: nn.Module, batch: int, size: int, option: str) -> torch.Tensor:
    """A fixed random batch with the backbone's input channels (1 for cnn3, 3 for timm's models), refused
    with a one-line error when the backbone cannot take ``size`` (cnn3 takes 28 px only)."""
    channels, _, _ = input_size_of(backbone, size)
    x = torch.randn(batch, channels, size, size, generator=torch.Generator().manual_seed(0))
    try:
        with torch.no_grad():
            backbone.eval()(x[:1])
    except RuntimeError as err:
        raise InputSizeError(f"the model cannot run on {channels}x{size}x{size} input ({str(err).splitlines()[0]}); "
                             f"pass the {option} it was built for") from None
    return x


def run_mode(names: list[str], mode: str, setting: Setting, workdir: str) -> list[Table]:
    """Measure ``mode`` (one of :data:`MODES`) for attnzoo models ``names`` (one backbone) and their peers:
    one table per thread setting of ``setting`` (one table for memory, which does not depend on it)."""
    cands = candidates(names)
    train = mode in ("train", "memory")
    batch, size = (setting.train_batch, setting.train_size) if train else (setting.infer_batch, setting.infer_size)
    models = {c.label: c.build() for c in cands}
    x = _example_input(models[cands[0].label], batch, size, "--train-size" if train else "--infer-size")
    notes = []
    if mode == "eager":
        for twin in (c for c in cands if c.pair):
            diff = identical_outputs(models[twin.pair], models[twin.label], x)
            notes.append(f"{twin.pair} with {twin.label}'s weights: max |logit diff| {diff:.1e}")
    if mode == "memory":
        rows = [Measurement(c.label, c.role, [training_peak_bytes(models[c.label], x) / 2**20]) for c in cands]
        measured = [(None, rows)]
        unit = "MiB"
    else:
        measured = []
        for threads in setting.threads:
            with num_threads(threads) as in_use:
                if in_use not in (t for t, _ in measured):  # torch's default may be one of the others
                    measured.append((in_use, _timed_rows(cands, models, mode, x, setting, in_use, workdir)))
        unit = "ms"
    tables = []
    for threads, rows in measured:
        for row in rows:
            row.ratios = [v / b for v, b in zip(row.values, rows[0].values)]
        tables.append(Table(cands[0].label, mode, unit, rows, notes, threads))
    return tables


def profile_ops(names: list[str], mode: str, setting: Setting, top: int = 12) -> str:
    """Where the time goes: self CPU time per operator, per candidate, over ``setting.iters`` calls.

    The rows are operators (summed over shapes) with their share of the model's total, so a backbone's
    table and an attention model's can be compared line by line.
    """
    cands = candidates(names)
    train = mode == "train"
    batch, size = (setting.train_batch, setting.train_size) if train else (setting.infer_batch, setting.infer_size)
    x = _example_input(cands[0].build(), batch, size, "--train-size" if train else "--infer-size")
    lines = [f"operator profile ({mode}, batch {batch} at {size}x{size}, self CPU ms per call, {setting.iters} calls)"]
    for cand in cands:
        model = cand.build()
        step = TrainingStep(model, x) if train else _inference_step(model, x)
        step()
        step()
        with quiet_stderr(), torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
            for _ in range(setting.iters):
                step()
        ops = sorted(prof.key_averages(), key=lambda e: -e.self_cpu_time_total)
        total = sum(e.self_cpu_time_total for e in ops)
        lines.append(f"  {cand.label}: total {total / 1e3 / setting.iters:.1f} ms")
        lines += [
            f"    {e.key:42s} {e.self_cpu_time_total / 1e3 / setting.iters:9.1f} {100 * e.self_cpu_time_total / total:5.1f}%"
            for e in ops[:top]
        ]
    return "\n".join(lines)


def environment() -> str:
    """Versions, torch's default thread count, CPU and whether the fused kernels run, for the report's header."""
    import onnxruntime

    from attnzoo.attention.kernels import fused_ops

    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    return (
        f"torch {torch.__version__}, timm {timm.__version__}, onnxruntime {onnxruntime.__version__}, "
        f"python {platform.python_version()}; torch's default {torch.get_num_threads()} thread(s) of "
        f"{os.cpu_count()} CPUs ({cpu}); fused CPU kernels "
        f"{'on' if fused_ops() is not None else 'off (plain torch route)'}"
    )


MODE_TITLES = {
    "eager": "inference, eager fp32, batch {infer_batch} at {infer_size}x{infer_size}",
    "compiled": "inference, torch.compile (inductor), batch {infer_batch} at {infer_size}x{infer_size}",
    "onnx": "inference, onnxruntime CPU, batch {infer_batch} at {infer_size}x{infer_size}",
    "train": "training step (fwd + bwd + SGD), batch {train_batch} at {train_size}x{train_size}",
    "memory": "peak training-step memory (torch.profiler allocation replay), batch {train_batch} at "
    "{train_size}x{train_size}",
}


def format_table(table: Table, setting: Setting) -> str:
    """A plain-text table: time (or memory), ratio to the backbone, and the ratio's quartiles."""
    title = MODE_TITLES[table.mode].format(**vars(setting))
    if table.threads is not None:
        title += f", {table.threads} thread(s)"
    lines = [f"{table.model} family: {title}", f"  {'model':40s} {table.unit:>9s} {'ratio':>7s}  quartiles"]
    for row in table.rows:
        lo, hi = row.spread
        spread = f"{lo:.3f}-{hi:.3f}" if table.mode != "memory" else ""
        lines.append(f"  {row.label:40s} {row.value:9.1f} {row.ratio:7.3f}  {spread}")
    lines += [f"  {note}" for note in table.notes]
    return "\n".join(lines)


def run_benchmark(
    names: list[str], modes: list[str], setting: Setting, report: Callable[[str], None] = print
) -> list[Table]:
    """Run every mode for every model, passing each formatted table to ``report`` as it completes."""
    tables = []
    with tempfile.TemporaryDirectory() as workdir:
        report(f"attnzoo bench: {environment()}")
        report(f"timings: {clock_description(setting)}, median over {setting.rounds} interleaved rounds of "
               f"{setting.iters} calls each; ratio = time / backbone's time in the same round")
        for group in group_by_backbone(names).values():
            for mode in modes:
                for table in run_mode(group, mode, setting, workdir):
                    tables.append(table)
                    report(format_table(table, setting))
    return tables


def clock_description(setting: Setting) -> str:
    """Which clock the timings use, and what it means at more than one thread."""
    if setting.clock == "wall":
        return "wall-clock time"
    return "process CPU time (summed over all threads: at more than one thread, work rather than latency)"
