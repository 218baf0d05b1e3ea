#!/usr/bin/env python
"""PaddleGAN's ``tools/first-order-demo.py`` command line, run by fomm.

Accepts PaddleGAN's flag names and maps them onto ``fomm animate``, so the seed's command works
verbatim from the repository root and writes ``output/result.mp4``::

    python -u tools/first-order-demo.py --driving_video fom_dv.mp4 \
        --source_image fom_source_image.png --relative --adapt_scale
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a plain clone

from fomm.cli.argtypes import bounded  # noqa: E402  (light modules: no torch)
from fomm.config import ANIMATION_REGIONS  # noqa: E402


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="PaddleGAN-compatible FOMM demo (runs fomm)")
    p.add_argument("--config", default=None, help="model config (preset name or YAML)")
    p.add_argument("--weight_path", default=None,
                   help="checkpoint (.pdparams, .pth.tar or .safetensors); default: bundled")
    p.add_argument("--source_image", required=True, help="path to source image")
    p.add_argument("--driving_video", required=True, help="path to driving video")
    p.add_argument("--output", default="output", help="output folder")
    p.add_argument("--filename", default="result.mp4", help="output file name")
    p.add_argument("--relative", action="store_true", help="use relative keypoint coordinates")
    p.add_argument("--adapt_scale", action="store_true",
                   help="adapt movement scale based on convex hull of keypoints")
    p.add_argument("--find_best_frame", action="store_true",
                   help="animate from the driving frame that best matches the source")
    p.add_argument("--best_frame", type=int, default=None, help="set the best frame explicitly")
    p.add_argument("--ratio", type=float, default=None,
                   help="PaddleGAN's face-region ratio (default 0.4 there); fomm maps it to "
                        "--crop-margin (room around the face, as a fraction of its size)")
    p.add_argument("--face_detector", default=None,
                   help="PaddleGAN's detector name (sfd, its default; blazeface); fomm always "
                        "uses MTCNN")
    p.add_argument("--multi_person", action="store_true", help="animate every face")
    p.add_argument("--image_size", type=int, default=256, choices=[256, 512],
                   help="model size (256 or 512) when no --config is given")
    p.add_argument("--batch_size", type=int, default=1, help="driving frames per network call")
    p.add_argument("--face_enhancement", action="store_true",
                   help="not supported by fomm (PaddleGAN's GPEN enhancer)")
    p.add_argument("--mobile_net", action="store_true",
                   help="use PaddleGAN's mobile architecture (with --weight_path)")
    p.add_argument("--cpu", dest="cpu", action="store_true", help="run on the CPU")
    p.add_argument("--device", default=None, help="fomm extension: auto, cpu, cuda, mps")
    p.add_argument("--max_frames", type=int, default=None,
                   help="fomm extension: animate only the first N driving frames")
    p.add_argument("--detail", choices=["on", "off"], default="on",
                   help="fomm extension: render the face at the photo's resolution (default on); "
                        "off scales the model-size result up, as PaddleGAN does")
    p.add_argument("--crop_driving", choices=["auto", "on", "off"], default="auto",
                   help="fomm extension: frame the driving video's face like the source's "
                        "(default auto: whenever the source face is cropped); off: whole frame")
    p.add_argument("--expression", choices=["on", "off"], default="on",
                   help="fomm extension: render the driver's eye, brow and mouth shapes on the "
                        "face (default on); off: the motion model's frames alone, as PaddleGAN")
    p.add_argument("--animation_region", choices=ANIMATION_REGIONS, default="all",
                   help="fomm extension: what moves: all (default), pose (head only), "
                        "expression, eyes or lips (that part of the face on the still photo)")
    p.add_argument("--expression_scale", type=bounded(float, 0, high=2), default=1.0,
                   help="fomm extension: strength of the driver's expression, 0..2 (default 1)")
    offset = bounded(float, -1, high=1)
    p.add_argument("--eye_openness", type=offset, default=0.0,
                   help="fomm extension: eyes more open (up to 1) or closed (down to -1)")
    p.add_argument("--mouth_openness", type=offset, default=0.0,
                   help="fomm extension: mouth more open (up to 1) or closed (down to -1)")
    p.add_argument("--smile", type=offset, default=0.0,
                   help="fomm extension: mouth corners up (up to 1) or down (down to -1)")
    return p


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    from fomm.cli.main import main as fomm_main

    if args.face_enhancement:
        print("note: --face_enhancement (PaddleGAN's GPEN) is not supported by fomm and is "
              "ignored", file=sys.stderr)
    if args.face_detector not in (None, "sfd", "blazeface", "mtcnn"):
        print(f"error: unknown --face_detector '{args.face_detector}'", file=sys.stderr)
        sys.exit(2)
    if args.face_detector not in (None, "mtcnn"):  # only when the option was given
        print(f"note: --face_detector {args.face_detector}: fomm detects faces with MTCNN "
              "(offline weights); results are framed the same way", file=sys.stderr)
    config = args.config
    if config is None and args.weight_path is not None:
        if args.mobile_net:
            config = "paddle-vox-mobile-256"
        elif args.image_size == 512:
            config = "paddle-vox-512"
    argv_out = [
        "animate", args.source_image, args.driving_video,
        "--output", str(Path(args.output) / args.filename),
        "--batch-size", str(max(1, args.batch_size)),
        "--device", args.device or ("cpu" if args.cpu else "auto"),
    ]
    if args.ratio is not None:
        print(f"note: --ratio {args.ratio} is used as fomm's --crop-margin (room around the "
              "face as a fraction of its size; fomm's default framing matches the training data)",
              file=sys.stderr)
        argv_out += ["--crop-margin", str(args.ratio)]
    argv_out.append("--relative" if args.relative else "--absolute")
    if args.adapt_scale:
        argv_out.append("--adapt-scale")
    if args.find_best_frame:
        argv_out.append("--find-best-frame")
    elif args.best_frame is not None:
        argv_out += ["--best-frame", str(args.best_frame)]
    if args.multi_person:
        argv_out.append("--multi-person")
    if args.max_frames:
        argv_out += ["--max-frames", str(args.max_frames)]
    argv_out += ["--detail", args.detail]
    argv_out += ["--crop-driving", args.crop_driving]
    argv_out += ["--expression", args.expression, "--animation-region", args.animation_region,
                 "--expression-scale", repr(args.expression_scale),
                 "--eye-openness", repr(args.eye_openness),
                 "--mouth-openness", repr(args.mouth_openness), "--smile", repr(args.smile)]
    if args.weight_path:
        argv_out += ["--checkpoint", args.weight_path]
    else:
        print("note: no --weight_path: fomm's bundled face model is used (offline). PaddleGAN's "
              "weights: `fomm weights download vox-cpk.pdparams`, then --weight_path "
              "vox-cpk.pdparams (`fomm weights list` shows all)", file=sys.stderr)
    if config:
        argv_out += ["--config", config]
    result = Path(args.output) / args.filename
    fomm_main(argv_out)
    # a side-by-side left by `fomm demo` in the same folder shows another run: remove it
    stale = result.with_name(f"{result.stem}_side_by_side.mp4")
    if stale.is_file() and result.is_file() and stale.stat().st_mtime < result.stat().st_mtime:
        stale.unlink()
        print(f"note: removed {stale} (from an earlier `fomm demo`; it showed another run)",
              file=sys.stderr)


if __name__ == "__main__":
    main()
