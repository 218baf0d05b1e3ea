#!/usr/bin/env python
"""What a face-mesh call costs (``fomm.faces.mesh``): prints a table, writes JSON to
benchmarks/results/face-mesh-cpu.json.

Measured on a 256x256 framed crop of scikit-image's astronaut, steady state (after warm-up),
one call at a time: ``detect`` with tracking (one face pass + the two-eye pass, a video's
frames), without (a first frame: a second face pass when the whole-image ROI was off), and
the networks alone, for each runtime (OpenVINO on one thread; PyTorch eager on torch's
threads). Wall time and process CPU time per call (the CPU time is what a loaded machine
cannot hide: wall time grows with other processes' load).

With ``--accuracy``, also compares with dlib's 68 landmarks (the ``metrics`` extra) on the
TUNING clips of the expression validation protocol (``../shared/data/videos-extra``, framed to
256x256 by :func:`fomm.faces.track.frame_driving`, at most 200 frames each), per clip: the
Pearson r of the lid-gap and inner-lip-gap time series (each over its own eye distance; a gap
is the mean distance between the upper and lower polylines resampled at the same 12 inner
parameters) and the mean distance between the shared contours (both resampled to 20 points by
arc length), over dlib's eye distance.

    python benchmarks/face_mesh.py [--calls 200] [--out benchmarks/results/face-mesh-cpu.json]
    python benchmarks/face_mesh.py --accuracy [--videos ../shared/data/videos-extra]
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
VIDEOS = Path(__file__).resolve().parents[2] / "shared" / "data" / "videos-extra"
TUNING = (
    "dt_w009_front_happy_level3_001",
    "dt_w009_front_surprised_level3_001",
    "dt_m030_front_happy_level3_001",
    "lp_d5",
    "lp_d7",
    "xp_driving_video",
    "sad_rd_radio2_000",
    "pcavs_681100216",
    "eamm_happy",
)
# dlib 68 contours, ordered like the mesh groups (image-left corner first)
DLIB = {
    "left_eye_upper": [36, 37, 38, 39],
    "left_eye_lower": [36, 41, 40, 39],
    "right_eye_upper": [42, 43, 44, 45],
    "right_eye_lower": [42, 47, 46, 45],
    "lips_outer_upper": list(range(48, 55)),
    "lips_outer_lower": [48, 59, 58, 57, 56, 55, 54],
    "lips_inner_upper": [60, 61, 62, 63, 64],
    "lips_inner_lower": [60, 67, 66, 65, 64],
    "jaw": list(range(17)),
    "left_brow": list(range(17, 22)),
    "right_brow": list(range(22, 27)),
    "nose_bridge": [27, 28, 29, 30],
}
# the mesh's jaw from the image-left ear to the right one (face_oval's lower part), and the
# bridge from between the eyes to the tip
MESH_JAW = [
    127,
    234,
    93,
    132,
    58,
    172,
    136,
    150,
    149,
    176,
    148,
    152,
    377,
    400,
    378,
    379,
    365,
    397,
    288,
    361,
    323,
    454,
    356,
]
MESH_BRIDGE = [168, 6, 197, 195, 5, 4]


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


def resample(polyline: np.ndarray, n: int = 20) -> np.ndarray:
    """``n`` points evenly spaced by arc length along a polyline, both ends included."""
    polyline = np.asarray(polyline, dtype=np.float64)
    arc = np.r_[0, np.cumsum(np.linalg.norm(np.diff(polyline, axis=0), axis=1))]
    t = np.linspace(0, arc[-1], n)
    return np.stack([np.interp(t, arc, polyline[:, 0]), np.interp(t, arc, polyline[:, 1])], 1)


def gap(upper: np.ndarray, lower: np.ndarray, n: int = 12) -> float:
    """Mean distance between two polylines sharing their ends, at ``n`` inner parameters."""
    a, b = resample(upper, n + 2)[1:-1], resample(lower, n + 2)[1:-1]
    return float(np.linalg.norm(a - b, axis=1).mean())


def gaps(contours: dict[str, np.ndarray], eye_distance: float) -> tuple[float, float]:
    """(lid gap, inner-lip gap) over the eye distance; the lid gap is both eyes' mean."""
    lid = (
        gap(contours["left_eye_upper"], contours["left_eye_lower"])
        + gap(contours["right_eye_upper"], contours["right_eye_lower"])
    ) / 2
    lip = gap(contours["lips_inner_upper"], contours["lips_inner_lower"])
    return lid / eye_distance, lip / eye_distance


def mesh_contours(lm: mesh.FaceLandmarks) -> dict[str, np.ndarray]:
    contours = {name: lm.group(name) for name in DLIB if name in lm.groups and "brow" not in name}
    contours["jaw"] = lm.points[MESH_JAW]
    for brow in ("left_brow", "right_brow"):
        points = lm.group(brow)
        contours[brow] = (points[:5] + points[5:]) / 2  # the brow's midline
    contours["nose_bridge"] = lm.points[MESH_BRIDGE]
    return contours


def accuracy(videos: Path, track: bool) -> dict[str, dict]:
    """Per tuning clip: gap correlations and contour errors against dlib 68."""
    from fomm.faces.landmarks import landmarks_68
    from fomm.faces.track import frame_driving
    from fomm.media.video import iter_frames

    results = {}
    for name in TUNING:
        frames = frame_driving(iter_frames(videos / f"{name}.mp4", max_frames=200), 256)
        face_mesh = mesh.FaceMesh(track=track)
        ours, theirs, errors, missed, count = [], [], {k: [] for k in DLIB}, 0, 0
        for frame in frames:
            count += 1
            faces = detect_faces(frame)
            lm = face_mesh.detect(frame)
            if lm is None or not faces:
                missed += 1
                continue
            points = landmarks_68(frame, faces[0])
            dlib = {k: points[v] for k, v in DLIB.items()}
            eyes = np.linalg.norm(points[36:42].mean(0) - points[42:48].mean(0))
            contours = mesh_contours(lm)
            ours.append(gaps(contours, lm.eye_distance()))
            theirs.append(gaps(dlib, eyes))
            for k in DLIB:
                d = np.linalg.norm(resample(contours[k]) - resample(dlib[k]), axis=1).mean()
                errors[k].append(d / eyes)
        a, b = np.array(ours), np.array(theirs)
        e = {k: float(np.mean(v)) for k, v in errors.items()}
        results[name] = {
            "frames": count,
            "missed": missed,
            "r_lid_gap": float(np.corrcoef(a[:, 0], b[:, 0])[0, 1]),
            "r_inner_lip_gap": float(np.corrcoef(a[:, 1], b[:, 1])[0, 1]),
            "lid_gap_std": {"mesh": float(a[:, 0].std()), "dlib": float(b[:, 0].std())},
            "inner_lip_gap_std": {"mesh": float(a[:, 1].std()), "dlib": float(b[:, 1].std())},
            "error_over_eye_distance": {
                "eyelids": float(np.mean([e[k] for k in DLIB if "eye" in k])),
                "lips": float(np.mean([e[k] for k in DLIB if "lips" in k])),
                "jaw": e["jaw"],
                "brows": (e["left_brow"] + e["right_brow"]) / 2,
                "nose_bridge": e["nose_bridge"],
            },
        }
        r = results[name]
        print(
            f"{name:36s} track={track!s:5s} r_lid {r['r_lid_gap']:.3f} "
            f"r_lip {r['r_inner_lip_gap']:.3f} errors "
            + " ".join(f"{k} {v:.3f}" for k, v in r["error_over_eye_distance"].items())
        )
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--out", type=Path, default=RESULTS / "face-mesh-cpu.json")
    parser.add_argument(
        "--accuracy",
        action="store_true",
        help="also compare with dlib 68 on the tuning clips (slow)",
    )
    parser.add_argument("--videos", type=Path, default=VIDEOS)
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
    if args.accuracy:
        result["accuracy_vs_dlib68"] = {
            "protocol": "TUNING clips only; see this script's docstring",
            "tracked": accuracy(args.videos, track=True),
            "untracked": accuracy(args.videos, track=False),
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
