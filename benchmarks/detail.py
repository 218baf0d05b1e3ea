#!/usr/bin/env python
"""What ``--detail`` costs and gains: prints a table and writes JSON to benchmarks/results/.

* cost: ms per frame of the networks alone (bundled fomm-face-256 config, random weights:
  speed does not depend on the values), and what rendering at a 512² and 1024² face box adds
  (``fomm.render.detail``: the spline sampler, the default, and the former bicubic one, side by
  side;
  the spline sampler's once-per-source doubling apart) and what pasting it back adds; the
  whole detail step as ``animate`` runs it (``render_batched``) and its parts, now and in the
  implementation of ``--reference-rev`` (loaded from git), side by side, with the largest
  difference of their frames;
* gain (with ``--images``): face-box sharpness of ``fomm animate`` results, detail off, on with
  the bicubic sampler and on (spline), as a share of the photo's (variance of the Laplacian
  inside the detected face box).

    python benchmarks/detail.py [--frames 8] [--device cpu]
    python benchmarks/detail.py --images '../shared/data/images/lp_*.jpg' \
        --driving ../shared/data/videos/lp_d12.mp4 [--save-frames DIR]
"""

from __future__ import annotations

import argparse
import glob
import importlib.util
import json
import os
import subprocess
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from unittest import mock

import cv2
import numpy as np
import torch
from machine import machine  # noqa: E402  (benchmarks/machine.py)

from fomm.config import AnimateOptions, load_config
from fomm.faces.paste import Paster
from fomm.inference.animator import Animator
from fomm.media.image import read_image, to_frames
from fomm.models import build_models
from fomm.render import detail, spline

RESULTS = Path(__file__).resolve().parent / "results"
REFERENCE_REV = "724dbef813adae50958473f1554bda0563e1abaf"  # detail.py before the cv2 resizes


def reference_detail(rev: str):
    """fomm/render/detail.py as of git revision ``rev``, imported as its own module."""
    root = Path(__file__).resolve().parents[1]
    text = subprocess.run(["git", "show", f"{rev}:fomm/render/detail.py"], cwd=root, check=True,
                          capture_output=True, text=True).stdout
    path = Path(tempfile.mkdtemp()) / "detail_reference.py"
    path.write_text(text)
    spec = importlib.util.spec_from_file_location("detail_reference", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _timed(fn, device: torch.device, repeat: int) -> float:
    fn()  # warm-up
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(repeat):
        fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / repeat


def _side_by_side(fns: dict[str, Callable[[], object]], device: torch.device,
                  repeat: int) -> dict[str, float]:
    """Median seconds per call of each function, the calls taken in turn (a change of load
    on a shared machine then falls on all of them alike)."""
    times: dict[str, list[float]] = {name: [] for name in fns}
    for fn in fns.values():
        fn()  # warm-up
    for _ in range(repeat):
        for name, fn in fns.items():
            times[name].append(_once(fn, device))
    return {name: float(np.median(t)) for name, t in times.items()}


def _once(fn: Callable[[], object], device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def cost(device: str, frames: int, sizes: list[int], repeat: int,
         reference_rev: str = REFERENCE_REV) -> list[dict]:
    """ms/frame: networks, + detail render per sampler, + paste at the detail resolution; the
    spline sampler's doubling of the source (once per source, not per frame); the whole
    detail step and its parts, now and at ``reference_rev``."""
    before = reference_detail(reference_rev)
    torch.manual_seed(0)
    cfg = load_config("fomm-face-256").model
    animator = Animator(build_models(cfg), cfg, device=device, precision="fp32")
    rng = np.random.default_rng(0)
    s = animator.size
    driving = animator.to_model_input([rng.integers(0, 255, (s, s, 3), np.uint8)
                                       for _ in range(frames)])
    kp = animator.keypoints(driving)
    rows = []
    for size in sizes:
        photo = rng.integers(0, 255, (size + 64, size + 64, 3), np.uint8)
        box = (32, 32, 32 + size, 32 + size)
        source = animator.prepare_source(photo[32:-32, 32:-32], detail=photo[32:-32, 32:-32])
        plain = animator.prepare_source(photo[32:-32, 32:-32])
        net = _timed(partial(animator.generate, plain, kp), animator.device, repeat)
        row = {"face_box": size, "batch": frames, "networks_ms": 1000 * net / frames}
        with torch.inference_mode():
            out = animator.generator(source.image, kp, source.kp.expand(frames),
                                     encoded=source.encoding, with_deformed=False)
            grid = detail.upsample_deformation(animator.generator, out.deformation.float(),
                                               size, s)
            fns = {}
            for sampler in ("bicubic", "spline"):  # spline: the source doubled once, cached
                fns[f"detail_{sampler}_ms"] = partial(detail.render, animator.generator, out,
                                                      source.detail, sampler=sampler)
                fns[f"warp_{sampler}_ms"] = partial(detail.sharp_warp, source.detail, grid,
                                                    animator.generator.align_corners, sampler)
            gen, net = animator.generator, out.prediction.float()
            mask, band = detail.copy_mask(out), max(8, min(s, round(s * detail.CUTOFF)))
            sharp = detail.sharp_warp(source.detail, grid, gen.align_corners)
            for name, module in (("", detail), ("_before", before)):
                fns[f"step{name}_ms"] = partial(module.render_batched, gen, out, source.detail)
                fns[f"step_motion{name}_ms"] = partial(
                    module.upsample_deformation, gen, out.deformation.float(), size, s)
                fns[f"step_warp{name}_ms"] = partial(module.sharp_warp, source.detail, grid,
                                                     gen.align_corners)
                fns[f"step_combine{name}_ms"] = partial(module.combine, net, sharp, mask, band)
                fns[f"step_soft_mask{name}_ms"] = partial(module.soft_mask, mask, size)
            for name, seconds in _side_by_side(fns, animator.device, repeat).items():
                row[name] = 1000 * seconds / frames
            diff = (detail.render_batched(gen, out, source.detail)
                    - before.render_batched(gen, out, source.detail)).abs().max()
            row["step_max_abs_diff_x255"] = 255 * float(diff)
            double = partial(spline.upsample2x, source.detail)
            row["spline_doubling_once_ms"] = 1000 * _timed(double, animator.device, repeat)
        crops = {"model": to_frames(animator.generate(plain, kp)[:1])[0],
                 "detail": to_frames(animator.generate(source, kp)[:1])[0]}
        for name, crop in crops.items():
            paster = Paster(photo, box, crop.shape[0])
            row[f"paste_{name}_ms"] = 1000 * _timed(partial(paster.paste, crop),
                                                    torch.device("cpu"), repeat)
        for sampler in ("bicubic", "spline"):
            row[f"added_{sampler}_ms"] = (row[f"detail_{sampler}_ms"] + row["paste_detail_ms"]
                                          - row["paste_model_ms"])
        rows.append(row)
    return rows


def face_sharpness(image: np.ndarray, box) -> float:
    """Variance of the Laplacian of the grey image inside ``box``."""
    x0, y0, x1, y1 = (max(int(round(v)), 0) for v in box)
    grey = cv2.cvtColor(np.ascontiguousarray(image[y0:y1, x0:x1]), cv2.COLOR_RGB2GRAY)
    return float(cv2.Laplacian(grey, cv2.CV_64F).var())


def sharpness(images: list[str], driving: str, frames: int, device: str,
              save: Path | None) -> list[dict]:
    """Per photo: result face sharpness / photo face sharpness, detail off, on with the former
    bicubic sampler, and on (spline)."""
    from fomm.checkpoints.loading import load_model
    from fomm.faces.detect import detect_faces
    from fomm.inference.pipeline import animate_file

    models, cfg = load_model(None)
    animator = Animator(models, cfg, device=device)
    rows = []
    for path in images:
        photo = read_image(path)
        faces = detect_faces(photo)
        if not faces:
            continue
        box, reference = faces[0].box, face_sharpness(photo, faces[0].box)
        row = {"image": Path(path).name, "size": list(photo.shape[1::-1]),
               "face_box": round(box[3] - box[1])}
        for name, on, sampler in (("off", False, "spline"), ("on_bicubic", True, "bicubic"),
                                  ("on", True, "spline")):
            render = partial(detail.render_batched, sampler=sampler)
            with tempfile.TemporaryDirectory() as tmp, \
                    mock.patch.object(detail, "render_batched", render):
                opts = AnimateOptions(max_frames=frames, progress=False, detail=on, audio=False)
                animate_file(path, driving, f"{tmp}/", opts, animator=animator)
                results = [read_image(p) for p in sorted(Path(tmp).glob("*.png"))]
            ratios = [face_sharpness(f, box) / reference for f in results]
            row[f"detail_{name}"] = round(float(np.mean(ratios)), 3)
            if save is not None:
                save.mkdir(parents=True, exist_ok=True)
                for i in (0, len(results) - 1):
                    out = save / f"{Path(path).stem}-detail-{name}-{i}.png"
                    cv2.imwrite(str(out), cv2.cvtColor(results[i], cv2.COLOR_RGB2BGR))
        print(row, flush=True)
        rows.append(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--frames", type=int, default=8, help="frames per batch / per photo")
    parser.add_argument("--sizes", type=int, nargs="+", default=[512, 1024])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--images", help="glob of portraits for the sharpness table")
    parser.add_argument("--driving", help="driving clip for the sharpness table")
    parser.add_argument("--save-frames", type=Path, help="write each photo's first and last "
                                                         "frame, per setting, as PNG here")
    parser.add_argument("--note", help="a line kept in the JSON (e.g. what else ran)")
    parser.add_argument("--skip-cost", action="store_true")
    parser.add_argument("--reference-rev", default=REFERENCE_REV,
                        help="git revision whose fomm/render/detail.py the detail step is timed "
                             "against")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    report: dict = {"machine": machine(), "torch": torch.__version__,
                    "threads": torch.get_num_threads(), "load_average_at_start": os.getloadavg()}
    if args.note:
        report["note"] = args.note
    if not args.skip_cost:
        report["cost_ms_per_frame"] = cost(args.device, args.frames, args.sizes, args.repeat,
                                           args.reference_rev)
        report["load_average_after_cost"] = os.getloadavg()
        for row in report["cost_ms_per_frame"]:
            print(", ".join(f"{k} {v:.1f}" if isinstance(v, float) else f"{k} {v}"
                            for k, v in row.items()))
    if args.images:
        if not args.driving:
            parser.error("--images needs --driving")
        rows = sharpness(sorted(glob.glob(args.images)), args.driving, args.frames, args.device,
                         args.save_frames)
        report["sharpness_vs_photo"] = {
            "measure": "variance of the Laplacian inside the detected face box, result / photo",
            "driving": Path(args.driving).name, "frames": args.frames, "photos": rows,
            **{f"{stat}_detail_{name}": round(float(fn([r[f"detail_{name}"] for r in rows])), 3)
               for name in ("off", "on_bicubic", "on")
               for stat, fn in (("mean", np.mean), ("min", np.min))}}
    report["load_average_at_end"] = os.getloadavg()
    out = args.out or RESULTS / f"detail-{torch.device(args.device).type}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
