"""Jitter filters for live input: the One-Euro filter on keypoints and face boxes.

One-Euro (Casiez, Roussel and Vogel, CHI 2012): an exponential low-pass filter whose cutoff rises
with the signal's speed, so that a still face does not jitter and a moving one does not lag:

    α(f_c, Δt) = 1 / (1 + 1 / (2π f_c Δt))
    dx̂_t = α(f_d) · (x_t − x̂_{t−1}) / Δt + (1 − α(f_d)) · dx̂_{t−1}
    f_c = f_min + β · |dx̂_t|
    x̂_t = α(f_c) · x_t + (1 − α(f_c)) · x̂_{t−1}

Element-wise on numpy arrays or torch tensors alike, with timestamps in seconds.
"""

from __future__ import annotations

import math
from typing import Any

from fomm.models.motion import Keypoints

KP_MIN_CUTOFF = 1.0  # Hz: below this a still keypoint's jitter is removed
KP_BETA = 1.0  # per (unit of [-1, 1] coordinates per second): cutoff rise with speed
BOX_MIN_CUTOFF = 1.0  # Hz, for the face box in pixels
BOX_BETA = 0.02  # per (pixel per second)
D_CUTOFF = 1.0  # Hz, for the speed estimate


def _alpha(cutoff: Any, dt: float) -> Any:
    return 1.0 / (1.0 + 1.0 / (2 * math.pi * cutoff * dt))


class OneEuroFilter:
    """One-Euro filter of an array-valued signal (numpy array or torch tensor).

    Args:
        min_cutoff: cutoff frequency (Hz) at rest; lower is smoother and laggier.
        beta: how fast the cutoff rises with speed; higher lags less on fast motion.
        d_cutoff: cutoff (Hz) of the speed estimate.
    """

    def __init__(
        self, min_cutoff: float = KP_MIN_CUTOFF, beta: float = KP_BETA, d_cutoff: float = D_CUTOFF
    ) -> None:
        if min_cutoff <= 0 or beta < 0 or d_cutoff <= 0:
            raise ValueError(
                f"One-Euro needs min_cutoff > 0, beta ≥ 0, d_cutoff > 0; got "
                f"{min_cutoff}, {beta}, {d_cutoff}"
            )
        self.min_cutoff, self.beta, self.d_cutoff = min_cutoff, beta, d_cutoff
        self.reset()

    def reset(self) -> None:
        """Forget the past: the next sample passes unchanged."""
        self._x: Any = None
        self._dx: Any = 0.0
        self._t: float | None = None

    def __call__(self, x: Any, t: float) -> Any:
        """Filter sample ``x`` taken at time ``t`` (seconds, increasing); same type and shape."""
        if self._x is None or self._t is None:
            self._x, self._t = x, t
            return x
        dt = t - self._t
        if dt <= 0:  # the same instant again: nothing new to learn
            return self._x
        dx = (x - self._x) / dt
        a_d = _alpha(self.d_cutoff, dt)
        self._dx = a_d * dx + (1 - a_d) * self._dx
        a = _alpha(self.min_cutoff + self.beta * abs(self._dx), dt)
        self._x = a * x + (1 - a) * self._x
        self._t = t
        return self._x


class KeypointSmoother:
    """One-Euro filters on keypoint positions and jacobians, for one tracked face.

    Args:
        min_cutoff, beta: as for :class:`OneEuroFilter`; the defaults suit [-1, 1] coordinates.
    """

    def __init__(self, min_cutoff: float = KP_MIN_CUTOFF, beta: float = KP_BETA) -> None:
        self.value = OneEuroFilter(min_cutoff, beta)
        self.jacobian = OneEuroFilter(min_cutoff, beta)

    def reset(self) -> None:
        """Start afresh (the face was lost)."""
        self.value.reset()
        self.jacobian.reset()

    def __call__(self, kp: Keypoints, t: float) -> Keypoints:
        """Smoothed keypoints of a frame taken at ``t`` seconds: (1, K, 2) and (1, K, 2, 2)."""
        jacobian = None if kp.jacobian is None else self.jacobian(kp.jacobian, t)
        return Keypoints(self.value(kp.value, t), jacobian)
