"""argparse ``type=`` converters for bounded numbers, shared by every subcommand."""

from __future__ import annotations

import argparse
from collections.abc import Callable


def bounded(kind: type, low: float, inclusive: bool = True) -> Callable[[str], float]:
    """A converter to ``kind`` that refuses values below ``low`` (or equal, if not inclusive)."""
    words = f"at least {low:g}" if inclusive else f"more than {low:g}"

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a {kind.__name__}, got {text!r}") from None
        if value < low or (value == low and not inclusive):
            raise argparse.ArgumentTypeError(f"must be {words}, got {text}")
        return value

    parse.__name__ = kind.__name__  # argparse names the type in its own messages
    return parse


positive_int = bounded(int, 1)
non_negative_int = bounded(int, 0)
positive_float = bounded(float, 0, inclusive=False)
non_negative_float = bounded(float, 0)
