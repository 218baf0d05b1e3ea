"""``fomm export``: the ONNX graphs fomm's runtime runs, as files for other apps.

The graphs are those of the ONNX Runtime backend (:mod:`fomm.runtime.graphs`: the generator's
paired output heads merged, downsampling strided, the source encoded once), plus the source
encoder that the runtime runs in torch:

* ``source_encoder.onnx``: ``source`` (1, 3, S, S) in [0, 1] → ``features``, ``small`` (once
  per source image);
* ``kp_detector.onnx``: ``image`` (B, 3, S, S) in [0, 1] → ``value`` (B, K, 2) and, for models
  with jacobians, ``jacobian`` (B, K, 2, 2);
* ``generator.onnx``: ``source``, ``features``, ``small`` (batch 1, broadcast over the frames),
  ``kp_source_value`` / ``_jacobian`` and ``kp_driving_value`` / ``_jacobian`` (B) →
  ``prediction`` (B, 3, S, S) in [0, 1], and the dense motion (``deformation``,
  ``occlusion_map``, ``blend_mask`` where the model has them). Motion normalisation (relative /
  adapt-scale) is plain arithmetic on keypoints, done by the caller
  (:func:`fomm.models.motion.normalize_kp`).

Each graph is checked against torch eager on ONNX Runtime (:func:`check_graphs`).
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from fomm.errors import FommError
from fomm.runtime.backends import OPSET, onnx_graph
from fomm.runtime.graphs import LazyGraphs, example, export_generator

# largest |onnxruntime - torch| accepted, on keypoints (in [-1, 1]) and frames (in [0, 1]); the
# graphs equal eager to float rounding: 2.1e-4 on the bundled model, 1e-5 on tiny test networks
TOLERANCE = 1e-3


@dataclass(frozen=True)
class ExportResult:
    """The files ``fomm export`` wrote and how far ONNX Runtime is from torch on them."""

    source_encoder: Path
    kp_detector: Path
    generator: Path
    max_abs_diff: float | None  # None: not checked


class SourceEncoderGraph(nn.Module):
    """The generator's source-only work with tensors out: features, small."""

    def __init__(self, generator: nn.Module) -> None:
        super().__init__()
        self.generator = generator

    def forward(self, source: Tensor) -> tuple[Tensor, Tensor]:
        encoding = self.generator.encode_source(source)
        return encoding.features, encoding.small


def export_onnx(checkpoint: str | Path | None, out_dir: str | Path,
                config: str | Path | None = None, opset: int = OPSET, check: bool = True,
                tolerance: float = TOLERANCE, image_size: int | None = None) -> ExportResult:
    """Write a checkpoint's runtime graphs to ``out_dir`` and check them against torch.

    Args:
        checkpoint: as for :func:`fomm.load_model` (None: the bundled model).
        out_dir: the folder for the three ``.onnx`` files (made if missing).
        config: a config for checkpoints without one.
        opset: the ONNX opset.
        check: run the graphs on ONNX Runtime and compare with torch eager.
        tolerance: the largest difference :func:`check_graphs` accepts.
        image_size: the graphs' image side, when not the model's own (a fully convolutional
            model runs at other multiples of 64, as ``fomm live --network-size`` does).
    Raises:
        FommError: the check needs onnxruntime, or the graphs differ from torch by more than
            ``tolerance``.
    """
    from fomm.checkpoints.loading import load_model

    models, cfg = load_model(checkpoint, config=config)
    if image_size is not None:
        cfg = dataclasses.replace(cfg, image_size=image_size)
    kp_detector, generator = models.kp_detector.eval(), models.generator.eval()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    convert = functools.partial(onnx_graph, opset=opset)
    graphs = LazyGraphs(kp_detector, generator, cfg.image_size, convert)
    paths = {name: out / f"{name}.onnx" for name in ("source_encoder", "kp_detector",
                                                      "generator")}
    paths["kp_detector"].write_bytes(graphs("kp"))
    paths["generator"].write_bytes(graphs("generator"))
    source = example(kp_detector, generator, cfg.image_size).image[:1]
    encoder = SourceEncoderGraph(export_generator(generator)).eval()
    paths["source_encoder"].write_bytes(convert(encoder, (source,), ["source"],
                                                ["features", "small"]))
    diff = check_graphs(paths, kp_detector, generator, cfg.image_size, tolerance) if check \
        else None
    return ExportResult(paths["source_encoder"], paths["kp_detector"], paths["generator"], diff)


def check_graphs(paths: dict[str, Path], kp_detector: nn.Module, generator: nn.Module,
                 size: int, tolerance: float = TOLERANCE) -> float:
    """Run the exported graphs on ONNX Runtime and torch eager on the same random inputs.

    Args:
        paths: ``source_encoder``, ``kp_detector``, ``generator`` → the ``.onnx`` files.
        kp_detector, generator: the fp32 modules they were exported from.
        size: the model's image size S.
    Returns:
        The largest absolute difference over every output.
    Raises:
        FommError: onnxruntime is missing, or a difference is above ``tolerance`` (naming the
            graph and output).
    """
    try:
        import onnxruntime as ort
    except ImportError:
        raise FommError("the export check needs onnxruntime: pip install 'fomm[export]' "
                        "(or pass --no-check)") from None

    def run(name: str, feeds: dict[str, Tensor]) -> dict[str, np.ndarray]:
        session = ort.InferenceSession(str(paths[name]), providers=["CPUExecutionProvider"])
        wanted = {i.name for i in session.get_inputs()}  # unused inputs are pruned
        outputs = [o.name for o in session.get_outputs()]
        got = session.run(outputs, {k: v.numpy() for k, v in feeds.items() if k in wanted})
        return dict(zip(outputs, got))

    rng = torch.Generator().manual_seed(1)
    images = torch.rand(3, 3, size, size, generator=rng)
    worst, where = 0.0, ""

    def compare(graph: str, got: dict[str, np.ndarray], expected: dict[str, Tensor]) -> None:
        nonlocal worst, where
        for name, array in got.items():
            diff = float(np.abs(array - expected[name].numpy()).max())
            if diff > worst or np.isnan(diff):
                worst, where = diff, f"{graph}.onnx output '{name}'"

    with torch.no_grad():
        kp = kp_detector(images)
        encoding = generator.encode_source(images[:1])
        kp_source = kp.select(slice(0, 1)).expand(3)
        eager = generator(images[:1], kp, kp_source, encoded=encoding, with_deformed=False)
    compare("source_encoder", run("source_encoder", {"source": images[:1]}),
            {"features": encoding.features, "small": encoding.small})
    compare("kp_detector", run("kp_detector", {"image": images}),
            {"value": kp.value, **({} if kp.jacobian is None else {"jacobian": kp.jacobian})})
    feeds = {"source": images[:1], "features": encoding.features, "small": encoding.small,
             "kp_source_value": kp_source.value, "kp_driving_value": kp.value}
    if kp.jacobian is not None:
        feeds |= {"kp_source_jacobian": kp_source.jacobian, "kp_driving_jacobian": kp.jacobian}
    compare("generator", run("generator", feeds),
            {n: getattr(eager, n) for n in eager._fields if getattr(eager, n) is not None})
    if not worst <= tolerance:
        raise FommError(f"the exported {where} differs from torch by {worst:.2e} (more than "
                        f"{tolerance:g}); this model does not export faithfully to ONNX opset "
                        "graphs (fomm animate --backend torch runs it)")
    return worst

