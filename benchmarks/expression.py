#!/usr/bin/env python
"""What the expression layer costs per frame: prints a table and writes JSON to benchmarks/results/.

``ExpressionLayer.apply`` on the astronaut portrait (``skimage.data``) at several crop sides,
driven by the same crop with its jaw dropped (so the warp, the eyelids and the mouth fill all
run), with the two FaceMesh calls per frame taken out (their landmarks replayed from a first
pass; FaceMesh's own cost is measured apart, on a 256 crop). Regions ``all`` (the result's
landmarks detected, a similarity pose) and ``expression`` (the photo's own landmarks reused).
Median over ``--frames`` calls after a warm-up, wall clock and the process's CPU time; also its
parts (warp field, remap, mouth fill).

    python benchmarks/expression.py [--frames 30] [--sizes 256 512 1024]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from functools import partial
from pathlib import Path

import cv2
import numpy as np
from machine import machine  # noqa: E402  (benchmarks/machine.py)
from skimage.data import astronaut

from fomm.expression import ExpressionLayer, ExpressionOptions, geometry, mouth, warp
from fomm.faces.mesh import FaceMesh

# CPU ms of the last median_ms call: on a machine shared with other jobs, the process's own CPU
# time is close to what a call costs on an idle one (single-threaded work)
CPU_MS: list[float] = []
RESULTS = Path(__file__).resolve().parent / "results" / "expression-cpu.json"


class Replay:
    """FaceMesh's answers for images seen before, looked up by a pixel sample (no network)."""

    def __init__(self, mesh: FaceMesh) -> None:
        self.mesh = mesh
        self.answers: dict[tuple, object] = {}

    @staticmethod
    def key(image: np.ndarray) -> tuple:
        return image.shape, image[::16, ::16].tobytes()

    def learn(self, image: np.ndarray) -> None:
        """Detect on ``image`` as the layer will (a copy of at most 256 pixels)."""
        if image.shape[0] > 256:
            image = cv2.resize(image, (256, 256), interpolation=cv2.INTER_AREA)
        self.answers[self.key(image)] = self.mesh.detect(image)

    def detect(self, image: np.ndarray, box: object = None):
        return self.answers[self.key(image)]


def median_ms(fn, frames: int) -> float:
    """Median wall-clock ms of ``fn()`` over ``frames`` calls after a warm-up (also recorded:
    the median CPU ms of this process, see :data:`CPU_MS`)."""
    fn()
    wall, cpu = [], []
    for _ in range(frames):
        start, start_cpu = time.perf_counter(), time.process_time()
        fn()
        wall.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    CPU_MS.append(float(np.median(cpu) * 1e3))
    return float(np.median(wall) * 1e3)


def jaw_dropped(crop: np.ndarray, mesh: FaceMesh) -> np.ndarray:
    found = mesh.detect(crop)
    pts, groups = np.asarray(found.points, np.float64), found.groups
    dist, axes = geometry.face_axes(pts, groups)
    below = (pts - pts[groups["lips_inner_upper"]].mean(0)) @ axes[:, 1] > 0
    moved = pts + np.outer(below * 0.15 * dist, axes[:, 1])
    idx = np.unique(np.concatenate(list(groups.values())))
    oval = groups["face_oval"]
    return warp.warp(crop, pts[idx], moved[idx], np.vstack([pts[oval], moved[oval]]))


def measure(
    size: int, base: np.ndarray, driving: np.ndarray, mesh: FaceMesh, frames: int
) -> dict[str, float | int]:
    """One table row: ``apply`` and its parts at a crop side of ``size``."""
    photo = cv2.resize(base, (size, size), interpolation=cv2.INTER_CUBIC)
    result = photo.copy()
    result[0, 0] += 1  # region all: not the photo, so its landmarks are "detected"
    replay = Replay(mesh)
    for image in (photo, result, driving, base):
        replay.learn(image)
    row: dict[str, float | int] = {"size": size}
    for region in ("all", "expression"):
        layer = ExpressionLayer(photo, ExpressionOptions(region=region), mesh=replay)
        layer.set_reference(base)  # the driving frame's jaw is dropped from there
        target = result if region == "all" else photo
        row[f"{region}_ms"] = median_ms(partial(layer.apply, target, driving), frames)
        row[f"{region}_cpu_ms"] = CPU_MS[-1]
    found = mesh.detect(base)
    groups = found.groups
    pts = np.asarray(found.points, np.float64) * size / 256
    moved_small = np.asarray(mesh.detect(driving).points, np.float64)
    moved = moved_small * size / 256
    idx = np.unique(np.concatenate(list(groups.values())))
    oval = np.vstack([pts[groups["face_oval"]], moved[groups["face_oval"]]])
    row["warp_field_ms"] = median_ms(
        partial(warp.displacement, pts[idx], moved[idx], oval, photo.shape[:2]), frames
    )
    field = warp.displacement(pts[idx], moved[idx], oval, photo.shape[:2])
    row["warp_field_cpu_ms"] = CPU_MS[-1]
    row["warp_remap_ms"] = median_ms(partial(warp.remap, photo, field), frames)
    row["warp_remap_cpu_ms"] = CPU_MS[-1]
    dist, _ = geometry.face_axes(moved, groups)
    row["mouth_fill_ms"] = median_ms(
        partial(mouth.fill_mouth, photo, moved, groups, driving, moved_small, 1.0, dist), frames
    )
    row["mouth_fill_cpu_ms"] = CPU_MS[-1]
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=30)
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 512, 1024])
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    mesh = FaceMesh()
    base = cv2.resize(astronaut()[30:250, 120:340], (256, 256), interpolation=cv2.INTER_AREA)
    driving = jaw_dropped(base, mesh)
    report = {
        "machine": machine(),
        "load_average_at_start": list(os.getloadavg()),
        "note": "ms per frame, median: *_ms wall clock, *_cpu_ms this process's CPU time (on a "
        "machine shared with other jobs, close to the cost on an idle one); FaceMesh calls "
        "replayed (their own cost: face_mesh_ms, one call on a 256 crop)",
        "face_mesh_ms": median_ms(lambda: mesh.detect(base), args.frames),
        "face_mesh_cpu_ms": CPU_MS[-1],
        "apply_ms": [],
    }
    for size in args.sizes:
        row = measure(size, base, driving, mesh, args.frames)
        report["apply_ms"].append(row)
        print("  ".join(f"{k} {v:.2f}" if isinstance(v, float) else f"{k} {v}"
                        for k, v in row.items()))  # fmt: skip
    print(
        f"FaceMesh on a 256 crop: {report['face_mesh_ms']:.2f} ms "
        f"(CPU {report['face_mesh_cpu_ms']:.2f} ms)"
    )
    report["load_average_at_end"] = list(os.getloadavg())
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
