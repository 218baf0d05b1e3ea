"""argparse ``type=`` converters for bounded numbers, shared by every subcommand."""

from __future__ import annotations

import argparse
from collections.abc import Callable


def bounded(kind: type, low: float, inclusive: bool = True,
            high: float | None = None) -> Callable[[str], float]:
    """A converter to ``kind`` that refuses values below ``low`` (or equal, if not inclusive)
    and, when given, above ``high``."""
    words = f"at least {low:g}" if inclusive else f"more than {low:g}"
    if high is not None:
        words = f"between {low:g} and {high:g}"

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a {kind.__name__}, got {text!r}") from None
        if value < low or (value == low and not inclusive) or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"must be {words}, got {text}")
        return value

    parse.__name__ = kind.__name__  # argparse names the type in its own messages
    return parse


positive_int = bounded(int, 1)
non_negative_int = bounded(int, 0)
positive_float = bounded(float, 0, inclusive=False)
non_negative_float = bounded(float, 0)
probability = bounded(float, 0, high=1)
