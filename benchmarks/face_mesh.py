#!/usr/bin/env python
"""What a face-mesh call costs (``fomm.faces.mesh``): prints a table, writes JSON to
benchmarks/results/face-mesh-cpu.json.

Measured on a 256x256 framed crop of scikit-image's astronaut, steady state (after warm-up),
one call at a time: ``detect`` with tracking (one face pass + the two-eye pass, a video's
frames), without (a first frame: a second face pass when the whole-image ROI was off), and
the networks alone, for each runtime (OpenVINO on one thread; PyTorch eager on torch's
threads). Wall time and process CPU time per call (the CPU time is what a loaded machine
cannot hide: wall time grows with other processes' load).

    python benchmarks/face_mesh.py [--calls 200] [--out benchmarks/results/face-mesh-cpu.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from machine import cpu_model, machine  # noqa: E402  (benchmarks/machine.py)
from skimage import data

from fomm.faces import mesh
from fomm.faces.crop import crop, square_box
from fomm.faces.detect import detect_faces
from fomm.faces.mesh_net import OpenVinoRunner, TorchRunner

RESULTS = Path(__file__).resolve().parent / "results"


def cpu_flags() -> list[str]:
    """The CPU's vector extensions (what decides convolution speed)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                wanted = ("avx", "fma", "amx", "sse4_2", "f16c", "vnni")
                return sorted(f for f in line.split(":", 1)[1].split() if f.startswith(wanted))
    except OSError:
        pass
    return []


def timed(call: Callable[[], object], calls: int) -> dict[str, float]:
    for _ in range(max(10, calls // 10)):
        call()
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(calls):
        call()
    return {
        "wall_ms": (time.perf_counter() - wall) / calls * 1000,
        "cpu_ms": (time.process_time() - cpu) / calls * 1000,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--out", type=Path, default=RESULTS / "face-mesh-cpu.json")
    args = parser.parse_args()

    photo = data.astronaut()
    image = crop(photo, square_box(detect_faces(photo)[0], photo.shape), 256)
    face_x = mesh._sample(image, [mesh._roi_full(image.shape)], mesh.INPUT, [False])
    eyes_x = np.concatenate([face_x[:, :, :64, :64]] * 2)
    rows = []
    for backend in ("openvino", "torch"):
        os.environ["FOMM_MESH_BACKEND"] = backend
        tracked, fresh = mesh.FaceMesh(track=True), mesh.FaceMesh()
        face_net = (OpenVinoRunner if backend == "openvino" else TorchRunner)(mesh.WEIGHTS)
        eye_net = (OpenVinoRunner if backend == "openvino" else TorchRunner)(mesh.IRIS_WEIGHTS)
        row = {
            "backend": backend,
            "threads": 1 if backend == "openvino" else torch.get_num_threads(),
            "detect_tracked": timed(lambda m=tracked: m.detect(image), args.calls),
            "detect_untracked": timed(lambda m=fresh: m.detect(image), args.calls // 2),
            "face_network": timed(lambda n=face_net: n(face_x), args.calls),
            "eye_network_x2": timed(lambda n=eye_net: n(eyes_x), args.calls),
        }
        rows.append(row)
        print(
            f"{backend:9s} "
            + "  ".join(
                f"{k} {v['wall_ms']:.2f} ms (cpu {v['cpu_ms']:.2f})"
                for k, v in row.items()
                if isinstance(v, dict)
            )
        )
    result = {
        "machine": machine(),
        "cpu": cpu_model(),
        "cpu_flags": cpu_flags(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "openvino": _version("openvino"),
        "load_average_at_start": list(os.getloadavg()),
        "image": "256x256 framed crop of skimage.data.astronaut()",
        "calls": args.calls,
        "note": "ms per call, steady state, one call at a time; wall time on a 2-core VM shared "
        "with other sessions (see the load average): the CPU time is the steadier figure",
        "results": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {args.out}")


def _version(package: str) -> str | None:
    try:
        from importlib.metadata import version

        return version(package)
    except Exception:  # noqa: BLE001
        return None


if __name__ == "__main__":
    main()
