"""The ``fomm export`` subcommand: the ONNX graphs fomm runs, for other apps."""

from __future__ import annotations

import argparse


def cmd_export(args: argparse.Namespace) -> None:
    from fomm.runtime.export import export_onnx

    result = export_onnx(args.checkpoint, args.output, config=args.config, opset=args.opset,
                         check=args.check)
    print(f"wrote {result.source_encoder}, {result.kp_detector} and {result.generator}")
    if result.max_abs_diff is not None:
        print(f"onnxruntime vs torch: max abs difference {result.max_abs_diff:.2e}")


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "export", help="export a model to ONNX (source encoder, kp detector, generator)",
        description="Write the ONNX graphs fomm's runtime runs (source encoded once, merged "
                    "output heads, strided downsampling), checked against torch on "
                    "onnxruntime.")
    p.add_argument("--checkpoint", "-c", help="checkpoint (default: the bundled model)")
    p.add_argument("--config", metavar="NAME|PATH", help="config for files without one")
    p.add_argument("-o", "--output", default="onnx", help="output folder (default onnx/)")
    p.add_argument("--opset", type=int, default=17, help="ONNX opset (default 17)")
    p.add_argument("--no-check", dest="check", action="store_false",
                   help="skip the onnxruntime check against torch")
    p.set_defaults(func=cmd_export)
