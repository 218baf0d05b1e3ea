"""The parity fixtures: checkpoints and configs from ``../shared/fixtures`` or made at test time,
inputs and expected outputs from the compact copies in tests/data/parity, rebuilt as the tests
read them.

See tests/data/parity/README.md for where they come from and how they were compacted. The
fixture parity tests run on every source in :data:`SOURCES`: ``"shared"``, the fixtures in
``../shared/fixtures`` (or ``$FOMM_FIXTURES``) where that folder is there, and always
``"generated"``, a random-weight model in the same layout with expected outputs computed by the
reference code from PyPI (tests/parity/generated.py). Nothing skips when ../shared is absent.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

PARITY = Path(__file__).resolve().parent / "data" / "parity"  # inputs, compact expected.npz
SHARED = Path(os.environ.get("FOMM_FIXTURES",
                             Path(__file__).resolve().parents[2] / "shared" / "fixtures"))
FOMM_FIXTURE = SHARED / "fomm-parity"          # checkpoint.pth.tar, config.yaml
PADDLE_FIXTURE = SHARED / "paddlegan-parity"   # weights.pdparams, config.yaml
HAS_SHARED = ((FOMM_FIXTURE / "checkpoint.pth.tar").is_file()
              and (PADDLE_FIXTURE / "weights.pdparams").is_file())
SOURCES = ("shared", "generated") if HAS_SHARED else ("generated",)
# The shared fixtures were computed on another CPU, whose float kernels (vector width, oneDNN's
# blocking, AMX or not) round differently: on an AVX-512/AMX Xeon the reference code itself (from
# PyPI) differs from them by 5e-6 on keypoints, 5e-7 on PaddleGAN's, and a random network
# amplifies that to ~2e-4 on its outputs. Checks against them allow CROSS_CPU_ATOL; against the
# generated fixture (the reference code run on this machine) the strict tolerances hold.
CROSS_CPU_ATOL = 5e-4
CROSS_CPU_REL = 1e-5  # relative, for scalars such as the adapt-scale factor
MODES = {"rel_adapt": (True, True), "rel": (True, False), "abs": (False, False)}  # relative, adapt
FOMM_FRAMES = [0, 8, 16, 24, 32]  # driving frames of the original's fixture (decode order)
PADDLE_FRAMES = [0, 1, 2, 3]      # driving frames of PaddleGAN's fixture


def _frames(indices: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """(source (256, 256, 3), driving (T, 256, 256, 3)) uint8 RGB frames of PaddleGAN's example."""
    data = np.load(PARITY / "inputs.npz")
    where = {int(i): k for k, i in enumerate(data["frame_index"])}
    return data["source_u8"], data["frames_u8"][[where[i] for i in indices]]


def fomm_inputs() -> dict[str, np.ndarray]:
    """The original fixture's ``inputs.npz``: ``source`` (1, 3, 256, 256) and ``driving``
    (5, 3, 256, 256), float32 ``float32(u8) / 255`` exactly as stored there."""
    source, driving = _frames(FOMM_FRAMES)
    def nchw(u8: np.ndarray) -> np.ndarray:  # contiguous, as stored: strides change the sums
        return np.ascontiguousarray(u8.transpose(0, 3, 1, 2)).astype(np.float32) / np.float32(255)

    return {"source": nchw(source[None]), "driving": nchw(driving)}


def paddle_inputs() -> dict[str, np.ndarray]:
    """PaddleGAN's fixture ``inputs.npz``: ``source_u8`` (256, 256, 3), ``driving_u8``
    (4, 256, 256, 3) uint8 RGB and ``fps``."""
    source, driving = _frames(PADDLE_FRAMES)
    return {"source_u8": source, "driving_u8": driving,
            "fps": np.load(PARITY / "inputs.npz")["fps"]}


def expected(fixture: Path) -> tuple[dict[str, np.ndarray], dict[str, float]]:
    """A fixture's expected outputs and, per key, the storage error to take off the tolerance.

    16-bit codes come back as float32 (error ``key__qerr``); PaddleGAN's predictions come back
    as ``prediction_<mode>_q16_sub4`` (every frame, ``[:, :, ::4, ::4]``) and
    ``prediction_<mode>_q16_last`` (the last frame in full), still 16-bit as in the original.
    """
    data = dict(np.load(PARITY / fixture.name / "expected.npz"))
    out: dict[str, np.ndarray] = {}
    error: dict[str, float] = {}
    for key, value in data.items():
        if key.endswith("__q16"):
            name = key[: -len("__q16")]
            lo, hi = data[f"{name}__range"]
            out[name] = (lo + value.astype(np.float64) / 65535 * (hi - lo)).astype(np.float32)
            error[name] = float(data[f"{name}__qerr"])
        elif not key.endswith(("__range", "__qerr")):
            out[key] = value
    return out, error


@dataclass(frozen=True)
class Source:
    """One fixture the parity tests compare against.

    ``expected`` holds the reference outputs by key and ``error`` the storage error to take off
    the tolerance per key (the compact copy's 16-bit codes; none for a generated fixture).
    """

    name: str  # "shared" or "generated"
    checkpoint: Path
    config: Path
    expected: dict[str, np.ndarray]
    error: dict[str, float]


def tolerance(name: str, strict: float, cross_cpu: float = CROSS_CPU_ATOL) -> float:
    """The tolerance of a check against fixture source ``name``: ``strict`` on the generated
    fixture, at least ``cross_cpu`` on the shared one (made on another CPU)."""
    return max(strict, cross_cpu) if name == "shared" else strict


def source(request: pytest.FixtureRequest, kind: str) -> Source:
    """The fixture source ``request.param`` (one of :data:`SOURCES`) for ``kind``
    (``"fomm"``: the original's training checkpoint; ``"paddle"``: PaddleGAN's weights)."""
    if request.param == "shared":
        folder = FOMM_FIXTURE if kind == "fomm" else PADDLE_FIXTURE
        name = "checkpoint.pth.tar" if kind == "fomm" else "weights.pdparams"
        return Source("shared", folder / name, folder / "config.yaml", *expected(folder))
    made = request.getfixturevalue("original_fixture" if kind == "fomm" else "paddle_fixture")
    return Source("generated", made.checkpoint, made.config, made.expected(), {})
