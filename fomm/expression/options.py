"""What the expression layer does: the region it drives, its strength and the three sliders."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

from fomm.errors import ConfigError

Region = Literal["all", "pose", "expression", "eyes", "lips"]
REGIONS: tuple[str, ...] = get_args(Region)


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
        if not 0.0 <= float(self.scale) <= 2.0:
            raise ConfigError(f"expression scale {self.scale} is outside 0..2")
        for name in ("eyes", "mouth", "smile"):
            value = float(getattr(self, name))
            if not -1.0 <= value <= 1.0:
                raise ConfigError(f"expression {name} offset {value} is outside -1..1")


def uses_networks(region: Region) -> bool:
    """Whether ``region`` renders on the FOMM result (``all``, ``pose``) rather than the photo."""
    if region not in REGIONS:
        raise ConfigError(f"expression region {region!r} is not one of {', '.join(REGIONS)}")
    return region in ("all", "pose")
