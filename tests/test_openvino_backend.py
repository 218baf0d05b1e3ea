"""OpenVINO backend: bf16 runs only the islands in bf16; the converted graphs are cached and own
their weights; failures fall back unless asked for; auto picks it on a CPU. (fp32 against torch
eager, --detail and PaddleGAN's flavour: test_backends, for both graph backends.)"""

from __future__ import annotations

import gc

import numpy as np
import pytest
import torch
from tiny import moving_frames, tiny_blend_models, tiny_models

from fomm.errors import FommError
from fomm.inference.animator import Animator
from fomm.runtime import backends, graphs
from fomm.runtime import openvino as openvino_backend

pytest.importorskip("openvino", reason="the OpenVINO backend needs openvino")


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("FOMM_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv(backends.ENV, raising=False)


def test_bf16_islands_only():
    """The islands and the output head are wrapped in bf16; everything else stays fp32."""
    models, _ = tiny_blend_models()
    kp = graphs.export_kp_detector(models.kp_detector)
    gen = graphs.export_generator(models.generator)
    kp16, gen16 = openvino_backend.bf16_islands(kp, gen)
    wrapped = {name for name, m in gen16.named_modules()
               if isinstance(m, openvino_backend._Bf16)}
    assert "bottleneck" in wrapped and "dense_motion_network.hourglass" in wrapped
    assert "up_blocks.0" in wrapped and "shared_head.conv" in wrapped
    assert not any(name.startswith("dense_motion_network.shared_head") for name in wrapped)
    assert isinstance(kp16.predictor, openvino_backend._Bf16)
    assert gen16.dense_motion_network.shared_head.conv.weight.dtype == torch.float32
    assert gen.bottleneck.r0.conv1.weight.dtype == torch.float32  # the copies' source unchanged


def test_bf16_close_to_fp32_and_owns_its_weights():
    """bf16 on random tiny weights: a sanity bound. The graph must not point at the freed
    weights of the bf16 copies it was converted from (which read back as garbage or NaN)."""
    models, cfg = tiny_blend_models()
    frames = moving_frames(3)
    out = {}
    for name in ("fp32", "bf16"):
        animator = Animator(models, cfg, device="cpu", backend="openvino", precision=name)
        assert animator.precision == name
        gc.collect()
        _ = [torch.rand(256, 256) for _ in range(64)]  # reuse freed memory
        source = animator.prepare_source(frames[0])
        out[name] = np.stack(list(animator.animate(source, frames)))
    diff = np.abs(out["bf16"].astype(int) - out["fp32"].astype(int))
    assert diff.mean() <= 3 and diff.max() <= 32


def test_graphs_are_cached(tmp_path, monkeypatch):
    models, cfg = tiny_models()
    Animator(models, cfg, device="cpu", backend="openvino", precision="bf16")
    cached = sorted((tmp_path / "cache" / "openvino").glob("*.xml"))
    assert [p.name.split("-", 1)[1] for p in cached] == ["generator.xml", "kp.xml"]

    def again(*args, **kwargs):
        raise RuntimeError("converted again")

    monkeypatch.setattr(openvino_backend, "_convert", again)
    assert Animator(models, cfg, device="cpu", backend="openvino",
                    precision="bf16").backend == "openvino"
    with pytest.raises(FommError, match="converted again"):  # fp32 graphs: another key
        Animator(models, cfg, device="cpu", backend="openvino", precision="fp32")


def test_conversion_failure_falls_back_unless_asked(monkeypatch, caplog):
    models, cfg = tiny_models()
    monkeypatch.setattr(backends, "openvino_available", lambda: True)

    def broken(*args, **kwargs):
        raise RuntimeError("no conversion rule for this op")

    monkeypatch.setattr(openvino_backend, "_convert", broken)
    animator = Animator(models, cfg, device="cpu", precision="fp32")
    assert animator.backend == "torch"
    assert "running torch eager" in caplog.text
    with pytest.raises(FommError, match="did not convert"):
        Animator(models, cfg, device="cpu", backend="openvino", precision="fp32")


def test_auto_picks_openvino_on_the_cpu(monkeypatch):
    from fomm.runtime import precision
    models, cfg = tiny_models()
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: True)
    # the decision alone (auto's check of the checkpoint: tests/test_precision.py)
    monkeypatch.setattr(Animator, "_probe", lambda self: {"mean": 0.0, "p99": 0.0})
    animator = Animator(models, cfg, device="cpu", precision="auto")
    assert (animator.backend, animator.precision) == ("openvino", "bf16")
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: False)
    animator = Animator(models, cfg, device="cpu", precision="auto")
    assert (animator.backend, animator.precision) == ("openvino", "fp32")
