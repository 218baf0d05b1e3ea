"""Precision: auto picks bf16 only on CPUs with native bf16 and only where it is faster than fp32
on ONNX Runtime; bf16 islands stay close to fp32."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from tiny import tiny_models

from fomm.config import AnimateOptions
from fomm.errors import FommError
from fomm.inference.animator import Animator
from fomm.runtime import precision

CPU = torch.device("cpu")


@pytest.mark.parametrize(
    ("flags", "capability", "expected"),
    [
        (set(), "AVX2", "fp32"),
        ({"avx512f"}, "AVX512", "fp32"),
        ({"avx512f", "avx512_bf16"}, "AVX512", "bf16"),
        ({"amx_bf16", "amx_tile"}, "AVX512", "bf16"),
    ],
)
def test_auto_is_bf16_only_where_native(monkeypatch, flags, capability, expected):
    monkeypatch.setattr(precision, "cpu_flags", lambda: flags)
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: capability)
    assert precision.resolve_precision("auto", CPU) == expected
    assert precision.resolve_precision("fp32", CPU) == "fp32"  # always available


@pytest.mark.parametrize(
    ("native", "backend", "parameters", "expected"),
    [
        (True, "torch", 1_500_000, "bf16"),  # ONNX Runtime off or missing: eager, bf16 is faster
        (True, "auto", 1_500_000, "fp32"),  # small networks: fp32 on ONNX Runtime is faster
        (True, "auto", 60_000_000, "bf16"),  # the full-size networks: bf16 eager is faster
        (True, "auto", None, "bf16"),  # unknown size: taken as large
        (True, "onnx", 60_000_000, "fp32"),  # ONNX Runtime asked for: it runs fp32 only
        (True, "openvino", 1_500_000, "bf16"),  # OpenVINO's bf16 islands: faster at any size
        (True, "openvino", 60_000_000, "bf16"),
        (False, "openvino", 1_500_000, "fp32"),
        (False, "auto", 60_000_000, "fp32"),
        (False, "torch", 60_000_000, "fp32"),
    ],
)
def test_auto_picks_the_measured_faster(monkeypatch, native, backend, parameters, expected):
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: native)
    got = precision.resolve_precision("auto", CPU, backend=backend, parameters=parameters)
    assert got == expected
    for name in ("fp32", "bf16"):  # asked for by name: always as asked
        asked = precision.resolve_precision(name, CPU, backend=backend, parameters=parameters)
        assert asked == name


def picked(**kwargs) -> tuple[str, str]:
    """(precision, backend) an Animator on tiny networks picks at ``--precision auto``."""
    animator = Animator(*tiny_models(image_size=64), device="cpu", precision="auto", **kwargs)
    return animator.precision, animator.backend


@pytest.fixture
def checked_ok(monkeypatch):
    """auto's check of a checkpoint in reduced precision passes (tested on its own below)."""
    monkeypatch.setattr(Animator, "_probe", lambda self: {"mean": 0.0, "p99": 0.0})


def test_animator_auto_precision_and_backend(monkeypatch, tmp_path, checked_ok):
    """The Animator passes the backend asked for and the networks' size to the decision."""
    pytest.importorskip("onnxruntime", reason="auto's fp32 path runs on ONNX Runtime")
    from fomm.runtime import backends
    from fomm.runtime.backends import ENV

    monkeypatch.setenv("FOMM_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv(ENV, raising=False)
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: True)
    monkeypatch.setattr(backends, "openvino_available", lambda: False)  # ONNX Runtime's choices

    assert picked() == ("fp32", "onnx")  # tiny networks: below the crossover
    assert picked(backend="torch") == ("bf16", "torch")
    monkeypatch.setenv(ENV, "torch")  # FOMM_BACKEND=torch
    assert picked() == ("bf16", "torch")
    monkeypatch.delenv(ENV)
    monkeypatch.setattr(precision, "BF16_MIN_PARAMETERS", 0)  # as if the networks were large
    assert picked() == ("bf16", "torch")
    assert picked(backend="onnx") == ("fp32", "onnx")
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: False)
    assert picked() == ("fp32", "onnx")


def test_animator_auto_precision_with_openvino(monkeypatch, tmp_path, checked_ok):
    """With OpenVINO installed it is auto's first choice, bf16 at any size on a native-bf16 CPU."""
    pytest.importorskip("openvino", reason="the OpenVINO backend needs openvino")
    from fomm.runtime.backends import ENV

    monkeypatch.setenv("FOMM_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv(ENV, raising=False)
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: True)

    assert picked() == ("bf16", "openvino")  # any size: its bf16 islands are faster
    assert picked(backend="onnx") == ("fp32", "onnx")
    assert picked(backend="torch") == ("bf16", "torch")
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: False)
    assert picked() == ("fp32", "openvino")


def _openvino() -> bool:
    from fomm.runtime.openvino import openvino_available

    return openvino_available()


def test_resolve_precision_checks(monkeypatch):
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: True)
    assert precision.resolve_precision("auto", torch.device("cuda")) == "fp32"
    with pytest.raises(FommError, match="fp16 needs a GPU"):
        precision.resolve_precision("fp16", CPU)
    with pytest.raises(FommError, match="unknown precision"):
        precision.resolve_precision("int8", CPU)


def test_one_precision_default_everywhere():
    import inspect

    assert AnimateOptions().precision == "auto"  # the CLI's and the pipeline's default
    assert inspect.signature(Animator).parameters["precision"].default == "auto"  # the API's
    api = pytest.importorskip("fomm.app.api", reason="the serve extra is not installed")
    assert api.Settings().precision == "auto"  # fomm serve's and fomm worker's model


def _amplifying_models():
    """Seeded random networks whose batch norms amplify tenfold (running variance 0.01): bf16's
    rounding grows through them far past auto's bound."""
    models, cfg = tiny_models(image_size=64)
    for net in models[:2]:
        for module in net.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_var.fill_(0.01)
    return models, cfg


@pytest.mark.parametrize("backend", ["torch", "openvino"])
def test_safe_auto_falls_back_to_fp32_for_a_checkpoint_beyond_the_bound(
        monkeypatch, tmp_path, caplog, backend):
    if backend == "openvino" and not _openvino():
        pytest.skip("openvino not installed")
    monkeypatch.setenv("FOMM_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: True)  # as on AMX / AVX512-BF16
    models, cfg = _amplifying_models()
    measured = Animator(models, cfg, device="cpu", precision="bf16", backend=backend)._probe()
    assert measured["mean"] > precision.AUTO_MEAN_BOUND  # the checkpoint does fail the bound
    with caplog.at_level("WARNING", logger="fomm.inference.animator"):
        animator = Animator(*_amplifying_models(), device="cpu", precision="auto",
                            backend=backend)
    assert (animator.precision, animator.backend) == ("fp32", backend)
    notes = [r.getMessage() for r in caplog.records if "precision auto" in r.getMessage()]
    assert len(notes) == 1 and "running fp32" in notes[0] and "\n" not in notes[0]
    verdicts = list((tmp_path / "cache" / "precision").glob("*.json"))
    assert len(verdicts) == 1  # cached with the graphs

    def no_probe(self):
        raise AssertionError("the cached verdict was not used")

    monkeypatch.setattr(Animator, "_probe", no_probe)
    set_up = []
    run_on = Animator._run_on
    monkeypatch.setattr(Animator, "_run_on", lambda self, rt: (set_up.append(rt), run_on(self, rt)))
    again = Animator(*_amplifying_models(), device="cpu", precision="auto", backend=backend)
    assert again.precision == "fp32"
    assert [rt.precision for rt in set_up] == ["fp32"]  # no bf16 networks made on a known verdict
    # asked for by name, bf16 is what it says (no check)
    assert Animator(*_amplifying_models(), device="cpu", precision="bf16",
                    backend=backend).precision == "bf16"


def test_safe_auto_keeps_bf16_for_a_checkpoint_within_the_bound(monkeypatch, tmp_path, caplog):
    from fomm.checkpoints.loading import load_model

    monkeypatch.setenv("FOMM_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: True)
    models, cfg = load_model(None)  # the bundled model: its islands stay close to fp32
    with caplog.at_level("WARNING", logger="fomm.inference.animator"):
        animator = Animator(models, cfg, device="cpu", precision="auto", backend="torch")
    assert (animator.precision, animator.backend) == ("bf16", "torch")
    assert not [r for r in caplog.records if "precision auto" in r.getMessage()]
    verdict = precision.cached_verdict(
        next((tmp_path / "cache" / "precision").glob("*.json")).stem, lambda: {})
    assert precision.within_bound(verdict) and verdict["mean"] > 0  # measured, not assumed


def test_within_bound_is_the_projects_bound():
    assert precision.within_bound({"mean": 1 / 255, "p99": 8 / 255})
    assert not precision.within_bound({"mean": 1.01 / 255, "p99": 0.0})
    assert not precision.within_bound({"mean": 0.0, "p99": 8.5 / 255})
    a = torch.zeros(1, 3, 10, 10)
    b = a.clone()
    b[0, 0, 0, :] = 1.0  # 10 of 300 values differ by 1
    got = precision.difference(b, a)
    assert got["mean"] == pytest.approx(10 / 300) and got["p99"] == pytest.approx(1.0)


def test_islands_change_nothing_outside_bf16():
    models, cfg = tiny_models(image_size=64)
    state = {k: v.clone() for k, v in models.generator.state_dict().items()}
    x = torch.rand(1, 3, 64, 64)
    before = models.kp_detector(x).value
    assert precision.mark_islands(models.kp_detector, models.generator) > 0
    assert precision.mark_islands(models.kp_detector, models.generator) > 0  # idempotent
    assert torch.equal(models.kp_detector(x).value, before)
    assert models.generator.state_dict().keys() == state.keys()
    with precision.islands_enabled(torch.bfloat16):
        kp = models.kp_detector(x)
    assert kp.value.dtype == torch.float32 and kp.jacobian.dtype == torch.float32
    assert not torch.equal(kp.value, before)  # the hourglass did run in bf16


def test_bf16_animator_close_to_fp32():
    rng = np.random.default_rng(0)
    source = rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)
    driving = [rng.integers(0, 255, (64, 64, 3), dtype=np.uint8) for _ in range(3)]
    out = {}
    for name in ("fp32", "bf16"):
        animator = Animator(*tiny_models(image_size=64), device="cpu", precision=name)
        out[name] = np.stack(list(animator.animate(animator.prepare_source(source), driving)))
    diff = np.abs(out["bf16"].astype(int) - out["fp32"].astype(int))
    assert diff.mean() <= 3 and diff.max() <= 32  # random weights: a sanity bound only


@pytest.mark.parametrize("backend", ["torch", "openvino"])
def test_bf16_islands_with_real_weights_within_tolerance(backend):
    """The bundled model on a real talking face: mean |Δ| ≤ 1/255, p99 ≤ 8/255 of fp32."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from accuracy import bf16_difference  # benchmarks/accuracy.py

    if backend == "openvino" and not _openvino():
        pytest.skip("openvino not installed")
    diff = bf16_difference(frames=3, step=13, backend=backend)
    print(
        f"bf16 vs fp32 on {backend}: mean {diff.mean():.3f}, p99 {np.percentile(diff, 99):g}, "
        f"max {diff.max()} (/255)"
    )
    assert diff.mean() <= 1.0 and np.percentile(diff, 99) <= 8


@pytest.mark.parametrize("command", ["animate", "live", "serve", "worker"])
def test_every_command_takes_the_same_precisions(command):
    import argparse
    import importlib

    from fomm.cli.main import LAZY_COMMANDS, build_parser

    if command == "animate":
        parser = build_parser()
        sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        p = sub.choices["animate"]
    else:  # lazy subcommands register on their own
        subparsers = argparse.ArgumentParser().add_subparsers()
        importlib.import_module(LAZY_COMMANDS[command][0]).register(subparsers)
        p = subparsers.choices[command]
    action = next(a for a in p._actions if a.dest == "precision")
    assert tuple(action.choices) == precision.PRECISIONS
    assert action.default == "auto"
