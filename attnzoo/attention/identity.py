"""Function-preserving initialisation of attention modules.

A sigmoid gate cannot output exactly 1, so an attention module inserted into a pretrained network
changes its function. attnzoo keeps the paper's module unchanged and instead initialises it so that it
scales its input by a constant power of two (the *gain*, e.g. 0.5 for a sigmoid of zero), which the
surgery hook then cancels in a neighbouring linear layer (the block's last BatchNorm or next conv).
Multiplying by a power of two is exact in floating point, so the injected network computes bit-for-bit the
original function at step 0, and after training it is exactly the paper's architecture.
"""

from __future__ import annotations

import torch
from torch import nn

from attnzoo.errors import SurgeryError

GATE_INITS = ("half", "identity")


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


class ScaledSigmoid(nn.Module):
    """``2 * sigmoid(x)``: a gate in (0, 2) that is exactly 1 where its input is 0.

    The gate of ``gate_init="identity"``: with the excitation's last layer zeroed it passes every feature
    unchanged at step 0, where the paper's sigmoid (0.5 at 0) halves them; training can still move it
    both ways.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(x) * 2.0


def gate_for(gate_init: str, gate_layer: object) -> nn.Module | None:
    """The gate module that ``gate_init`` asks for, or None for the module's own ``gate_layer``.

    ``"half"`` (the paper's form) keeps ``gate_layer``; ``"identity"`` replaces the sigmoid by
    :class:`ScaledSigmoid`, so the caller zeroes the layer before the gate and the gate starts at exactly 1.
    """
    if gate_init not in GATE_INITS:
        raise SurgeryError(f"attention kwarg gate_init: {gate_init!r} is not one of {', '.join(GATE_INITS)}")
    if gate_init == "half":
        return None
    if gate_layer != "sigmoid":
        raise SurgeryError(f"attention kwarg gate_init='identity' scales a sigmoid gate; it cannot combine with "
                           f"gate_layer={gate_layer!r}, drop one of the two")
    return ScaledSigmoid()
