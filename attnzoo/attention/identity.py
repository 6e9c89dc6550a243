"""Function-preserving initialisation of attention modules.

A sigmoid gate cannot output exactly 1, so an attention module inserted into a pretrained network
changes its function. attnzoo keeps the paper's module unchanged and instead initialises it so that it
scales its input by a constant power of two (the *gain*, e.g. 0.5 for a sigmoid of zero), which the
surgery hook then cancels in a neighbouring linear layer (the block's last BatchNorm or next conv).
Multiplying by a power of two is exact in floating point, so the injected network computes bit-for-bit the
original function at step 0, and after training it is exactly the paper's architecture.
"""

from __future__ import annotations

from torch import nn


def zero_(*modules: nn.Module | None) -> None:
    """Set every parameter of ``modules`` to zero (missing modules and parameters are skipped)."""
    for module in modules:
        if module is not None:
            for param in module.parameters():
                nn.init.zeros_(param)


def init_identity(attention: nn.Module) -> float:
    """Make ``attention`` compute ``x * gain`` for a constant power-of-two gain and return the gain."""
    init = getattr(attention, "init_identity", None)
    if init is None:
        raise NotImplementedError(f"{type(attention).__name__} has no init_identity()")
    return init()
