"""Attention modules, one family per file, each registered by name on import."""

from attnzoo.attention import cbam, coord, eca, mhsa, se, simam  # noqa: F401  (registers the modules)
from attnzoo.attention.identity import init_identity
from attnzoo.attention.registry import (
    accepted_kwargs,
    check_kwargs,
    create_attention,
    get_attention_class,
    list_attentions,
    register_attention,
)

__all__ = [
    "accepted_kwargs",
    "check_kwargs",
    "create_attention",
    "get_attention_class",
    "init_identity",
    "list_attentions",
    "register_attention",
]
