"""The ``fomm crop`` subcommand (dataset preparation); ``fomm.cli.main`` calls :func:`register`."""

from __future__ import annotations

import argparse

from fomm.cli.argtypes import positive_int
from fomm.faces.crop import MARGIN


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``crop`` to the CLI's subcommands."""
    p = sub.add_parser(
        "crop",
        help="cut face tracks out of videos into square clips for training",
        description="Find face tracks in videos (scene cuts and several people give several "
        "tracks) and write each as a square clip framed like the VoxCeleb training data, "
        "plus DIR/tracks.csv (video, track, start, end, x0, y0, x1, y1, face_size, "
        "sharpness, file).",
    )
    p.add_argument("videos", nargs="+", metavar="VIDEO", help="video files or frame folders")
    p.add_argument("-o", "--output", required=True, metavar="DIR", help="output folder")
    p.add_argument("--size", type=positive_int, default=256, help="clip side in pixels (256)")
    p.add_argument(
        "--min-track-len",
        type=positive_int,
        default=32,
        metavar="N",
        help="drop tracks shorter than N frames (32)",
    )
    p.add_argument(
        "--min-face",
        type=float,
        default=64.0,
        metavar="PX",
        help="drop tracks whose face is smaller than PX pixels (64)",
    )
    p.add_argument(
        "--min-sharpness",
        type=float,
        default=30.0,
        metavar="S",
        help="drop blurry tracks: variance of the Laplacian of the face at 128 px "
        "below S (30; sharp faces measure 90-500)",
    )
    p.add_argument(
        "--detect-every",
        type=positive_int,
        default=1,
        metavar="K",
        help="run the face detector on every K-th frame (1)",
    )
    p.add_argument(
        "--max-frames", type=positive_int, metavar="N", help="read at most N frames of each video"
    )
    p.add_argument(
        "--margin",
        type=float,
        default=MARGIN,
        metavar="R",
        help=f"space around the face on each side, in face sizes ({MARGIN})",
    )
    p.set_defaults(func=cmd_crop)


def cmd_crop(args: argparse.Namespace) -> None:
    from fomm.faces.dataset_crop import CSV_NAME, crop_videos

    tracks = crop_videos(
        args.videos,
        args.output,
        size=args.size,
        min_track_len=args.min_track_len,
        min_face=args.min_face,
        min_sharpness=args.min_sharpness,
        detect_every=args.detect_every,
        max_frames=args.max_frames,
        margin=args.margin,
    )
    frames = sum(len(t) for t in tracks)
    print(f"{len(tracks)} clips ({frames} frames) written to {args.output}; see {CSV_NAME}")
