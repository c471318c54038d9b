"""User-facing errors: one clear line on the command line, never a traceback.

Library code raises :class:`BitrobustError` (or a subclass) for anything the user can fix:
bad rates, unknown names, corrupt files. The CLI prints ``bitrobust: error: <message>`` and
exits with status 2. Programming errors stay ordinary exceptions.
"""

from __future__ import annotations

import math


class BitrobustError(Exception):
    """A problem with the user's input, reported as one line."""


def check_rate(value: float, name: str = "rate") -> float:
    """Return ``value`` as a float if it is a probability in [0, 1], else raise."""
    try:
        rate = float(value)
    except (TypeError, ValueError):
        raise BitrobustError(f"{name} must be a number in [0, 1], got {value!r}") from None
    if math.isnan(rate) or not 0.0 <= rate <= 1.0:
        raise BitrobustError(f"{name} must be in [0, 1], got {value!r}")
    return rate


def check_bits(bits: int, low: int = 2, high: int = 8) -> int:
    """Return ``bits`` if it is an integer bit width in [low, high], else raise."""
    if isinstance(bits, bool) or not isinstance(bits, int) or not low <= bits <= high:
        raise BitrobustError(f"bits must be an integer in {low}..{high}, got {bits!r}")
    return bits
