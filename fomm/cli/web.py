"""The ``fomm export-web`` subcommand: the browser site, as static files to host anywhere."""

from __future__ import annotations

import argparse


def cmd_export_web(args: argparse.Namespace) -> None:
    from fomm.web import HEADERS, build_site

    info = build_site(args.output, checkpoint=args.checkpoint, config=args.config,
                      webgpu=args.webgpu, fp16=args.fp16, expression=args.expression)
    mb = 1e6
    print(f"wrote the site to {info.path}: models {info.model_bytes / mb:.1f} MB "
          f"({info.weights} weights), face mesh {info.face_mesh_bytes / mb:.1f} MB, "
          f"onnxruntime-web WASM {info.runtime_bytes / mb:.1f} MB"
          + (f", WebGPU {info.webgpu_bytes / mb:.1f} MB" if info.webgpu_bytes else ""))
    print("serve it over HTTPS (or http://localhost) with these headers for WASM threads "
          "(written to _headers for Netlify / Cloudflare Pages); without them it runs on one "
          "thread:")
    for name, value in HEADERS.items():
        print(f"  {name}: {value}")
    print(f"try it here: python -m fomm.web.serve {info.path}")


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "export-web", help="write the browser site that animates on the user's device",
        description="Write a self-contained static site (page, fomm's ONNX graphs, MTCNN, the "
                    "face mesh, onnxruntime-web) that animates a photo with the camera or a "
                    "clip entirely in the browser.")
    p.add_argument("output", metavar="DIR", help="the folder to write (made if missing)")
    p.add_argument("--checkpoint", "-c", help="face model checkpoint (default: the bundled model)")
    p.add_argument("--config", metavar="NAME|PATH", help="config for files without one")
    p.add_argument("--no-webgpu", dest="webgpu", action="store_false",
                   help="leave out onnxruntime-web's WebGPU build (29 MB): WASM only")
    p.add_argument("--no-fp16", dest="fp16", action="store_false",
                   help="keep the graphs' weights float32 (float16 is used where the frames "
                        "stay within 0.5/255 of float32)")
    p.add_argument("--no-expression", dest="expression", action="store_false",
                   help="leave out the expression layer's face mesh networks")
    p.set_defaults(func=cmd_export_web)
