"""Doubling an image with an interpolating spline: its pixels kept, the spline through them halfway.

A bicubic kernel sampling between pixels keeps only part of pixel-level detail; a spline of high
order through the samples keeps almost all of it up to the image's own band limit. Used once per
source by :mod:`fomm.render.detail` before its warp samples the doubled source bicubically.
"""

from __future__ import annotations

import functools
import math
import weakref

import numpy as np
import torch
from scipy import ndimage
from torch import Tensor

SPLINE_ORDER = 7  # degree of the interpolating spline that doubles the source (odd)
SPLINE_TOL = 1e-5  # its half-pixel filter is cut where the taps fall below this


def bspline(x: Tensor, order: int) -> Tensor:
    """The centred B-spline of (odd) ``order`` at ``x``, by its truncated-power formula."""
    radius = (order + 1) / 2
    inside = x.abs() < radius  # outside, the formula's large terms cancel only in exact maths
    x = torch.where(inside, x, torch.zeros_like(x))
    out = torch.zeros_like(x)
    for j in range(order + 2):
        shifted = (x + radius - j).clamp(min=0)
        out += (-1) ** j * math.comb(order + 1, j) * shifted**order
    return torch.where(inside, out / math.factorial(order), torch.zeros_like(x))


@functools.cache
def half_pixel_taps(order: int = SPLINE_ORDER, tol: float = SPLINE_TOL) -> Tensor:
    """The interpolating spline of ``order`` halfway between samples, as one filter.

    The spline through samples ``x`` has B-spline coefficients ``c = p * x``, ``p`` the inverse
    of the B-spline sampled at the integers (the causal/anti-causal prefilter of
    ``scipy.ndimage.spline_filter``; Unser, "Splines: a perfect fit for signal and image
    processing", 1999); its value at ``m + 1/2`` is ``(c * b)[m]``, ``b[k] = β(k + 1/2)``. Both
    in one filter through an FFT, cut where its taps fall below ``tol``.

    Returns:
        (2L,) float64 taps ``w``: the value at ``m + 1/2`` is ``Σ_i w[i] · x[m - L + 1 + i]``.
    """
    n = 1024
    k = torch.arange(n, dtype=torch.float64)
    k = torch.where(k < n // 2, k, k - n)  # circular offsets 0..n/2-1, -n/2..-1
    # the value at m + 1/2 is Σ_j h[j] x[m - j]
    h = torch.fft.ifft(torch.fft.fft(bspline(k + 0.5, order))
                       / torch.fft.fft(bspline(k, order))).real
    half = h[: n // 2].abs()
    taps = int((half >= tol).nonzero().max()) + 1  # h[j] = h[-1 - j]: support -L .. L - 1
    offsets = torch.arange(-(taps - 1), taps + 1)  # x[m + i] is weighed by h[-i]
    w = h[(-offsets) % n]
    return w / w.sum()


def upsample2x(image: Tensor, order: int = SPLINE_ORDER) -> Tensor:
    """(B, C, H, W) → (B, C, 2H, 2W): the samples at even positions (copied exactly), the
    interpolating spline of ``order`` through them halfway (the border mirrored), per axis.

    Filtered on the CPU by ``scipy.ndimage.correlate1d`` (several times faster there than a
    one-channel torch convolution), once per source; the result goes back to ``image``'s device.
    """
    taps = half_pixel_taps(order).numpy()
    array = image.detach().cpu().numpy()
    for axis in (3, 2):  # widths, then heights
        # origin -1: the taps run from x[m - L + 1] to x[m + L] (see half_pixel_taps)
        between = ndimage.correlate1d(array, taps, axis=axis, mode="mirror", origin=-1)
        shape = list(array.shape)
        shape[axis] *= 2
        array = np.stack([array, between], axis + 1).reshape(shape)  # interleaved
    return torch.from_numpy(array).to(image.device)


_DOUBLED: dict[int, tuple[weakref.ref, Tensor]] = {}


def doubled(source: Tensor) -> Tensor:
    """:func:`upsample2x` of ``source``, computed once per source tensor (held while it lives;
    a source is never changed in place)."""
    key = id(source)
    hit = _DOUBLED.get(key)
    if hit is not None and hit[0]() is source:
        return hit[1]
    fine = upsample2x(source)
    _DOUBLED[key] = (weakref.ref(source, lambda _, key=key: _DOUBLED.pop(key, None)), fine)
    return fine
