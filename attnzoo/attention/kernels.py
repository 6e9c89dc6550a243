"""Fused CPU kernels for SE and CBAM (``csrc/gating.cpp``), built on first use, with a clean fallback.

Why a C++ operator: at torch's default thread count the attention's passes over a feature map (pooling,
channel-wise reductions, gating) gain less from more cores than the convolutions around them, and no eager
torch operator fuses a reduction with a multiply. The kernels make one parallel pass where torch makes
several: CBAM's mean and max over positions in one read, its mean and max over channels of ``x * c`` in
one read without materialising the product, both gates applied in one read-modify-write, a residual
block's gate, shortcut add and ReLU in one pass (:mod:`attnzoo.surgery.resnet`), and CBAM's backward in
three passes (:class:`attnzoo.attention.fused.KernelCbam`). SE's and CBAM's gates themselves (pooling, the
small MLP, sigmoid, CBAM's 7x7 conv) are a few plain loops in one call: at batch 1 or on a training step's
small maps, a dozen ATen operators each running cold after a convolution cost more than the arithmetic.

The operator is compiled with ``torch.utils.cpp_extension`` the first time an eager forward asks for it
(about 20 s, once per machine and torch version, announced on stderr; the build is cached under torch's
extensions directory, ``TORCH_EXTENSIONS_DIR``). Where it cannot build (no C++ compiler, no ninja) or ``ATTNZOO_FUSED_KERNELS=0`` is set,
:func:`fused_ops` returns None after one warning and every module keeps its plain torch route, which
computes the same function. Tracers, exporters and compilers never see these operators
(:func:`attnzoo.attention.fused.runs_eagerly`).
"""

from __future__ import annotations

import contextlib
import contextvars
import hashlib
import logging
import os
import platform
import sys
import threading
import warnings
from pathlib import Path
from collections.abc import Iterator
from typing import Any

import torch

SOURCE = Path(__file__).with_name("csrc") / "gating.cpp"
CFLAGS = ["-O3", "-march=native", "-ffp-contract=off", "-std=c++20", "-fopenmp"]
DISABLE_VARIABLE = "ATTNZOO_FUSED_KERNELS"

_lock = threading.Lock()
_state: dict[str, Any] = {}
_disabled: contextvars.ContextVar[bool] = contextvars.ContextVar("attnzoo_torch_routes", default=False)


def _cpu_signature() -> str:
    """What ``-march=native`` depends on, so that a build cached on a shared disk is never run on a CPU
    that lacks its instructions."""
    try:
        flags = next(line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags"))
    except (OSError, StopIteration):
        flags = platform.processor()
    return f"{platform.machine()} {flags}"


def build_name() -> str:
    """The extension's name: changes with the source, flags, torch version and CPU, so a stale build is
    never loaded."""
    key = "\n".join([SOURCE.read_text(), " ".join(CFLAGS), torch.__version__, _cpu_signature()])
    return "attnzoo_gating_" + hashlib.sha256(key.encode()).hexdigest()[:16]


def _build() -> Any:
    from torch.utils import cpp_extension

    name = build_name()
    if not any(Path(build_root()).glob(f"**/{name}/{name}.so")):  # torch nests builds by Python and CUDA version
        print("attnzoo: compiling the fused CPU kernels (once per machine, about 20 s)", file=sys.stderr)
    path = os.environ.get("PATH", "")
    try:  # the ninja wheel installs its binary next to the interpreter, which need not be on PATH
        import ninja

        os.environ["PATH"] = ninja.BIN_DIR + os.pathsep + path
    except ImportError:
        pass
    try:
        cpp_extension.load(
            name=name,
            sources=[str(SOURCE)],
            extra_cflags=CFLAGS,
            extra_ldflags=["-fopenmp"],
            is_python_module=False,
            verbose=False,
        )
    finally:
        os.environ["PATH"] = path
    return torch.ops.attnzoo_gating


def build_root() -> str:
    """Where torch caches extension builds (``TORCH_EXTENSIONS_DIR``, else its default)."""
    from torch.utils.cpp_extension import get_default_build_root

    return os.environ.get("TORCH_EXTENSIONS_DIR") or get_default_build_root()


@contextlib.contextmanager
def _quiet_extension_logger() -> Iterator[None]:
    """torch's extension builder logs that there is no CUDA and, for an unusable compiler, a banner of
    several lines; the one-line warning below says what matters."""
    logger = logging.getLogger("torch.utils.cpp_extension")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def failure_reason(error: Exception) -> str:
    """The line of a build or load failure that says why: the compiler's own error, a missing program or
    file, else the first line. A failed compile's message starts with ninja's command line, which does not."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    for marker in ("error:", "not found", "No such file", "cannot", "Could not"):
        found = next((line for line in lines if marker in line), None)
        if found is not None:
            return found[:300]
    return lines[0][:300] if lines else type(error).__name__


def kernels_wanted() -> bool:
    """``ATTNZOO_FUSED_KERNELS``: 0/false/off/no turn the kernels off, unset or 1/true/on/yes leave them on;
    any other value warns and leaves them on."""
    value = os.environ.get(DISABLE_VARIABLE, "").strip().lower()
    if value in ("0", "false", "off", "no"):
        return False
    if value not in ("", "1", "true", "on", "yes"):
        warnings.warn(
            f"attnzoo: {DISABLE_VARIABLE}={value!r} is not 0/1 (or false/true, off/on, no/yes); the fused "
            "kernels stay on",
            RuntimeWarning,
            stacklevel=4,
        )
    return True


@contextlib.contextmanager
def torch_routes() -> Iterator[None]:
    """Run SE and CBAM on their torch routes (ordinary aten operators) inside this block.

    For code that watches operators as they run, e.g. :func:`attnzoo.flops.count_macs` under
    ``FlopCounterMode``, which cannot see inside a fused kernel. Values are the same either way.
    """
    token = _disabled.set(True)
    try:
        yield
    finally:
        _disabled.reset(token)


def fused_ops() -> Any | None:
    """``torch.ops.attnzoo_gating`` once built and loaded, or None where the kernels are unavailable
    (or turned off by :func:`torch_routes`).

    Builds at most once per process; a failed build warns once, naming the cause, and is not retried.
    """
    if _disabled.get():
        return None
    if "ops" not in _state:
        with _lock:
            if "ops" not in _state:
                _state["ops"] = _load_or_warn()
    return _state["ops"]


def _load_or_warn() -> Any | None:
    if not kernels_wanted():
        return None
    try:
        with _quiet_extension_logger():
            return _build()
    except Exception as error:  # any build or load failure means: use the plain route
        cache = os.environ.get("TORCH_EXTENSIONS_DIR") or "~/.cache/torch_extensions"
        warnings.warn(
            f"attnzoo: fused CPU kernels unavailable ({failure_reason(error)}); SE and CBAM use their plain "
            f"torch route (same outputs, slower). Install a C++ compiler and ninja, or delete {cache} if a "
            f"cached build is damaged, or set {DISABLE_VARIABLE}=0 to silence this.",
            RuntimeWarning,
            stacklevel=3,
        )
        return None


def kernels_for(x: torch.Tensor, module: torch.nn.Module) -> Any | None:
    """The fused operators if they take ``x`` (a non-empty float32 contiguous NCHW CPU tensor, outside
    CPU autocast, whose gates are then float32 too) and ``module``'s weights, else None: the caller takes
    its plain route.

    The kernels read the weights as float32 CPU tensors; a module with a floating-point parameter or buffer
    of another dtype or device (e.g. only its BatchNorm converted with ``.double()``) runs the plain route,
    which raises torch's own mixed-dtype or device error, as it does without the kernels.
    """
    fits = (
        x.dim() == 4
        and x.dtype == torch.float32
        and x.device.type == "cpu"
        and x.is_contiguous()
        and x.numel() > 0
        and not torch.is_autocast_enabled("cpu")
        and _weights_match(module, x)
    )
    return fused_ops() if fits else None


def _weights_match(module: torch.nn.Module, x: torch.Tensor) -> bool:
    """Whether every floating-point parameter and buffer of ``module`` has ``x``'s dtype and device. Walks the
    modules' own dicts: ``parameters()`` costs several times as much, and this runs on every eager forward."""
    dtype, device = x.dtype, x.device
    stack = [module]
    while stack:
        current = stack.pop()
        for t in (*current._parameters.values(), *current._buffers.values()):
            if t is not None and (t.dtype != dtype or t.device != device) and t.is_floating_point():
                return False
        stack.extend(current._modules.values())
    return True
