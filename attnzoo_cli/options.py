"""Range checks shared by the commands' numeric options (argparse checks only that they are numbers)."""

from __future__ import annotations

import argparse
import math


def check_at_least(args: argparse.Namespace, limits: tuple[tuple[str, str, float], ...]) -> None:
    """Raise a one-line error for the first ``(option, attribute, least)`` whose given value is below
    ``least`` or not finite (unset options, ``None``, are left to their defaults)."""
    from attnzoo.errors import UsageError

    for flag, attr, least in limits:
        value = getattr(args, attr)
        if value is not None and (not math.isfinite(value) or value < least):
            raise UsageError(f"{flag} {value}: must be at least {least:g}")
