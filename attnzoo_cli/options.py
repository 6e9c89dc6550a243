"""Range checks shared by the commands' numeric options (argparse checks only that they are numbers)."""

from __future__ import annotations

import argparse
import math


def check_at_least(args: argparse.Namespace, limits: tuple[tuple[str, str, float] | tuple[str, str, float, float], ...]
                   ) -> None:
    """Raise a one-line error for the first ``(option, attribute, least[, most])`` whose given value is below
    ``least``, above ``most`` or not finite (unset options, ``None``, are left to their defaults)."""
    from attnzoo.errors import UsageError

    for flag, attr, least, *most in limits:
        value = getattr(args, attr)
        if value is not None and (not math.isfinite(value) or value < least):
            raise UsageError(f"{flag} {value}: must be at least {least:g}")
        if value is not None and most and value > most[0]:
            raise UsageError(f"{flag} {value}: must be at most {most[0]:g}")


def image_side(flag: str, attr: str) -> tuple[str, str, int, int]:
    """The range of an input-side option for :func:`check_at_least`: 8 px up to the largest side a recipe
    takes (a larger one would ask for gigabytes before the first layer runs)."""
    from attnzoo.models.config_check import MAX_IMG_SIZE

    return flag, attr, 8, MAX_IMG_SIZE



def process_counts() -> tuple[tuple[str, str, int, int], ...]:
    """Ranges of ``--threads`` and ``--workers`` for :func:`check_at_least`: a recipe's bounds on threads
    and data.workers."""
    from attnzoo.train.validation import MAX_THREADS, MAX_WORKERS

    return ("--threads", "threads", 1, MAX_THREADS), ("--workers", "workers", 0, MAX_WORKERS)
