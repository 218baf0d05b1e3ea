"""The ``fomm`` command line: thin subcommands that parse arguments and call one API function."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from fomm import __version__
from fomm.cli.argtypes import bounded, positive_int
from fomm.errors import FommError

DEFAULT_OUTPUT = "output/result.mp4"


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """--checkpoint / --config / --flavour, shared by every command that loads a model."""
    group = parser.add_argument_group("model")
    group.add_argument("--checkpoint", "-c", metavar="PATH",
                       help="weights: an official .pth.tar (e.g. vox-cpk.pth.tar), a PaddleGAN "
                            ".pdparams or a fomm .safetensors; the format is read from the file's "
                            "content (default: the bundled face model)")
    group.add_argument("--config", metavar="NAME|PATH",
                       help="model config: a preset name (vox-256, taichi-256, mgif-256, "
                            "paddle-vox-256, ...) or an official YAML file; default: embedded in "
                            "the checkpoint, or the preset whose shapes fit it")
    group.add_argument("--flavour", choices=["original", "paddle"],
                       help="numerics: 'original' (grid_sample align_corners=False) or 'paddle' "
                            "(PaddleGAN's predictor); default: by the checkpoint's origin")


def add_animate_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``fomm animate`` (also used by the web service's form)."""
    motion = parser.add_argument_group("motion")
    mode = motion.add_mutually_exclusive_group()
    mode.add_argument("--relative", dest="relative", action="store_true", default=True,
                      help="transfer keypoint motion relative to the reference driving frame "
                           "(default; keeps the source's shape)")
    mode.add_argument("--absolute", dest="relative", action="store_false",
                      help="use the driving keypoints' absolute positions")
    motion.add_argument("--adapt-scale", action="store_true",
                        help="scale the motion by the ratio of source and driving keypoint "
                             "convex-hull areas (objects of different sizes)")
    best = motion.add_mutually_exclusive_group()
    best.add_argument("--best-frame", type=int, metavar="N",
                      help="driving frame (0-based) whose pose matches the source; motion is "
                           "taken relative to it (animate forward and backward from it)")
    best.add_argument("--find-best-frame", action="store_true",
                      help="pick the driving frame whose face landmarks best match the source")
    faces = parser.add_argument_group("faces")
    faces.add_argument("--no-crop", dest="crop", action="store_false",
                       help="animate the whole source image resized to the model size "
                            "(original behaviour) instead of cropping the face and pasting back")
    faces.add_argument("--crop-driving", choices=["auto", "on", "off"], default="auto",
                       help="frame the face of the driving video (stabilised track) like the "
                            "source's: 'auto' (default) when the source face is cropped, 'on' "
                            "also with --no-crop, 'off' feeds the whole driving frame")
    who = faces.add_mutually_exclusive_group()
    who.add_argument("--face-index", type=int, metavar="N",
                     help="animate the N-th largest face of the source (0 = largest, default)")
    who.add_argument("--multi-person", action="store_true",
                     help="animate every face found in the source")
    faces.add_argument("--crop-margin", type=float, metavar="R",
                       help="extra space around the face in the crop, as a fraction of its size")
    run = parser.add_argument_group("run")
    run.add_argument("--batch-size", type=positive_int, default=8,
                     help="driving frames per network call (default 8)")
    run.add_argument("--device", default="auto", help="auto (default), cpu, cuda, cuda:N or mps")
    run.add_argument("--precision", choices=["auto", "fp32", "fp16", "bf16"], default="auto",
                     help="auto (default): on a CPU with native bf16 (AVX512-BF16/AMX) the "
                          "convolution stacks in bf16 on OpenVINO (sensitive steps kept in fp32) "
                          "where a probe of the model stays within 1/255 of fp32, else fp32; "
                          "fp16/bf16 autocast on a GPU")
    run.add_argument("--backend", choices=["auto", "torch", "onnx", "openvino"],
                     help="where the networks run: auto (default: $FOMM_BACKEND, else OpenVINO "
                          "on a CPU where installed, then ONNX Runtime, else torch), torch "
                          "(eager; parity with the original code), onnx or openvino (CPU)")
    add_expression_arguments(parser)
    out = parser.add_argument_group("output")
    out.add_argument("--no-audio", dest="audio", action="store_false",
                     help="do not copy the driving video's audio track")
    out.add_argument("--result-size", type=positive_int, metavar="PX",
                     help="output size with --no-crop (default: the model size); with a face "
                          "crop the output has the source's resolution")
    out.add_argument("--detail", choices=["on", "off"], default="on",
                     help="'on' (default): render the face at the photo's resolution, moving "
                          "the photo's own pixels by the model's dense motion (sharp); 'off': "
                          "scale the model-size result up (the original behaviour)")
    out.add_argument("--max-frames", type=positive_int, metavar="N",
                     help="animate only the first N driving frames")
    out.add_argument("--fps", type=float, help="frame rate for a folder of driving frames "
                                               "(default 25) or to override the video's")
    out.add_argument("--quiet", "-q", dest="progress", action="store_false",
                     help="no progress bar")


def add_expression_arguments(parser: argparse.ArgumentParser) -> None:
    """--expression, --animation-region, --expression-scale and the eye/mouth/smile offsets."""
    from fomm.config import ANIMATION_REGIONS

    group = parser.add_argument_group("expression")
    group.add_argument("--expression", choices=["on", "off"], default="on",
                       help="'on' (default): render the driver's eye, brow and mouth shapes on "
                            "the face (needs a face crop: off with --no-crop); 'off': the motion "
                            "model's frames alone")
    group.add_argument("--animation-region", choices=ANIMATION_REGIONS, default="all",
                       help="what moves: 'all' (default) head and expression, 'pose' the head "
                            "only, 'expression' / 'eyes' / 'lips' that part of the face on the "
                            "still photo (no motion networks: fast)")
    group.add_argument("--expression-scale", type=bounded(float, 0, high=2), default=1.0,
                       metavar="S", help="strength of the driver's expression, 0..2 (default 1)")
    offset = bounded(float, -1, high=1)
    group.add_argument("--eye-openness", dest="eye_offset", type=offset, default=0.0,
                       metavar="X", help="eyes more open (up to 1) or closed (down to -1)")
    group.add_argument("--mouth-openness", dest="mouth_offset", type=offset, default=0.0,
                       metavar="X", help="mouth more open (up to 1) or closed (down to -1)")
    group.add_argument("--smile", dest="smile_offset", type=offset, default=0.0, metavar="X",
                       help="mouth corners up and out (up to 1) or down (down to -1)")


def options_from_args(args: argparse.Namespace):
    from fomm.config import AnimateOptions

    return AnimateOptions(
        relative=args.relative, adapt_scale=args.adapt_scale, best_frame=args.best_frame,
        find_best_frame=args.find_best_frame, batch_size=args.batch_size, device=args.device,
        precision=args.precision, backend=args.backend, audio=args.audio, crop=args.crop,
        crop_driving=args.crop_driving, face_index=args.face_index,
        multi_person=args.multi_person, crop_margin=args.crop_margin,
        result_size=args.result_size, detail=args.detail == "on",
        max_frames=args.max_frames, fps=args.fps,
        progress=args.progress, flavour=args.flavour,
        expression=args.expression == "on", animation_region=args.animation_region,
        expression_scale=args.expression_scale, eye_offset=args.eye_offset,
        mouth_offset=args.mouth_offset, smile_offset=args.smile_offset)


def cmd_animate(args: argparse.Namespace) -> None:
    from fomm.cli.preflight import check_animate_inputs

    check_animate_inputs(args.source, args.driving, args.checkpoint)  # before torch loads
    from fomm.inference.pipeline import animate_file

    result = animate_file(args.source, args.driving, args.output, options_from_args(args),
                          checkpoint=args.checkpoint, model_config=args.config)
    print(f"wrote {result.output} ({result.frames} frames, {result.fps:g} fps, "
          f"{result.size[0]}x{result.size[1]})")


def cmd_info(args: argparse.Namespace) -> None:
    from fomm.checkpoints import load_checkpoint, resolve
    from fomm.models import count_parameters

    path, preset = resolve(args.checkpoint)  # a path, a bundled or downloaded model's name
    models, cfg, ckpt = load_checkpoint(path, config=args.config or preset, flavour=args.flavour)
    print(f"file:          {path} ({path.stat().st_size / 2**20:.1f} MiB, {ckpt.format} format)")
    print(f"architecture:  {cfg.architecture}, flavour {cfg.flavour}, {cfg.image_size}x"
          f"{cfg.image_size}, {cfg.num_kp} keypoints")
    kp, gen = count_parameters(models.kp_detector), count_parameters(models.generator)
    print(f"parameters:    kp_detector {kp:,}, generator {gen:,}, total {kp + gen:,}")
    if "discriminator" in ckpt.state:
        n = sum(v.numel() for k, v in ckpt.state["discriminator"].items()
                if not k.endswith(("_u", "_v", "running_mean", "running_var",
                                   "num_batches_tracked")))
        print(f"discriminator: {n:,} parameters")
    if "epoch" in ckpt.extra:
        print(f"epoch:         {ckpt.extra['epoch']}")
    print(f"config:        {cfg.to_json()}")


def cmd_convert(args: argparse.Namespace) -> None:
    import torch

    from fomm.checkpoints import load_checkpoint, resolve, save_checkpoint
    from fomm.checkpoints.original import write_original

    path, preset = resolve(args.input)
    models, cfg, ckpt = load_checkpoint(path, config=args.config or preset, flavour=args.flavour,
                                        discriminator=False)
    dtype = torch.float16 if args.fp16 else None
    out = Path(args.output)
    if out.suffix == ".safetensors":
        save_checkpoint(out, models, cfg, dtype=dtype)
    elif out.name.endswith((".pth.tar", ".pth", ".pt", ".tar")):
        data = {"generator": models.generator.state_dict(),
                "kp_detector": models.kp_detector.state_dict()}
        if dtype is not None:
            data = {n: {k: v.to(dtype) if v.is_floating_point() else v for k, v in sd.items()}
                    for n, sd in data.items()}
        if "discriminator" in ckpt.state:
            data["discriminator"] = ckpt.state["discriminator"]
        write_original(out, data)
    else:
        raise FommError(f"{out}: unknown output format; use .safetensors (fomm) or .pth.tar "
                        "(original)")
    print(f"wrote {out} ({out.stat().st_size / 2**20:.1f} MiB)")


def cmd_demo(args: argparse.Namespace) -> None:
    from fomm.inference.demo import SIDE_BY_SIDE, run_demo

    result = run_demo(output_dir=args.output_dir, device=args.device, max_frames=args.max_frames)
    print(f"\nresult:       {result}\nside by side: {result.with_name(SIDE_BY_SIDE)}   "
          "(source | driving | result)\n"
          "\nYour own photo and clip:\n"
          "  fomm animate my_photo.jpg my_clip.mp4 -o output/mine.mp4\n"
          "  (add --checkpoint vox-cpk.pth.tar to use an official model)")


# subcommands whose module is imported only when that subcommand runs (or shows its help):
# name → (module with register(subparsers), one-line help for `fomm --help`)
LAZY_COMMANDS: dict[str, tuple[str, str]] = {
    "train": ("fomm.cli.train", "train a model on videos (torchrun for many GPUs)"),
    "reconstruct": ("fomm.cli.train", "evaluate a checkpoint by video reconstruction"),
    "keypoints": ("fomm.cli.train", "draw a checkpoint's keypoints on a video"),
    "crop": ("fomm.cli.faces", "cut face tracks out of videos into square clips"),
    "live": ("fomm.cli.live", "animate a photo live with the face seen by a camera"),
    "export": ("fomm.cli.export", "export the ONNX graphs fomm runs, for other apps"),
    "export-web": ("fomm.cli.web", "write the browser site that animates on the device"),
    "serve": ("fomm.cli.serve", "web page and HTTP API: upload a photo and a clip"),
    "worker": ("fomm.cli.worker", "run the jobs of 'fomm serve --broker' (Redis)"),
    "weights": ("fomm.cli.weights", "official checkpoints: list them, download PaddleGAN's"),
}


class _LazySubcommands(argparse._SubParsersAction):
    """Subparsers whose heavier commands are placeholders until chosen.

    ``fomm --help`` and the light commands never import torch, onnx or a web framework; the
    chosen command's module registers its real parser just before argparse hands it the rest.
    """

    def add_placeholders(self, commands: dict[str, tuple[str, str]]) -> None:
        self._lazy = {name: module for name, (module, _) in commands.items()}
        for name, (_, help_) in commands.items():
            self.add_parser(name, help=help_, add_help=False)

    def load(self, name: str) -> argparse.ArgumentParser:
        """Import ``name``'s module and register its real parser(s) over the placeholders."""
        module = self._lazy.get(name)
        if module is not None:
            names = [n for n, m in self._lazy.items() if m == module]
            for n in names:
                del self._lazy[n], self._name_parser_map[n]
            helps = {a.dest: a for a in self._choices_actions if a.dest in names}
            self._choices_actions[:] = [a for a in self._choices_actions if a not in
                                        helps.values()]
            importlib.import_module(module).register(self)
        return self._name_parser_map[name]

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        if values and values[0] in getattr(self, "_lazy", {}):
            self.load(values[0])
        super().__call__(parser, namespace, values, option_string)


def suggest_spelling(parser: argparse.ArgumentParser, argv: Sequence[str]
                     ) -> tuple[argparse.ArgumentParser, str] | None:
    """For an unknown ``--snake_case`` option (PaddleGAN's spelling): the subcommand's parser and
    a message naming the ``--kebab-case`` flag."""
    sub = next((a for a in parser._actions if isinstance(a, argparse._SubParsersAction)), None)
    command = next((a for a in argv if not a.startswith("-")), None)
    if sub is None or command not in sub.choices:
        return None
    options = sub.choices[command]._option_string_actions
    for arg in argv:
        flag = arg.split("=", 1)[0]
        if flag.startswith("--") and "_" in flag and flag not in options:
            dashed = flag.replace("_", "-")
            if dashed in options:
                return sub.choices[command], f"unrecognized argument {flag}: did you mean {dashed}?"
    return None


def build_parser() -> argparse.ArgumentParser:
    """The ``fomm`` parser; heavier subcommands are imported only when chosen (see
    LAZY_COMMANDS), so building it and failing on user input take well under a second."""
    parser = argparse.ArgumentParser(
        prog="fomm", description="First Order Motion Model: animate a still image with the "
                                 "motion of a driving video.")
    parser.add_argument("--version", action="version", version=f"fomm {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True,
                                action=_LazySubcommands)

    p = sub.add_parser("animate", help="animate a source image with a driving video",
                       description="Animate SOURCE (an image) with the motion of DRIVING (a video "
                                   "or a folder of frames) and write a video (or PNG frames).")
    p.add_argument("source", help="source image (png, jpg, webp, bmp, ...)")
    p.add_argument("driving", help="driving video (mp4, mov, webm, avi, gif) or frame folder")
    p.add_argument("-o", "--output", default=DEFAULT_OUTPUT,
                   help=f"output .mp4, or a folder (ending in /) for PNG frames "
                        f"(default {DEFAULT_OUTPUT})")
    add_model_arguments(p)
    add_animate_arguments(p)
    p.set_defaults(func=cmd_animate)

    p = sub.add_parser("info", help="describe a checkpoint: config, parameter counts, size")
    p.add_argument("checkpoint", help="checkpoint file, bundled model (fomm-face-256) or "
                                      "downloaded weights' name")
    p.add_argument("--config", metavar="NAME|PATH", help="config for files without one")
    p.add_argument("--flavour", choices=["original", "paddle"])
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("convert", help="convert a checkpoint between formats",
                       description="Convert IN (.pth.tar, .pdparams or .safetensors) to OUT: "
                                   ".safetensors (fomm, config embedded) or .pth.tar (original).")
    p.add_argument("input", metavar="IN")
    p.add_argument("output", metavar="OUT")
    p.add_argument("--config", metavar="NAME|PATH", help="config for files without one")
    p.add_argument("--flavour", choices=["original", "paddle"])
    p.add_argument("--fp16", action="store_true", help="store weights as float16 (half size)")
    p.set_defaults(func=cmd_convert)

    p = sub.add_parser("demo", help="animate the built-in example with the bundled model",
                       description="Animate built-in inputs with the bundled face model; writes "
                                   "output/result.mp4 and output/result_side_by_side.mp4.")
    p.add_argument("-o", "--output-dir", "--output", dest="output_dir", default="output",
                   metavar="DIR", help="folder for result.mp4 and result_side_by_side.mp4")
    p.add_argument("--device", default="auto")
    p.add_argument("--max-frames", type=positive_int, default=None)
    p.set_defaults(func=cmd_demo)

    sub.add_placeholders(LAZY_COMMANDS)
    return parser


class _Notes(logging.StreamHandler):
    """The library's lines on whatever ``sys.stderr`` is when one comes (it may be swapped):
    warnings as ``note: ...``, information as it is."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        return f"note: {text}" if record.levelno >= logging.WARNING else text

    def emit(self, record: logging.LogRecord) -> None:
        from tqdm import tqdm

        try:  # above a progress bar that is being drawn, not inside its line
            tqdm.write(self.format(record), file=sys.stderr)
        except Exception:
            self.handleError(record)


def show_notes() -> None:
    """The library's messages (``logging`` of ``fomm.*``, information and up) on stderr, one
    line each; warnings as ``note: ...``."""
    logger = logging.getLogger("fomm")
    logger.setLevel(logging.INFO)
    if not any(isinstance(h, _Notes) for h in logger.handlers):
        logger.addHandler(_Notes())


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of ``fomm`` and ``python -m fomm``; user errors exit 2 with one line."""
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else list(argv)
    hint = suggest_spelling(parser, argv)
    if hint is not None:
        parser.parse_known_args(argv)  # its own errors (e.g. --help, a missing argument) first
        hint[0].error(hint[1])
    args = parser.parse_args(argv)
    if args.command not in ("serve", "worker"):  # the servers configure logging themselves
        show_notes()
    try:
        args.func(args)
    except FommError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":
    main()
