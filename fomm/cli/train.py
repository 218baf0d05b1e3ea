"""``fomm train``, ``fomm reconstruct``, ``fomm keypoints``: parse, build options, call one API.

``fomm.cli.main`` calls :func:`register` with its subparsers.  (The original's ``animate`` mode over
``pairs_list``, ``fomm animate-pairs``, is not implemented yet.)
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from fomm.cli.argtypes import (
    non_negative_float,
    non_negative_int,
    positive_float,
    positive_int,
    probability,
)


def register(subparsers: Any) -> None:
    """Add the ``train``, ``reconstruct`` and ``keypoints`` subcommands."""
    p = subparsers.add_parser(
        "train", help="train a model on videos (the original recipe; torchrun for many GPUs)",
        description="Train keypoint detector, generator (and discriminator for -adv configs) on "
                    "ROOT/train. Checkpoints (.pth.tar, the original layout) go to the run "
                    "folder every few minutes, at epoch ends and on Ctrl-C. Many GPUs: "
                    "torchrun --nproc_per_node N -m fomm train ...")
    p.add_argument("--config", metavar="NAME|PATH",
                   help="preset (vox-256, taichi-256, ...) or official YAML; default when "
                        "resuming: the config saved in the checkpoint")
    p.add_argument("--data", metavar="ROOT",
                   help="dataset folder with train/ (and test/): folders of frames, "
                        ".mp4/.mov/.gif files or .png strips; default: the config's root_dir")
    p.add_argument("--out", metavar="DIR", help="run folder (default: the resumed run's, or "
                                                "runs/<config>-<time>)")
    p.add_argument("--resume", metavar="CKPT", help="continue a run exactly (ours or an "
                                                    "original first-order-model checkpoint)")
    p.add_argument("--init", metavar="CKPT",
                   help="start from these weights with fresh optimizers (fine-tuning)")
    p.add_argument("--vgg-weights", metavar="PATH",
                   help="torchvision vgg19 state dict (e.g. ~/.cache/torch/hub/checkpoints/"
                        "vgg19-dcbb9e9d.pth) for the perceptual loss; without it an L1 pyramid "
                        "on pixels is used")
    p.add_argument("--device", default=None, help="auto (default), cpu, cuda or cuda:N")
    p.add_argument("--precision", choices=["fp32", "bf16"], default=None,
                   help="fp32 (default) or bf16 autocast")
    g = p.add_argument_group("overrides of the config")
    g.add_argument("--batch-size", type=positive_int, help="global batch (split over processes)")
    g.add_argument("--epochs", dest="num_epochs", type=positive_int, help="num_epochs")
    g.add_argument("--repeats", dest="num_repeats", type=positive_int, help="num_repeats")
    g.add_argument("--frame-size", type=positive_int, metavar="PX",
                   help="train at PX x PX (frames are resized)")
    r = p.add_argument_group("run")
    r.add_argument("--max-steps", type=positive_int, help="stop after N steps in all")
    r.add_argument("--workers", type=non_negative_int, help="DataLoader workers (default 2)")
    r.add_argument("--cache-mb", type=non_negative_float, metavar="MB",
                   help="keep decoded videos in memory up to MB per worker (default 256)")
    r.add_argument("--seed", type=int)
    r.add_argument("--log-every", type=positive_int, help="TensorBoard scalars every N steps "
                                                           "(default 10)")
    r.add_argument("--image-every", type=non_negative_int,
                   help="image grids every N steps (default 250; 0: never)")
    r.add_argument("--save-every-steps", type=positive_int, metavar="N")
    r.add_argument("--save-every-minutes", type=non_negative_float, metavar="M",
                   help="save the latest checkpoint every M minutes (default 10; 0: off)")
    r.add_argument("--no-tensorboard", dest="tensorboard", action="store_false", default=None)
    r.add_argument("--quiet", "-q", dest="progress", action="store_false", default=None,
                   help="no progress bar")
    x = p.add_argument_group("speed-ups for small models (not in the original recipe)")
    x.add_argument("--pretrain-autoencoder", type=non_negative_int, metavar="N",
                   help="first N steps: the generator alone rebuilds each frame through "
                        "identity motion (sharper images early)")
    x.add_argument("--ssim-weight", type=non_negative_float, metavar="W",
                   help="add W x (1 - SSIM) of prediction and driving frame")
    x.add_argument("--gradient-weight", type=non_negative_float, metavar="W",
                   help="add W x L1 of their image gradients")
    x.add_argument("--separation-weight", type=non_negative_float, metavar="W",
                   help="add W x the keypoint separation term (spreads keypoints that gather "
                        "in one spot)")
    x.add_argument("--separation-sigma", type=positive_float, metavar="S",
                   help="its reach in [-1, 1] coordinates (default 0.15)")
    x.add_argument("--region-weight", type=non_negative_float, metavar="W",
                   help="add W x an L1 pyramid averaged over the eyes and mouth, from landmarks "
                        "stored beside the videos (python scripts/face_landmarks.py DATA)")
    x.add_argument("--expressive-pairs", type=probability, metavar="P",
                   help="share of pairs chosen, of 8 random ones, as the one whose mouth and "
                        "eyes differ most (same landmarks)")
    x.add_argument("--landmark-weight", type=non_negative_float, metavar="W",
                   help="add W x the L1 distance of 6 keypoints from the eye centres, mouth "
                        "corners and lips (same landmarks; the keypoints are picked at the start)")
    x.add_argument("--eye-guides", choices=("centres", "lids"),
                   help="what the two eye guidance points follow: the eye centres (default) or "
                        "the middle of the upper lids (a blink moves them its whole height)")
    p.set_defaults(func=cmd_train)

    p = subparsers.add_parser(
        "reconstruct", help="evaluate a checkpoint: reconstruct test videos from their first "
                            "frame (L1, AKD, AED)",
        description="Reconstruct each test video from its first frame (the paper's protocol) "
                    "and write scores.csv, summary.json and side-by-side videos "
                    "(driving | reconstruction | keypoints).")
    p.add_argument("--checkpoint", "-c", required=True, metavar="PATH")
    p.add_argument("--data", required=True, metavar="ROOT",
                   help="dataset folder (its test/ is used) or a folder of test videos")
    p.add_argument("--config", metavar="NAME|PATH",
                   help="model config; default: saved by fomm train, else the preset that fits")
    p.add_argument("--out", metavar="DIR", help="default: reconstruction/ beside the checkpoint")
    p.add_argument("--size", type=positive_int, metavar="PX",
                   help="frame size (default: the model's image_size)")
    p.add_argument("--device", default="auto")
    p.add_argument("--batch-size", type=positive_int, default=16)
    p.add_argument("--max-videos", type=positive_int, metavar="N")
    p.add_argument("--no-videos", dest="videos", action="store_false",
                   help="scores only, no side-by-side videos")
    p.add_argument("--no-metrics", dest="face_metrics", action="store_false",
                   help="skip AKD / AED even when the metrics extra is installed")
    p.add_argument("--quiet", "-q", dest="progress", action="store_false")
    p.set_defaults(func=cmd_reconstruct)

    p = subparsers.add_parser("keypoints", help="draw a checkpoint's keypoints on a video",
                              description="Detect keypoints on every frame of VIDEO and write "
                                          "a video with them drawn (original colours).")
    p.add_argument("video", help="video file or folder of frames")
    p.add_argument("--checkpoint", "-c", required=True, metavar="PATH")
    p.add_argument("-o", "--output", default="output/keypoints.mp4",
                   help="output .mp4, or a folder ending in / for PNGs "
                        "(default output/keypoints.mp4)")
    p.add_argument("--config", metavar="NAME|PATH")
    p.add_argument("--device", default="auto")
    p.add_argument("--batch-size", type=positive_int, default=16)
    p.add_argument("--radius", type=positive_int, metavar="PX",
                   help="circle radius (default 5 per 256 px)")
    p.add_argument("--max-frames", type=positive_int, metavar="N")
    p.add_argument("--quiet", "-q", dest="progress", action="store_false")
    p.set_defaults(func=cmd_keypoints)


def cmd_train(args: argparse.Namespace) -> None:
    import dataclasses

    from fomm.train.loop import TrainOptions, train

    names = {f.name for f in dataclasses.fields(TrainOptions)}
    given = {k: v for k, v in vars(args).items() if k in names and v is not None}
    result = train(TrainOptions(**given))
    if result.rank != 0:
        return
    where = result.checkpoint or result.run_dir
    if result.interrupted:
        print(f"interrupted at step {result.step} (epoch {result.epoch}); saved {where}\n"
              f"continue with: fomm train --resume {where}", file=sys.stderr)
        sys.exit(130)
    print(f"trained to step {result.step} (epoch {result.epoch}); checkpoint {where}")


def cmd_reconstruct(args: argparse.Namespace) -> None:
    from fomm.train.evaluate import ReconstructOptions, reconstruct

    report = reconstruct(ReconstructOptions(
        checkpoint=args.checkpoint, data=args.data, config=args.config, out=args.out,
        size=args.size, device=args.device, batch_size=args.batch_size,
        max_videos=args.max_videos, videos=args.videos, face_metrics=args.face_metrics,
        progress=args.progress))
    width = max(len(s.name) for s in report.videos)
    for s in report.videos:
        extra = "".join(f"  {k} {v:.4f}" for k, v in (("akd", s.akd), ("aed", s.aed))
                        if v is not None)
        print(f"{s.name:<{width}}  {s.frames:5d} frames  L1 {s.l1:.4f}{extra}")
    for note in report.notes:
        print(note)
    line = f"L1 {report.l1:.4f} over {sum(s.frames for s in report.videos)} frames"
    if report.akd is not None:
        line += f", AKD {report.akd:.3f}"
    if report.aed is not None:
        line += f", AED {report.aed:.4f}"
    print(f"{line}; AKD/AED {report.face_metrics}")
    print(f"wrote {report.out}/scores.csv, summary.json"
          + (", videos/" if args.videos else ""))


def cmd_keypoints(args: argparse.Namespace) -> None:
    from fomm.train.evaluate import KeypointsOptions, keypoints_video

    out = keypoints_video(KeypointsOptions(
        video=args.video, checkpoint=args.checkpoint, output=args.output, config=args.config,
        device=args.device, batch_size=args.batch_size, radius=args.radius,
        max_frames=args.max_frames, progress=args.progress))
    print(f"wrote {out}")
