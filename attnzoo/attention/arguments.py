"""Range checks for attention constructor arguments, run before any module is allocated.

Arguments come from users, recipes and checkpoint metadata, so a value that is merely the right type can
still be meaningless (``rd_ratio=0``, an even spatial kernel) or ask for gigabytes (``rd_ratio=1e6``). Each
known argument name has one rule shared by every attention that takes it (timm's constructor vocabulary);
:func:`check_values` applies them and names the argument and its allowed range on failure.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from timm.layers import get_act_layer

from attnzoo.errors import SurgeryError

MAX_CHANNELS = 16384  # wider than any timm CNN's feature maps (a few thousand channels)
MAX_KERNEL = 15  # a gate's kernel larger than this spans more than the maps it sees at the stages it enters
MAX_HEADS = 256


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_real(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _ratio(value: Any, channels: int | None) -> str | None:
    return None if _is_real(value) and 0 < value <= 1 else "a number in (0, 1] (the bottleneck's share of channels)"


def _reduced(value: Any, channels: int | None) -> str | None:
    top = channels or MAX_CHANNELS
    return None if value is None or _is_int(value) and 1 <= value <= top else f"null or an integer in 1..{top}"


def _divisor(value: Any, channels: int | None) -> str | None:
    return None if value is None or _is_int(value) and 1 <= value <= 1024 else "null or an integer in 1..1024"


def _odd_kernel(value: Any, channels: int | None) -> str | None:
    ok = _is_int(value) and 1 <= value <= MAX_KERNEL and value % 2 == 1
    return None if ok else f"an odd integer in 1..{MAX_KERNEL} (odd, so the gate keeps the map's size)"


def _heads(value: Any, channels: int | None) -> str | None:
    if not (_is_int(value) and 1 <= value <= MAX_HEADS):
        return f"an integer in 1..{MAX_HEADS}"
    return None if channels is None or channels % value == 0 else f"a divisor of the {channels} channels"


def _positive_int(value: Any, channels: int | None) -> str | None:
    return None if _is_int(value) and 1 <= value <= 64 else "an integer in 1..64"


def _small_int(value: Any, channels: int | None) -> str | None:
    return None if _is_int(value) and -64 <= value <= 64 else "an integer in -64..64"


def _positive_real(value: Any, channels: int | None) -> str | None:
    return None if _is_real(value) and 0 < value <= 1e3 else "a finite number in (0, 1000]"


def _flag(value: Any, channels: int | None) -> str | None:
    return None if isinstance(value, bool) else "true or false"


def _layer(value: Any, channels: int | None) -> str | None:
    if isinstance(value, str):
        try:
            get_act_layer(value)
            return None
        except (KeyError, ValueError, TypeError):
            return "a timm activation name (relu, silu, gelu, sigmoid, hard_sigmoid, tanh, ...) or a module class"
    return None if isinstance(value, type) or callable(value) else "a timm activation name or a module class"


_RULES: dict[str, Callable[[Any, int | None], str | None]] = {
    "rd_ratio": _ratio,
    "rd_channels": _reduced,
    "rd_divisor": _divisor,
    "kernel_size": _odd_kernel,
    "spatial_kernel_size": _odd_kernel,
    "num_heads": _heads,
    "gamma": _positive_int,
    "beta": _small_int,
    "e_lambda": _positive_real,
    "qkv_bias": _flag,
    "bias": _flag,
    "act_layer": _layer,
    "gate_layer": _layer,
}


def check_channels(name: str, channels: Any) -> None:
    """Refuse a channel count no real feature map has (it would size the module's weights)."""
    if not (_is_int(channels) and 1 <= channels <= MAX_CHANNELS):
        raise SurgeryError(f"attention {name!r}: channels={channels!r} is out of range; expected an integer in "
                           f"1..{MAX_CHANNELS}")


def check_values(name: str, kwargs: dict[str, Any], channels: int | None = None) -> None:
    """Raise :class:`SurgeryError` naming the first argument of ``kwargs`` outside its allowed range.

    ``channels`` (when known) bounds the arguments sized by it; arguments without a rule (those of
    third-party attentions) must only be finite when they are numbers.
    """
    for key, value in kwargs.items():
        rule = _RULES.get(key)
        allowed = rule(value, channels) if rule else (
            "a finite number" if isinstance(value, float) and not math.isfinite(value) else None)
        if allowed:
            raise SurgeryError(f"attention {name!r}: {key}={value!r} is out of range; expected {allowed}")
