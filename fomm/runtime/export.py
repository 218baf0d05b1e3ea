"""ONNX export of the keypoint detector and generator, with an onnxruntime parity check.

Two graphs, so that apps can encode the source once and run the generator per driving frame:

* ``kp_detector.onnx``: ``image`` (B, 3, S, S) in [0, 1] → ``value`` (B, K, 2), ``jacobian``
  (B, K, 2, 2);
* ``generator.onnx``: ``source`` (B, 3, S, S), ``kp_source_value``/``_jacobian``,
  ``kp_driving_value``/``_jacobian`` → ``prediction`` (B, 3, S, S). Motion normalisation
  (relative / adapt-scale) is plain arithmetic on keypoints, done by the caller
  (see :func:`fomm.models.motion.normalize_kp`).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from fomm.errors import FommError
from fomm.models.motion import Keypoints


class _KPDetector(nn.Module):
    def __init__(self, kp_detector: nn.Module) -> None:
        super().__init__()
        self.kp_detector = kp_detector

    def forward(self, image: Tensor) -> tuple[Tensor, Tensor]:
        kp = self.kp_detector(image)
        return kp.value, kp.jacobian


class _Generator(nn.Module):
    def __init__(self, generator: nn.Module) -> None:
        super().__init__()
        self.generator = generator

    def forward(self, source: Tensor, kp_source_value: Tensor, kp_source_jacobian: Tensor,
                kp_driving_value: Tensor, kp_driving_jacobian: Tensor) -> Tensor:
        out = self.generator(source, Keypoints(kp_driving_value, kp_driving_jacobian),
                             Keypoints(kp_source_value, kp_source_jacobian), with_deformed=False)
        return out.prediction


def export_onnx(checkpoint: str | Path | None, out_dir: str | Path,
                config: str | Path | None = None, opset: int = 17,
                check: bool = True) -> dict[str, object]:
    """Export a checkpoint's networks to ONNX and (optionally) compare with onnxruntime.

    Returns:
        ``{"kp_detector": path, "generator": path, "max_abs_diff": float | None}``.
    """
    from fomm.checkpoints.loading import load_model

    models, cfg = load_model(checkpoint, config=config)
    if not cfg.kp_detector.estimate_jacobian:
        raise FommError("ONNX export needs a model with jacobians (estimate_jacobian: true)")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    size, k = cfg.image_size, cfg.num_kp
    torch.manual_seed(0)
    image = torch.rand(2, 3, size, size)
    kp_model, gen_model = _KPDetector(models.kp_detector).eval(), _Generator(
        models.generator).eval()
    with torch.no_grad():
        kp_value, kp_jac = kp_model(image)
    batch = {0: "batch"}
    kp_path, gen_path = out / "kp_detector.onnx", out / "generator.onnx"
    gen_inputs = (image, kp_value.flip(0), kp_jac.flip(0), kp_value, kp_jac)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(kp_model, (image,), str(kp_path), dynamo=False, opset_version=opset,
                          input_names=["image"], output_names=["value", "jacobian"],
                          dynamic_axes={"image": batch, "value": batch, "jacobian": batch})
        names = ["source", "kp_source_value", "kp_source_jacobian", "kp_driving_value",
                 "kp_driving_jacobian"]
        torch.onnx.export(gen_model, gen_inputs, str(gen_path), dynamo=False,
                          opset_version=opset, input_names=names, output_names=["prediction"],
                          dynamic_axes={**{n: batch for n in names}, "prediction": batch})
    diff = None
    if check:
        diff = _check(kp_model, gen_model, kp_path, gen_path, image, gen_inputs)
    assert kp_value.shape[1] == k
    return {"kp_detector": kp_path, "generator": gen_path, "max_abs_diff": diff}


def _check(kp_model: nn.Module, gen_model: nn.Module, kp_path: Path, gen_path: Path,
           image: Tensor, gen_inputs: tuple[Tensor, ...]) -> float:
    try:
        import onnxruntime as ort
    except ImportError:
        raise FommError("the parity check needs onnxruntime: pip install 'fomm[export]' "
                        "(or pass --no-check)") from None
    kp_sess = ort.InferenceSession(str(kp_path), providers=["CPUExecutionProvider"])
    gen_sess = ort.InferenceSession(str(gen_path), providers=["CPUExecutionProvider"])
    with torch.no_grad():
        expected_kp = kp_model(image)
        expected = gen_model(*gen_inputs)
    got_kp = kp_sess.run(None, {"image": image.numpy()})
    feeds = {i.name: t.numpy() for i, t in zip(gen_sess.get_inputs(), gen_inputs)}
    got = gen_sess.run(None, feeds)[0]
    diffs = [np.abs(a.numpy() - b).max() for a, b in zip(expected_kp, got_kp)]
    diffs.append(np.abs(expected.numpy() - got).max())
    return float(max(diffs))




