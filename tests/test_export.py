"""``fomm export``: the graphs the ONNX Runtime backend runs, as files that animate like torch."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from tiny import moving_frames, tiny_blend_models, tiny_models

from fomm.checkpoints import save_checkpoint
from fomm.cli.main import main
from fomm.errors import FommError
from fomm.inference.animator import Animator
from fomm.models import motion

ort = pytest.importorskip("onnxruntime", reason="onnxruntime missing (pip install fomm[export])")


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("FOMM_CACHE", str(tmp_path / "cache"))


def _session(path):
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


@pytest.mark.parametrize("make", [tiny_models, tiny_blend_models])
def test_exported_graphs_animate_like_torch(tmp_path, capsys, make):
    models, cfg = make()
    ckpt = tmp_path / "tiny.safetensors"
    save_checkpoint(ckpt, models, cfg)
    main(["export", "-c", str(ckpt), "-o", str(tmp_path / "onnx")])
    out = capsys.readouterr().out
    assert float(out.rsplit("difference", 1)[1].split()[0]) <= 1e-4
    folder = tmp_path / "onnx"
    encoder, kp_graph, generator = (_session(folder / f"{n}.onnx") for n in
                                    ("source_encoder", "kp_detector", "generator"))
    # the source goes in once: the generator takes its encoding, not the image's encoder
    assert {"features", "small"} <= {i.name for i in generator.get_inputs()}

    # an app's loop: encode the source once, then keypoints and generator per batch of frames
    eager = Animator(models, cfg, device="cpu", precision="fp32", backend="torch")
    frames = moving_frames(4)
    source = eager.prepare_source(frames[0])
    images = eager.to_model_input(frames).contiguous().numpy()
    features, small = encoder.run(None, {"source": images[:1]})
    names = [o.name for o in kp_graph.get_outputs()]
    kp = motion.Keypoints(*(torch.from_numpy(a) for a in kp_graph.run(None, {"image": images})))
    assert names == ["value", "jacobian"]
    kp_norm = motion.normalize_kp(source.kp, kp, kp.select(slice(0, 1)))[0]
    kp_source = source.kp.expand(4)
    feeds = {"source": images[:1], "features": features, "small": small,
             "kp_source_value": kp_source.value.numpy(), "kp_driving_value": kp_norm.value.numpy(),
             "kp_source_jacobian": kp_source.jacobian.numpy(),
             "kp_driving_jacobian": kp_norm.jacobian.numpy()}
    wanted = {i.name for i in generator.get_inputs()}
    prediction = generator.run(["prediction"], {k: v for k, v in feeds.items() if k in wanted})[0]
    expected = eager.generate(source, kp_norm).numpy()
    assert prediction.shape == expected.shape == (4, 3, 64, 64)
    assert np.abs(prediction - expected).max() < 1e-4


def test_export_writes_the_runtimes_graphs(tmp_path):
    """The exported keypoint and generator graphs are the bytes the ONNX Runtime backend runs."""
    models, cfg = tiny_blend_models()
    ckpt = tmp_path / "tiny.safetensors"
    save_checkpoint(ckpt, models, cfg)
    from fomm.runtime.export import export_onnx

    result = export_onnx(ckpt, tmp_path / "onnx")
    Animator(models, cfg, device="cpu", precision="fp32", backend="onnx")
    cached = {p.name.split("-", 1)[1]: p.read_bytes()
              for p in (tmp_path / "cache" / "onnx").glob("*.onnx")}
    assert cached["kp.onnx"] == result.kp_detector.read_bytes()
    assert cached["generator.onnx"] == result.generator.read_bytes()


def test_a_graph_beyond_the_tolerance_is_a_clear_error(tmp_path):
    from fomm.runtime.export import check_graphs, export_onnx

    models, cfg = tiny_models()
    ckpt = tmp_path / "tiny.safetensors"
    save_checkpoint(ckpt, models, cfg)
    result = export_onnx(ckpt, tmp_path / "onnx", check=False)
    assert result.max_abs_diff is None
    paths = {"source_encoder": result.source_encoder, "kp_detector": result.kp_detector,
             "generator": result.generator}
    other, _ = tiny_models(seed=1)  # other weights: the graphs no longer match them
    with pytest.raises(FommError, match=r"exported .*\.onnx output '\w+' differs from torch"):
        check_graphs(paths, other.kp_detector.eval(), other.generator.eval(), 64)
    assert check_graphs(paths, models.kp_detector, models.generator, 64) <= 1e-4
