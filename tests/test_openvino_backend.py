"""OpenVINO backend: fp32 gives torch eager's numbers; bf16 runs only the islands in bf16; the
converted graphs are cached and own their weights; failures fall back unless asked for."""

from __future__ import annotations

import gc

import numpy as np
import pytest
import torch
from tiny import tiny_models

from fomm import backends, graphs, openvino_backend
from fomm.animate import Animator
from fomm.errors import FommError

pytest.importorskip("openvino", reason="the OpenVINO backend needs openvino")


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("FOMM_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv(backends.ENV, raising=False)


def _frames(n: int, size: int = 64) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    base = rng.integers(0, 255, (size, size, 3), dtype=np.uint8)
    return [np.roll(base, (3 * i, 2 * i), (0, 1)) for i in range(n)]


def _blend_models():
    """Tiny networks in the bundled model's layout (blend output, occlusion map)."""
    import dataclasses

    from fomm.models import build_models

    _, cfg = tiny_models()
    cfg = dataclasses.replace(cfg, generator=dataclasses.replace(
        cfg.generator, blend_output=True, estimate_occlusion_map=True))
    torch.manual_seed(0)
    models = build_models(cfg)
    with torch.no_grad():
        models.generator.blend.weight.normal_(0, 0.1)  # a blend that depends on the features
    return models, cfg


@pytest.mark.parametrize("layout", ["plain", "blend"])
def test_fp32_matches_eager(layout):
    models, cfg = tiny_models() if layout == "plain" else _blend_models()
    eager = Animator(models, cfg, device="cpu", backend="torch")
    fast = Animator(models, cfg, device="cpu", backend="openvino", precision="fp32")
    assert (fast.backend, fast.precision) == ("openvino", "fp32")
    frames = _frames(5)
    images = eager.to_model_input(frames)
    kp_e, kp_f = eager.keypoints(images), fast.keypoints(images)
    assert torch.allclose(kp_e.value, kp_f.value, atol=1e-5)
    assert torch.allclose(kp_e.jacobian, kp_f.jacobian, atol=1e-4)
    src_e, src_f = eager.prepare_source(frames[0]), fast.prepare_source(frames[0])
    out_e = eager.generator_output(src_e, kp_e)  # a batch of 5
    out_f = fast.generator_output(src_f, kp_e)
    for name in ("prediction", "occlusion_map", "deformation", "blend_mask"):
        a, b = getattr(out_e, name), getattr(out_f, name)
        assert (a is None) == (b is None), name
        if a is not None:
            assert a.shape == b.shape and (a - b).abs().max() < 1e-4, name
    one = np.stack(list(fast.animate(src_f, frames, batch_size=1)))
    four = np.stack(list(fast.animate(src_f, frames, batch_size=4)))
    ref = np.stack(list(eager.animate(src_e, frames, batch_size=4)))
    assert np.abs(one.astype(int) - four.astype(int)).max() <= 1
    assert np.abs(ref.astype(int) - four.astype(int)).max() <= 1


def test_detail_matches_eager():
    models, cfg = tiny_models()
    frames = _frames(3)
    detail = np.kron(frames[0], np.ones((2, 2, 1), np.uint8))  # the crop at 2x: (128, 128, 3)
    out = {}
    for name in ("torch", "openvino"):
        animator = Animator(models, cfg, device="cpu", backend=name, precision="fp32")
        source = animator.prepare_source(frames[0], detail=detail)
        out[name] = np.stack(list(animator.animate(source, frames, batch_size=2)))
    assert out["openvino"].shape == (3, 128, 128, 3)
    assert np.abs(out["openvino"].astype(int) - out["torch"].astype(int)).max() <= 1


def test_bf16_islands_only():
    """The islands and the output head are wrapped in bf16; everything else stays fp32."""
    models, _ = _blend_models()
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
    models, cfg = _blend_models()
    frames = _frames(3)
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


def test_conversion_failure_falls_back_unless_asked(monkeypatch, capsys):
    models, cfg = tiny_models()
    monkeypatch.setattr(backends, "openvino_available", lambda: True)

    def broken(*args, **kwargs):
        raise RuntimeError("no conversion rule for this op")

    monkeypatch.setattr(openvino_backend, "_convert", broken)
    animator = Animator(models, cfg, device="cpu", precision="fp32")
    assert animator.backend == "torch"
    assert "running torch eager" in capsys.readouterr().err
    with pytest.raises(FommError, match="did not convert"):
        Animator(models, cfg, device="cpu", backend="openvino", precision="fp32")


def test_paddle_flavour_stays_eager():
    models, cfg = tiny_models(flavour="paddle")
    assert Animator(models, cfg, device="cpu").backend == "torch"
    with pytest.raises(FommError, match="PaddleGAN's flavour"):
        Animator(models, cfg, device="cpu", backend="openvino")


def test_auto_picks_openvino_on_the_cpu(monkeypatch):
    from fomm import precision

    models, cfg = tiny_models()
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: True)
    animator = Animator(models, cfg, device="cpu", precision="auto")
    assert (animator.backend, animator.precision) == ("openvino", "bf16")
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: False)
    animator = Animator(models, cfg, device="cpu", precision="auto")
    assert (animator.backend, animator.precision) == ("openvino", "fp32")
