"""Bounds on a model description read from untrusted places (checkpoint metadata, a Hub ``config.json``).

A record sizes what gets allocated (classes, input channels, attention widths), so a 2 MB file could ask
for gigabytes; every field is checked for type and range before any layer is built.
"""

from __future__ import annotations

from typing import Any

from attnzoo.attention import get_attention_class
from attnzoo.attention.arguments import check_values
from attnzoo.errors import AttnzooError, CheckpointError

MAX_CLASSES = 100_000  # ImageNet-22k has 21,843
MAX_IN_CHANS = 1024
MAX_OPS = 16
MAX_IMG_SIZE = 4096  # input side in pixels: recipes, run summaries and the commands' --img-size


def _int_in(value: Any, lo: int, hi: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and lo <= value <= hi


def check_sizes(num_classes: Any, in_chans: Any, where: str = "model") -> None:
    """Raise :class:`CheckpointError` unless the classes (0: no head) and input channels are in range."""
    if num_classes is not None and not _int_in(num_classes, 0, MAX_CLASSES):
        raise CheckpointError(f"{where}: num_classes={num_classes!r} is out of range; expected an integer in "
                              f"0..{MAX_CLASSES} (0: no classifier)")
    if in_chans is not None and not _int_in(in_chans, 1, MAX_IN_CHANS):
        raise CheckpointError(f"{where}: in_chans={in_chans!r} is out of range; expected an integer in "
                              f"1..{MAX_IN_CHANS}")


def check_config(config: Any, where: str = "model config") -> None:
    """Raise :class:`CheckpointError` naming the first malformed or out-of-range field of a model record."""
    if not isinstance(config, dict):
        raise CheckpointError(f"{where} is {type(config).__name__}, expected a JSON object")
    for key in ("architecture", "base"):
        if not isinstance(config.get(key), str) or not 0 < len(config[key]) <= 200:
            raise CheckpointError(f"{where}: {key}={config.get(key)!r} is not a model name")
    check_sizes(config.get("num_classes"), config.get("in_chans"), where)
    ops = config.get("surgery", [])
    if not isinstance(ops, list) or len(ops) > MAX_OPS or not all(isinstance(op, dict) for op in ops):
        raise CheckpointError(f"{where}: surgery must be a list of at most {MAX_OPS} operations")
    for op in ops:
        _check_op(op, where)


def _check_op(op: dict[str, Any], where: str) -> None:
    if op.get("op") == "small_input":
        if not _int_in(op.get("stride", 1), 1, 4):
            raise CheckpointError(f"{where}: small_input stride={op.get('stride')!r}; expected an integer in 1..4")
        return
    if op.get("op") != "attention":
        raise CheckpointError(f"{where}: unknown surgery operation {op.get('op')!r}; known: attention, small_input")
    stages, kwargs = op.get("stages"), op.get("kwargs", {})
    if stages is not None and (not isinstance(stages, list) or not 0 < len(stages) <= 64
                               or not all(_int_in(s, 1, 64) for s in stages)):
        raise CheckpointError(f"{where}: attention stages={stages!r}; expected a list of stage numbers 1..64")
    preserve = op.get("preserve", False)
    if not isinstance(op.get("attn"), str) or not isinstance(kwargs, dict) or not isinstance(preserve, bool):
        raise CheckpointError(f"{where}: attention operation {op!r} is malformed (attn, stages, preserve, kwargs)")
    try:
        get_attention_class(op["attn"])
        check_values(op["attn"], kwargs)
    except AttnzooError as err:
        raise CheckpointError(f"{where}: {err}") from None
