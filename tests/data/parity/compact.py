"""Rebuild this folder from the full parity fixtures: ``python compact.py SHARED``.

The full fixtures (``SHARED/fixtures/fomm-parity`` and ``SHARED/fixtures/paddlegan-parity``,
≈ 10 MB) are compacted without changing what the tests can check (see README.md here):

* checkpoints and configs are not copied: the tests read them from ../shared/fixtures;
* the input frames are stored once, as the uint8 frames they were made from (the float inputs are
  ``float32(u8) / 255``, rebuilt exactly by tests/parity_data.py);
* float32 outputs larger than 16 KiB are stored as 16-bit codes over their own [lo, hi] range
  (``key__q16`` + ``key__range``); the largest rounding error is stored too (``key__qerr``)
  and the tests subtract it from their tolerance, so a pass still proves ``atol`` against the
  original numbers;
* PaddleGAN's ``prediction_<mode>_q16`` (already 16-bit) keep every frame at a quarter of the
  resolution (``[:, :, ::4, ::4]``) and the last frame in full.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
FOMM_FRAMES = [0, 8, 16, 24, 32]  # decode order of the original fixture's driving frames
PADDLE_FRAMES = [0, 1, 2, 3]


def quantize(out: dict[str, np.ndarray], key: str, value: np.ndarray) -> None:
    """Store ``value`` as uint16 codes over its range, with the range and the largest error."""
    lo, hi = float(value.min()), float(value.max())
    codes = np.round((value.astype(np.float64) - lo) / (hi - lo) * 65535).astype(np.uint16)
    restored = (lo + codes.astype(np.float64) / 65535 * (hi - lo)).astype(np.float32)
    out[f"{key}__q16"] = codes
    out[f"{key}__range"] = np.array([lo, hi])
    out[f"{key}__qerr"] = np.array(np.abs(restored.astype(np.float64) - value).max())


def compact_outputs(expected: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Float32 arrays over 16 KiB → 16-bit codes; everything else unchanged."""
    out: dict[str, np.ndarray] = {}
    for key, value in expected.items():
        if value.dtype == np.float32 and value.nbytes > 16384:
            quantize(out, key, value)
        elif key.startswith("prediction_") and key.endswith("_q16"):
            out[f"{key}_sub4"] = value[:, :, ::4, ::4]
            out[f"{key}_last"] = value[-1:]
        else:
            out[key] = value
    return out


def main(shared: Path) -> None:
    fomm, paddle = shared / "fixtures" / "fomm-parity", shared / "fixtures" / "paddlegan-parity"
    for name in ("fomm-parity", "paddlegan-parity"):
        (HERE / name).mkdir(exist_ok=True)  # checkpoints and configs stay in ../shared
    fi, pi = np.load(fomm / "inputs.npz"), np.load(paddle / "inputs.npz")
    source = np.round(fi["source"][0] * 255).astype(np.uint8).transpose(1, 2, 0)
    driving = np.round(fi["driving"] * 255).astype(np.uint8).transpose(0, 2, 3, 1)
    assert np.array_equal(source.transpose(2, 0, 1)[None].astype(np.float32) / 255, fi["source"])
    assert np.array_equal(driving.transpose(0, 3, 1, 2).astype(np.float32) / 255, fi["driving"])
    assert np.array_equal(source, pi["source_u8"])
    assert np.array_equal(driving[0], pi["driving_u8"][0])
    frames = {0: driving[0], **dict(zip(FOMM_FRAMES[1:], driving[1:])),
              **dict(zip(PADDLE_FRAMES[1:], pi["driving_u8"][1:]))}
    order = sorted(frames)
    np.savez_compressed(HERE / "inputs.npz", source_u8=source,
                        frames_u8=np.stack([frames[i] for i in order]),
                        frame_index=np.array(order), fps=pi["fps"])
    for src, name in [(fomm, "fomm-parity"), (paddle, "paddlegan-parity")]:
        np.savez_compressed(HERE / name / "expected.npz",
                            **compact_outputs(dict(np.load(src / "expected.npz"))))


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else HERE.parents[3] / ".." / "shared"))
