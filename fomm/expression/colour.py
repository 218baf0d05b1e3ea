"""Colour of drawn-in features: pixels taken from the driving frame (an eye, a mouth's interior)
take the chroma of the image they are drawn on (a black-and-white photo gets a grey eye and grey
teeth), their luma kept.

Chroma is full-range BT.601 (Cb, Cr). :func:`chroma_stats` gives the mean and spread of an
area's chroma; :func:`tinted` moves pixels' chroma from one such statistic to another.
"""

from __future__ import annotations

import cv2
import numpy as np

# full-range BT.601 chroma of RGB: (Cb, Cr) rows; back to RGB from luma and chroma
CHROMA = np.array([[-0.168736, -0.331264, 0.5], [0.5, -0.418688, -0.081312]])
FROM_CHROMA = np.array([[0.0, 1.402], [-0.344136, -0.714136], [1.772, 0.0]])


def chroma_stats(pixels: np.ndarray) -> np.ndarray:
    """Mean and spread (2, 2: rows mean, std; columns Cb, Cr) of the chroma of ``pixels``
    (any shape ending in 3 RGB channels)."""
    chroma = pixels.reshape(-1, 3).astype(np.float64) @ CHROMA.T
    return np.stack([chroma.mean(0), chroma.std(0)])


def masked_chroma_stats(
    patch: np.ndarray, mask: np.ndarray, gain: np.ndarray | None = None
) -> np.ndarray:
    """:func:`chroma_stats` of the pixels of ``patch`` (uint8 RGB) where ``mask`` (uint8, its
    size) is set, all of them where none is, each channel times ``gain`` if given (float32
    sums: agrees with :func:`chroma_stats` to about 1e-5)."""
    matrix = CHROMA if gain is None else CHROMA * np.asarray(gain, dtype=np.float64)
    chroma = cv2.transform(patch[..., :3].astype(np.float32), matrix.astype(np.float32))
    mean, std = cv2.meanStdDev(chroma, mask=mask if mask.any() else None)
    return np.stack([mean[:, 0], std[:, 0]])


def tinted(inside: np.ndarray, photo: np.ndarray, driver: np.ndarray) -> np.ndarray:
    """``inside`` (float RGB) with its chroma moved from the ``driver``'s statistics to the
    ``photo``'s (:func:`chroma_stats`): its mean shifted, its spread scaled down to the photo's
    (kept where the photo's is the wider); its luma kept."""
    chroma = inside @ CHROMA.T
    luma = inside - chroma @ FROM_CHROMA.T  # R, G and B less their chroma parts: the luma
    scale = np.clip(photo[1] / np.maximum(driver[1], 1e-6), 0.0, 1.0)
    chroma = photo[0] + (chroma - driver[0]) * scale
    return luma + chroma @ FROM_CHROMA.T
