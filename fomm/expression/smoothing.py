"""Temporal smoothing of landmark arrays: the One-Euro filter (Casiez et al., CHI 2012).

A low-pass filter whose cutoff rises with the signal's speed: still landmarks are held steady
(detector jitter filtered out), moving ones follow with little lag. Frames are taken as evenly
spaced at ``rate`` frames a second.
"""

from __future__ import annotations

import math

import numpy as np


class OneEuro:
    """One-Euro filter over arrays of any fixed shape.

    Args:
        min_cutoff: cutoff frequency (Hz) at rest; lower is steadier.
        beta: how fast the cutoff rises with speed (per unit of the signal per second).
        rate: frames a second.
        d_cutoff: cutoff (Hz) of the speed estimate.
    """

    def __init__(
        self, min_cutoff: float = 1.5, beta: float = 0.5, rate: float = 25.0, d_cutoff: float = 1.0
    ) -> None:
        self.min_cutoff = min_cutoff
        self.beta = beta
        self.rate = rate
        self.d_cutoff = d_cutoff
        self.value: np.ndarray | None = None
        self._speed: np.ndarray | None = None

    def _alpha(self, cutoff: np.ndarray | float) -> np.ndarray | float:
        tau = 1.0 / (2 * math.pi * cutoff)
        return 1.0 / (1.0 + tau * self.rate)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """The filtered value of ``x`` (the first call returns ``x``)."""
        x = np.asarray(x, dtype=np.float64)
        if self.value is None or self.value.shape != x.shape:
            self.value = x.copy()
            self._speed = np.zeros_like(x)
            return x.copy()
        speed = (x - self.value) * self.rate
        a_d = self._alpha(self.d_cutoff)
        self._speed = self._speed + a_d * (speed - self._speed)
        cutoff = self.min_cutoff + self.beta * np.abs(self._speed)
        a = self._alpha(cutoff)
        self.value = self.value + a * (x - self.value)
        return self.value.copy()

    def reset(self) -> None:
        """Forget the state: the next value passes through unfiltered."""
        self.value = None
        self._speed = None
