"""Backends: ONNX Runtime on the CPU gives torch eager's numbers; auto, the override and errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from tiny import moving_frames, tiny_blend_models, tiny_models

from fomm.errors import FommError
from fomm.inference.animator import Animator
from fomm.runtime import backends, graphs

pytest.importorskip("onnxruntime", reason="the ONNX backend needs onnxruntime (fomm[fast])")
CPU = torch.device("cpu")


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("FOMM_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv(backends.ENV, raising=False)


@pytest.fixture
def no_openvino(monkeypatch):
    """ONNX Runtime as auto's choice (OpenVINO, auto's first, is in test_openvino_backend)."""
    monkeypatch.setattr(backends, "openvino_available", lambda: False)


GRAPH_BACKENDS = ["onnx"] + (["openvino"] if backends.openvino_available() else [])


def _choice(backend, precision, device=CPU, **kwargs) -> tuple[str, str]:
    runtime = backends.choose_runtime(backend, precision, device, **kwargs)
    return runtime.backend, runtime.precision


def test_choose_runtime(monkeypatch):
    from fomm.runtime import precision

    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: False)
    monkeypatch.setattr(backends, "openvino_available", lambda: False)
    assert _choice("auto", "fp32") == ("onnx", "fp32")
    assert _choice("auto", "auto") == ("onnx", "fp32")
    assert _choice("auto", "bf16") == ("torch", "bf16")  # islands are torch's
    assert _choice("auto", "fp32", torch.device("cuda")) == ("torch", "fp32")
    assert _choice("torch", "fp32") == ("torch", "fp32")
    assert _choice("auto", "fp32", flavour="paddle") == ("torch", "fp32")
    monkeypatch.setenv(backends.ENV, "torch")
    assert _choice(None, "fp32") == ("torch", "fp32")  # the environment's default
    assert _choice("onnx", "fp32") == ("onnx", "fp32")  # a named one wins over it
    monkeypatch.delenv(backends.ENV)
    with pytest.raises(FommError, match="unknown backend"):
        _choice("tvm", "fp32")
    with pytest.raises(FommError, match="CPU at fp32"):
        _choice("onnx", "bf16")
    with pytest.raises(FommError, match="needs openvino"):
        _choice("openvino", "fp32")
    with pytest.raises(FommError, match="PaddleGAN's flavour"):
        _choice("onnx", "fp32", flavour="paddle")
    monkeypatch.setattr(backends, "onnxruntime_available", lambda: False)
    assert _choice("auto", "fp32") == ("torch", "fp32")
    with pytest.raises(FommError, match=r"fomm\[fast\]"):
        _choice("onnx", "fp32")
    monkeypatch.setattr(backends, "openvino_available", lambda: True)  # installed: first choice
    assert _choice("auto", "fp32") == ("openvino", "fp32")
    assert _choice("auto", "bf16") == ("openvino", "bf16")
    assert _choice("auto", "fp16", torch.device("cuda")) == ("torch", "fp16")
    assert _choice("auto", "fp32", torch.device("cuda")) == ("torch", "fp32")
    assert _choice("openvino", "bf16") == ("openvino", "bf16")
    assert _choice("auto", "fp32", flavour="paddle") == ("torch", "fp32")
    with pytest.raises(FommError, match="CPU at fp32 or bf16"):
        _choice("openvino", "fp32", torch.device("cuda"))
    monkeypatch.setattr(backends, "onnxruntime_available", lambda: True)
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: True)
    assert _choice("auto", "auto") == ("openvino", "bf16")
    assert _choice("onnx", "auto") == ("onnx", "fp32")  # ONNX Runtime runs fp32 only
    assert backends.choose_runtime("auto", "auto", CPU).explicit is False
    assert backends.choose_runtime("openvino", "auto", CPU).explicit is True


@pytest.mark.parametrize("backend", GRAPH_BACKENDS)
def test_paddle_flavour_stays_eager(backend):
    models, cfg = tiny_models(flavour="paddle")
    assert Animator(models, cfg, device="cpu").backend == "torch"
    with pytest.raises(FommError, match="PaddleGAN's flavour"):
        Animator(models, cfg, device="cpu", backend=backend)


@pytest.mark.parametrize("backend", GRAPH_BACKENDS)
def test_graph_backend_matches_eager(backend):
    models, cfg = tiny_models()
    eager = Animator(models, cfg, device="cpu", backend="torch")
    fast = Animator(models, cfg, device="cpu", backend=backend, precision="fp32")
    assert (eager.backend, fast.backend) == ("torch", backend)
    frames = moving_frames(5)
    images = eager.to_model_input(frames)
    kp_e, kp_f = eager.keypoints(images), fast.keypoints(images)
    assert torch.allclose(kp_e.value, kp_f.value, atol=1e-5)
    assert torch.allclose(kp_e.jacobian, kp_f.jacobian, atol=1e-4)
    src_e, src_f = eager.prepare_source(frames[0]), fast.prepare_source(frames[0])
    out_e, out_f = eager.generate(src_e, kp_e), fast.generate(src_f, kp_e)  # batch of 5
    assert out_f.shape == out_e.shape
    assert (out_e - out_f).abs().max() < 1e-4
    one = np.stack(list(fast.animate(src_f, frames, batch_size=1)))
    four = np.stack(list(fast.animate(src_f, frames, batch_size=4)))
    ref = np.stack(list(eager.animate(src_e, frames, batch_size=4)))
    assert np.abs(one.astype(int) - four.astype(int)).max() <= 1
    assert np.abs(ref.astype(int) - four.astype(int)).max() <= 1


@pytest.mark.parametrize("backend", GRAPH_BACKENDS)
def test_graph_backend_detail_matches_eager(backend):
    models, cfg = tiny_models()
    frames = moving_frames(3)
    detail = np.kron(frames[0], np.ones((2, 2, 1), np.uint8))  # the crop at 2x: (128, 128, 3)
    out = {}
    for name in ("torch", backend):
        animator = Animator(models, cfg, device="cpu", backend=name, precision="fp32")
        source = animator.prepare_source(frames[0], detail=detail)
        out[name] = np.stack(list(animator.animate(source, frames, batch_size=2)))
    assert out[backend].shape == (3, 128, 128, 3)
    assert np.abs(out[backend].astype(int) - out["torch"].astype(int)).max() <= 1


def test_graphs_are_cached(tmp_path, monkeypatch, no_openvino):
    models, cfg = tiny_models()
    Animator(models, cfg, device="cpu", backend="onnx")
    cached = sorted((tmp_path / "cache" / "onnx").glob("*.onnx"))
    assert [p.name.split("-", 1)[1] for p in cached] == ["generator.onnx", "kp.onnx"]
    monkeypatch.setattr(backends, "onnx_graph", lambda *a, **k: pytest.fail("exported again"))
    assert Animator(models, cfg, device="cpu").backend == "onnx"
    other, _ = tiny_models(seed=1)  # other weights: another key
    assert graphs.model_key(other.kp_detector, other.generator) != graphs.model_key(
        models.kp_detector, models.generator)


def test_export_failure_falls_back_unless_asked(monkeypatch, caplog, no_openvino):
    models, cfg = tiny_models()

    def broken(*args, **kwargs):
        raise RuntimeError("no symbolic for this op")

    monkeypatch.setattr(backends, "onnx_graph", broken)
    assert Animator(models, cfg, device="cpu").backend == "torch"
    assert "running torch eager" in caplog.text
    with pytest.raises(FommError, match="did not convert"):
        Animator(models, cfg, device="cpu", backend="onnx")


@pytest.mark.parametrize("backend", GRAPH_BACKENDS)
def test_shared_heads_keep_the_numbers(backend):
    """The bundled model's layout (blend output, occlusion map): paired heads merged for export."""
    models, cfg = tiny_blend_models()
    merged = graphs.export_generator(models.generator)
    assert isinstance(merged.shared_head, graphs._SharedHead)
    assert isinstance(merged.dense_motion_network.shared_head, graphs._SharedHead)
    assert not hasattr(models.generator, "shared_head")  # the original is left as it was
    frames = moving_frames(3)
    eager = Animator(models, cfg, device="cpu", backend="torch")
    fast = Animator(models, cfg, device="cpu", backend=backend, precision="fp32")
    kp = eager.keypoints(eager.to_model_input(frames))
    out_e = eager.generator_output(eager.prepare_source(frames[0]), kp)
    out_f = fast.generator_output(fast.prepare_source(frames[0]), kp)
    for name in ("prediction", "blend_mask", "occlusion_map", "deformation"):
        assert (getattr(out_e, name) - getattr(out_f, name)).abs().max() < 1e-4, name


def test_strided_blur_keeps_the_numbers():
    """The keypoint detector's input downsampling is exported as a strided blur (same values)."""
    from fomm.models.blocks import AntiAliasInterpolation2d

    models, cfg = tiny_models()
    assert cfg.kp_detector.scale_factor != 1  # the tiny detector downsamples its input
    strided = graphs.export_kp_detector(models.kp_detector)
    assert isinstance(strided.down, graphs._StridedBlur)
    assert isinstance(models.kp_detector.down, AntiAliasInterpolation2d)  # original as it was
    image = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.allclose(strided.down(image), models.kp_detector.down(image), atol=1e-6)
    frames = moving_frames(3)
    eager = Animator(models, cfg, device="cpu", backend="torch")
    fast = Animator(models, cfg, device="cpu", backend="onnx")
    kp_e = eager.keypoints(eager.to_model_input(frames))
    kp_f = fast.keypoints(fast.to_model_input(frames))
    assert (kp_e.value - kp_f.value).abs().max() < 1e-4
    assert (kp_e.jacobian - kp_f.jacobian).abs().max() < 1e-4
