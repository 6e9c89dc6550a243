"""Attention modules by name: the one place a name string turns into a class.

Third parties add their own with :func:`register_attention`; surgery and the model registry only ever go
through :func:`create_attention`, so a registered module works everywhere at once.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import TypeVar

from torch import nn

from attnzoo.attention.arguments import check_channels, check_values
from attnzoo.errors import SurgeryError, UnknownAttentionError

ModuleT = TypeVar("ModuleT", bound=type[nn.Module])

_ATTENTIONS: dict[str, type[nn.Module]] = {}


def register_attention(name: str) -> Callable[[ModuleT], ModuleT]:
    """Class decorator registering an attention module under ``name``.

    The class takes the channel count as its first argument. It should define
    ``attention_maps(x) -> dict[str, Tensor]`` (its gates for input ``x``, for inspection), and may define
    ``init_identity() -> float``
    (see :mod:`attnzoo.attention.identity`) to support function-preserving surgery, and a class attribute
    ``default_stages = "last"`` when it is too costly for every stage.
    """

    def decorator(cls: ModuleT) -> ModuleT:
        _ATTENTIONS[name] = cls
        return cls

    return decorator


def list_attentions() -> list[str]:
    """Registered attention names, sorted."""
    return sorted(_ATTENTIONS)


def get_attention_class(name: str) -> type[nn.Module]:
    """The class registered under ``name``; raises :class:`UnknownAttentionError` listing valid names."""
    try:
        return _ATTENTIONS[name]
    except KeyError:
        raise UnknownAttentionError(
            f"unknown attention {name!r}; registered: {', '.join(list_attentions())} "
            "(add your own with attnzoo.register_attention)"
        ) from None


def accepted_kwargs(name: str) -> list[str]:
    """Keyword arguments the attention's constructor accepts besides ``channels``."""
    params = inspect.signature(get_attention_class(name)).parameters
    return [p for p in params if p not in ("self", "channels")]


def check_kwargs(name: str, kwargs: dict) -> None:
    """Raise :class:`SurgeryError` naming any of ``kwargs`` that attention ``name`` does not take."""
    valid = accepted_kwargs(name)
    unknown = sorted(set(kwargs) - set(valid))
    if unknown:
        raise SurgeryError(
            f"attention {name!r} does not take {', '.join(unknown)}; it takes: {', '.join(valid) or 'nothing'}"
        )


def create_attention(name: str, channels: int, **kwargs) -> nn.Module:
    """Build attention ``name`` for ``channels`` channels, checking ``kwargs`` against its constructor."""
    check_kwargs(name, kwargs)
    check_channels(name, channels)
    check_values(name, kwargs, channels)
    return get_attention_class(name)(channels, **kwargs)
