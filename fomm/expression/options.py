"""What the expression layer does: the region it drives, its strength and the three sliders."""

from __future__ import annotations

from dataclasses import dataclass

from fomm.config import ANIMATION_REGIONS as REGIONS
from fomm.config import EXPRESSION_OFFSET_RANGE, EXPRESSION_SCALE_RANGE, Region
from fomm.errors import ConfigError

__all__ = ["REGIONS", "ExpressionOptions", "Region", "uses_networks"]


@dataclass(frozen=True)
class ExpressionOptions:
    """The expression layer's settings; replaceable between frames (sliders, live keys).

    Attributes:
        region: what follows the driver. ``all``: the head from the FOMM result and the driver's
            expression; ``pose``: the head from the FOMM result, the photo's own expression kept;
            ``expression``: the photo's head stays, the driver's expression follows; ``eyes`` /
            ``lips``: only the eyelids (the lips) follow, everything else stays.
        scale: strength of the driver's expression, 0 (none) .. 2 (doubled).
        eyes: eye openness offset, -1 (closed) .. +1 (wide).
        mouth: mouth openness offset, -1 (pressed shut) .. +1 (wide open).
        smile: smile offset (mouth corners out and up), -1 (down) .. +1 (broad smile).
    """

    region: Region = "all"
    scale: float = 1.0
    eyes: float = 0.0
    mouth: float = 0.0
    smile: float = 0.0

    def __post_init__(self) -> None:
        if self.region not in REGIONS:
            raise ConfigError(
                f"expression region {self.region!r} is not one of {', '.join(REGIONS)}"
            )
        low, high = EXPRESSION_SCALE_RANGE
        if not low <= float(self.scale) <= high:
            raise ConfigError(f"expression scale {self.scale} is outside {low:g}..{high:g}")
        low, high = EXPRESSION_OFFSET_RANGE
        for name in ("eyes", "mouth", "smile"):
            value = float(getattr(self, name))
            if not low <= value <= high:
                raise ConfigError(f"expression {name} offset {value} is outside {low:g}..{high:g}")


def uses_networks(region: Region) -> bool:
    """Whether ``region`` renders on the FOMM result (``all``, ``pose``) rather than the photo."""
    if region not in REGIONS:
        raise ConfigError(f"expression region {region!r} is not one of {', '.join(REGIONS)}")
    return region in ("all", "pose")
