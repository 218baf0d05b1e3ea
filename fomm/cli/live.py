"""The ``fomm live`` subcommand: parse, build LiveOptions, call run_live."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from fomm.cli.argtypes import non_negative_int, positive_float, positive_int


def cmd_live(args: argparse.Namespace) -> None:
    from fomm.cli.main import options_from_args
    from fomm.live import LiveOptions, run_live

    animate = dataclasses.replace(options_from_args(args), progress=False)
    opts = LiveOptions(
        camera=args.camera,
        window=args.window,
        virtual_camera=args.virtual_camera,
        record=Path(args.record) if args.record else None,
        stats=Path(args.stats) if args.stats else None,
        smoothing=args.smoothing,
        smoothing_cutoff=args.smoothing_cutoff,
        detect_every=args.detect_every,
        network_size=args.network_size,
        max_side=args.max_side or None,
        overlap=args.overlap,
        max_frames=args.max_frames,
        animate=animate,
    )
    run_live(args.photo, opts, checkpoint=args.checkpoint, model_config=args.config)


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``fomm live`` to the command line."""
    from fomm.cli.main import add_animate_arguments, add_model_arguments

    p = sub.add_parser(
        "live",
        help="animate a photo live with the face seen by a camera",
        description="Animate PHOTO with the face a camera sees, in real time: show it in a "
        "window (keys: r re-takes the reference pose, space pauses, q/Esc quits, e turns the "
        "expression layer on or off, 1-5 pick its region, +/- change its strength), "
        "send it to a virtual camera and/or record it. A video file or URL given "
        "as --camera plays as a live stream at its own frame rate; frames that "
        "arrive while one is being animated are dropped, never queued.",
    )
    p.add_argument("photo", help="source image (png, jpg, ...)")
    live = p.add_argument_group("live")
    live.add_argument(
        "--camera",
        default="0",
        metavar="0|/dev/videoN|FILE|URL",
        help="camera index (default 0), device path, video file or stream URL",
    )
    live.add_argument(
        "--virtual-camera",
        action="store_true",
        help="send the result to a virtual camera for video calls (needs "
        "pip install 'fomm[live]' and v4l2loopback on Linux, OBS elsewhere)",
    )
    live.add_argument("--record", metavar="OUT.mp4", help="record the result to a video file")
    live.add_argument(
        "--no-window",
        dest="window",
        action="store_false",
        help="no preview window (headless: use --record or --virtual-camera)",
    )
    live.add_argument(
        "--stats",
        metavar="STATS.json",
        help="write frames in/out, dropped, fps and latency percentiles at the end",
    )
    live.add_argument(
        "--no-smoothing",
        dest="smoothing",
        action="store_false",
        help="no One-Euro smoothing of keypoints and face box (on by default)",
    )
    live.add_argument(
        "--smoothing-cutoff",
        type=positive_float,
        default=1.0,
        metavar="HZ",
        help="One-Euro cutoff at rest: lower is steadier, higher follows faster (default 1.0)",
    )
    live.add_argument(
        "--detect-every",
        type=positive_int,
        default=3,
        metavar="N",
        help="run the face detector on every N-th frame (default 3)",
    )
    live.add_argument(
        "--no-overlap",
        dest="overlap",
        action="store_false",
        help="one frame at a time: no pose of the next frame while this one renders (lower "
        "latency on a busy CPU, a lower frame rate on an idle one)",
    )
    live.add_argument(
        "--network-size",
        type=positive_int,
        metavar="PX",
        help="run the networks at PX×PX, a multiple of 64 (default: the largest of the model's "
        "size, three quarters and half of it that this CPU draws fast enough live beside the "
        "expression layer, e.g. 256, 192 or 128 for a 256 px model; 128 is about a quarter of "
        "the work at 256, for a softer face)",
    )
    live.add_argument(
        "--max-side",
        type=non_negative_int,
        default=1024,
        metavar="PX",
        help="scale the photo (and so the output) down to this longest side at start (default "
        "1024; 0: the photo's own size): a larger frame costs CPU time a frame to paste, show "
        "and record, without a sharper face",
    )
    add_model_arguments(p)
    add_animate_arguments(p)
    # live, --detail is off by default: its cost grows with the photo's face box (6 % of a
    # frame's CPU for a 172 px box, about the networks' time again for a 1024 px one)
    p.set_defaults(func=cmd_live, detail="off")
    for action in p._actions:
        if action.dest == "detail":
            action.help = (
                "'off' (default live; its cost grows with the photo's face box): the "
                "model-size result scaled up; 'on': the face at the photo's resolution"
            )
