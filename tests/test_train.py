"""Trainer: learning on a tiny dataset, exact resume, signals, the official fixture, DDP on gloo."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp
from conftest import write_clip

from fomm.checkpoints.original import read_original
from fomm.media.image import write_image
from fomm.train import Trainer, TrainOptions
from fomm.train.evaluate import ReconstructOptions, reconstruct

ROOT = Path(__file__).resolve().parents[1]
PALETTE = [(200, 60, 40), (40, 120, 200), (230, 210, 60)]

TINY_CONFIG = """\
dataset_params:
  root_dir: data
  frame_shape: [32, 32, 3]
  id_sampling: False
  augmentation_params:
    flip_param: {{horizontal_flip: True, time_flip: True}}
    jitter_param: {{brightness: 0.1, contrast: 0.1, saturation: 0.1, hue: 0.1}}
model_params:
  common_params: {{num_kp: 5, num_channels: 3, estimate_jacobian: True}}
  kp_detector_params: {{temperature: 0.1, block_expansion: 8, max_features: 32,
                       scale_factor: 0.5, num_blocks: 3}}
  generator_params:
    block_expansion: 8
    max_features: 32
    num_down_blocks: 2
    num_bottleneck_blocks: 1
    estimate_occlusion_map: True
    dense_motion_params: {{block_expansion: 8, max_features: 32, num_blocks: 3,
                          scale_factor: 0.5}}
  discriminator_params: {{scales: [1], block_expansion: 8, max_features: 32, num_blocks: 3,
                         sn: True}}
train_params:
  num_epochs: 100
  num_repeats: 2
  epoch_milestones: [60, 90]
  lr_generator: 1.0e-3
  lr_discriminator: 2.0e-4
  lr_kp_detector: 1.0e-3
  batch_size: 4
  scales: [1, 0.5, 0.25]
  checkpoint_freq: 50
  transform_params: {{sigma_affine: 0.05, sigma_tps: 0.005, points_tps: 5}}
  loss_weights: {{generator_gan: {gan}, discriminator_gan: 1, feature_matching: [10, 10, 10],
                 perceptual: [10, 10, 10, 10, 10], equivariance_value: 10,
                 equivariance_jacobian: 10}}
"""


def shape_frames(seed: int, n: int = 10, size: int = 32) -> list[np.ndarray]:
    """A disc moving in a straight line over a flat background (colours from a small palette)."""
    rng = np.random.default_rng(seed)
    bg = np.array(PALETTE[seed % 3])
    fg = np.array(PALETTE[(seed + 1 + seed // 3) % 3]) // 2 + 100
    yy, xx = np.mgrid[:size, :size]
    centre, speed = rng.uniform(10, size - 10, 2) * size / 32, rng.uniform(-1.2, 1.2, 2)
    frames = []
    for t in range(n):
        img = np.empty((size, size, 3), np.uint8)
        img[:] = bg
        x, y = centre + speed * t * size / 32
        img[(xx - x) ** 2 + (yy - y) ** 2 < 30 * (size / 32) ** 2] = fg
        frames.append(img)
    return frames


def make_dataset(root: Path, train: int = 9, size: int = 32) -> Path:
    """ROOT/train and ROOT/test with videos in all three layouts."""
    for split, seeds in (("train", range(train)), ("test", (100, 101))):
        folder = root / split
        folder.mkdir(parents=True, exist_ok=True)
        for seed in seeds:
            frames = shape_frames(seed, size=size)
            if seed % 3 == 0:
                for i, f in enumerate(frames):
                    write_image(folder / f"v{seed}" / f"{i:03d}.png", f)
            elif seed % 3 == 1:
                write_clip(folder / f"v{seed}.mp4", frames=frames)
            else:
                write_image(folder / f"v{seed}.png", np.concatenate(frames, axis=1))
    return root


@pytest.fixture(autouse=True)
def one_thread():
    """One intra-op thread: faster for these tiny convolutions and bit-for-bit repeatable."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("shapes"))


def tiny_config(folder: Path, gan: int = 0) -> str:
    path = folder / f"tiny-gan{gan}.yaml"
    folder.mkdir(parents=True, exist_ok=True)
    path.write_text(TINY_CONFIG.format(gan=gan))
    return str(path)


def options(tmp_path: Path, data: Path, gan: int = 0, **kw) -> TrainOptions:
    base = dict(config=tiny_config(tmp_path, gan), data=str(data), out=str(tmp_path / "run"),
                workers=0, progress=False, tensorboard=False, image_every=0,
                save_every_minutes=None)
    return TrainOptions(**{**base, **kw})


def l1(checkpoint: Path, data: Path, out: Path) -> float:
    return reconstruct(ReconstructOptions(checkpoint=str(checkpoint), data=str(data),
                                          out=str(out), videos=False, face_metrics=False,
                                          progress=False)).l1


def test_training_lowers_the_reconstruction_l1(tmp_path: Path, data: Path) -> None:
    trainer = Trainer(options(tmp_path, data, max_steps=250, seed=0))
    trainer.save(tmp_path / "step0.pth.tar")
    result = trainer.fit()
    assert result.step == 250 and not result.interrupted
    before = l1(tmp_path / "step0.pth.tar", data, tmp_path / "rec0")
    after = l1(result.checkpoint, data, tmp_path / "rec1")
    print(f"reconstruction L1 on the test videos: step 0 {before:.4f}, step 250 {after:.4f}")
    assert after < 0.5 * before


def test_resume_continues_exactly(tmp_path: Path, data: Path) -> None:
    straight = Trainer(options(tmp_path / "a", data, gan=1, max_steps=6)).fit()
    first = Trainer(options(tmp_path / "b", data, gan=1, max_steps=3, image_every=1,
                            tensorboard=True)).fit()
    saved = read_original(first.checkpoint)
    assert saved["fomm_resume"] == {"epoch": 0, "batch": 3, "step": 3}
    resumed = Trainer(options(tmp_path / "b", data, gan=1, max_steps=6,
                              resume=str(first.checkpoint)))
    assert (resumed.progress.epoch, resumed.progress.batch, resumed.progress.step) == (0, 3, 3)
    for name, net in resumed.networks.items():
        for key, value in net.state_dict().items():
            assert torch.equal(value, saved[name][key]), f"{name}.{key}"
    result = resumed.fit()
    assert result.step == 6 and result.epoch == 1  # 4 steps per epoch
    a, b = read_original(straight.checkpoint), read_original(result.checkpoint)
    for name in ("generator", "kp_detector", "discriminator"):
        for key in a[name]:
            assert torch.equal(a[name][key], b[name][key]), f"{name}.{key}"
    assert a["optimizer_generator"]["state"][0]["step"] == 6
    run = first.run_dir
    assert (run / "config.yaml").is_file() and (run / "log.txt").is_file()
    assert (run / "train-vis" / "00000001.png").is_file() and any((run / "tb").iterdir())


def test_resume_needs_only_the_checkpoint(tmp_path: Path, data: Path) -> None:
    first = Trainer(options(tmp_path, data, max_steps=2, seed=4)).fit()
    Path(tiny_config(tmp_path)).unlink()  # the YAML text travels inside the checkpoint
    trainer = Trainer(TrainOptions(resume=str(first.checkpoint), max_steps=3, workers=0,
                                   progress=False, tensorboard=False))
    assert trainer.run_dir == first.run_dir and trainer.config.model.num_kp == 5
    assert trainer.options.data == str(data) and trainer.options.seed == 4
    assert trainer.fit().step == 3


def test_checkpoint_layout_is_the_originals(tmp_path: Path, data: Path) -> None:
    from fomm.models import build_models
    from fomm.train.evaluate import load_for_evaluation

    result = Trainer(options(tmp_path, data, gan=1, max_steps=1)).fit()
    ckpt = torch.load(result.checkpoint, map_location="cpu", weights_only=True)
    for key in ("generator", "kp_detector", "discriminator", "optimizer_generator",
                "optimizer_kp_detector", "optimizer_discriminator", "epoch"):
        assert key in ckpt
    assert ckpt["epoch"] == 0
    # what first-order-model's Logger.load_cpk does with it
    from fomm.config import load_config

    models = build_models(load_config(tiny_config(tmp_path, 1)).model, discriminator=True)
    for name in ("generator", "kp_detector", "discriminator"):
        getattr(models, name).load_state_dict(ckpt[name])
        opt = torch.optim.Adam(getattr(models, name).parameters(), betas=(0.5, 0.999))
        opt.load_state_dict(ckpt[f"optimizer_{name}"])
    loaded, cfg = load_for_evaluation(result.checkpoint)  # config embedded, no --config
    assert cfg.num_kp == 5 and cfg.image_size == 32


def _wait_for(path: Path, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if proc.poll() is not None:
            raise AssertionError(proc.communicate()[1][-3000:])
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError("no checkpoint appeared")
        time.sleep(0.2)


def _train_process(tmp_path: Path, data: Path, gan: int = 0) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "fomm", "train", "--config", tiny_config(tmp_path, gan),
           "--data", str(data), "--out", str(tmp_path / "run"), "--workers", "0", "--quiet",
           "--no-tensorboard", "--save-every-steps", "2", "--max-steps", "100000"]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def test_sigkill_loses_at_most_the_steps_since_the_last_checkpoint(tmp_path: Path,
                                                                    data: Path) -> None:
    proc = _train_process(tmp_path, data)
    checkpoint = tmp_path / "run" / "checkpoint.pth.tar"
    _wait_for(checkpoint, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    saved = read_original(checkpoint)  # atomic writes: never a torn file
    step = saved["fomm_resume"]["step"]
    assert step >= 2 and step % 2 == 0
    trainer = Trainer(options(tmp_path, data, resume=str(checkpoint), max_steps=step + 2))
    assert trainer.progress.step == step
    for key, value in trainer.generator.state_dict().items():
        assert torch.equal(value, saved["generator"][key])
    assert trainer.fit().step == step + 2


def test_sigint_finishes_the_step_and_saves(tmp_path: Path, data: Path) -> None:
    proc = _train_process(tmp_path, data, gan=1)
    checkpoint = tmp_path / "run" / "checkpoint.pth.tar"
    _wait_for(checkpoint, proc)
    before = read_original(checkpoint)["fomm_resume"]["step"]
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-2000:]
    assert "continue with: fomm train --resume" in err
    after = read_original(checkpoint)["fomm_resume"]
    assert after["step"] >= before


def test_the_official_fixture_checkpoint_resumes(tmp_path: Path, original_fixture) -> None:
    """A training checkpoint in first-order-model's own layout (optimizers, epoch 99) resumes."""
    data = tmp_path / "data"
    for seed in (0, 1):  # 128x128: the fixture's 5-block hourglasses need 32x32 after 0.25x
        folder = data / "train"
        folder.mkdir(parents=True, exist_ok=True)
        write_image(folder / f"v{seed}.png", np.concatenate(shape_frames(seed, 4, 128), 1))
    official = torch.load(original_fixture.checkpoint, map_location="cpu", weights_only=True)
    trainer = Trainer(TrainOptions(
        config=str(original_fixture.config), resume=str(original_fixture.checkpoint),
        data=str(data), out=str(tmp_path / "run"), frame_size=128, batch_size=2, num_repeats=1,
        workers=0, progress=False, tensorboard=False, image_every=0))
    assert trainer.progress.epoch == 99  # first-order-model restarts at range(epoch, ...)
    lr = official["optimizer_generator"]["param_groups"][0]["lr"]
    assert trainer.optimizers["generator"].param_groups[0]["lr"] == pytest.approx(lr)
    result = trainer.fit()  # the last epoch: one step
    assert result.epoch == 100
    saved = read_original(result.checkpoint)
    step = official["optimizer_generator"]["state"][0]["step"]
    assert saved["optimizer_generator"]["state"][0]["step"] == step + 1
    assert saved["optimizer_kp_detector"]["state"][0]["step"] == step + 1
    assert saved["epoch"] == 99
    assert (result.run_dir / "00000099-checkpoint.pth.tar").is_file()
    changed = [not torch.equal(saved["generator"][k], official["generator"][k])
               for k in official["generator"]]
    assert any(changed)


def test_pretrain_autoencoder_trains_the_generator_alone(tmp_path: Path, data: Path) -> None:
    trainer = Trainer(options(tmp_path, data, pretrain_autoencoder=2, ssim_weight=1.0,
                              gradient_weight=1.0))
    kp_before = {k: v.clone() for k, v in trainer.kp_detector.state_dict().items()}
    gen_before = {k: v.clone() for k, v in trainer.generator.state_dict().items()}
    from fomm.train.data import Pair

    batch = Pair(torch.rand(4, 3, 32, 32), torch.rand(4, 3, 32, 32), ["x"] * 4)
    for _ in range(2):
        losses = trainer.step(batch)
        assert set(losses) == {"perceptual", "ssim", "gradient"}
    params = dict(trainer.kp_detector.named_parameters())
    assert all(torch.equal(params[k], kp_before[k]) for k in params)
    assert any(not torch.equal(v, gen_before[k])
               for k, v in trainer.generator.state_dict().items())
    losses = trainer.step(batch)  # step 3: the full recipe
    assert {"equivariance_value", "equivariance_jacobian", "ssim"} <= set(losses)


def test_separation_term_is_added_when_asked(tmp_path: Path, data: Path) -> None:
    from fomm.train.data import Pair

    trainer = Trainer(options(tmp_path, data, separation_weight=2.0))
    losses = trainer.step(Pair(torch.rand(4, 3, 32, 32), torch.rand(4, 3, 32, 32), ["x"] * 4))
    assert 0 < losses["separation"] <= 2.0


def test_init_from_weights_trained_at_another_resolution(tmp_path: Path, data: Path) -> None:
    """Stage 1 at 32x32 with scale 0.5, stage 2 at 64x64 with scale 0.25: same learned weights,
    anti-alias kernels rebuilt for the new scale factors."""
    small = Trainer(options(tmp_path / "a", data, max_steps=2)).fit().checkpoint
    config = Path(tiny_config(tmp_path, 0)).read_text()
    config = config.replace("[32, 32, 3]", "[64, 64, 3]").replace("scale_factor: 0.5",
                                                                 "scale_factor: 0.25")
    (tmp_path / "big.yaml").write_text(config)
    big = Trainer(options(tmp_path / "b", data, config=str(tmp_path / "big.yaml"),
                          init=str(small)))
    saved = read_original(small)
    for name, net in (("kp_detector", big.kp_detector), ("generator", big.generator)):
        own = net.state_dict()
        for key, value in saved[name].items():
            if key.endswith("down.weight"):
                assert own[key].shape != value.shape  # rebuilt: 0.25 needs a wider kernel
            else:
                assert torch.equal(own[key], value), key
    assert any("anti-alias kernels rebuilt" in note for note in big.notes)
    from fomm.train.data import Pair

    losses = big.step(Pair(torch.rand(2, 3, 64, 64), torch.rand(2, 3, 64, 64), ["x"] * 2))
    assert all(np.isfinite(v) for v in losses.values())


def test_export_script_averages_checkpoints_into_another_resolution(tmp_path: Path,
                                                                    data: Path) -> None:
    """scripts/export_default.py: the mean of a run's checkpoints, as the 64x64 config."""
    first = Trainer(options(tmp_path / "a", data, max_steps=1)).fit().checkpoint
    kept = tmp_path / "step1.pth.tar"
    kept.write_bytes(first.read_bytes())
    second = Trainer(options(tmp_path / "a", data, max_steps=3,
                             resume=str(first))).fit().checkpoint
    config = Path(tiny_config(tmp_path, 0)).read_text()
    config = config.replace("[32, 32, 3]", "[64, 64, 3]").replace("scale_factor: 0.5",
                                                                 "scale_factor: 0.25")
    (tmp_path / "big.yaml").write_text(config)
    out = tmp_path / "mean.safetensors"
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "export_default.py"), str(out),
                           str(kept), str(second), "--config", str(tmp_path / "big.yaml"),
                           "--fp32"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    from fomm.checkpoints import load_checkpoint

    models, cfg, _ = load_checkpoint(out)  # config embedded: loads as the 64x64 model
    assert cfg.kp_detector.scale_factor == 0.25
    a, b = read_original(kept), read_original(second)
    for key, value in models.generator.state_dict().items():
        if value.is_floating_point() and not key.endswith("down.weight"):
            mean = (a["generator"][key].float() + b["generator"][key].float()) / 2
            assert torch.allclose(value, mean, atol=1e-6), key
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "export_default.py"), str(out),
                           str(tmp_path / "missing.pth.tar")], capture_output=True, text=True)
    assert proc.returncode != 0 and "error: " in proc.stderr


def _ddp_worker(rank: int, port: int, config: str, data: str, out: str) -> None:
    os.environ.update(RANK=str(rank), WORLD_SIZE="2", LOCAL_RANK=str(rank),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    import torch.distributed as dist

    trainer = Trainer(TrainOptions(config=config, data=data, out=out, max_steps=2, workers=0,
                                   progress=False, tensorboard=False, image_every=0,
                                   device="cpu"))
    trainer.fit()
    torch.save({name: {k: v.detach().clone() for k, v in net.named_parameters()}
                for name, net in trainer.networks.items()}, f"{out}/rank{rank}.pt")
    dist.destroy_process_group()


def test_ddp_two_processes_on_gloo_keep_identical_replicas(tmp_path: Path, data: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = tmp_path / "run"
    out.mkdir()
    mp.spawn(_ddp_worker, args=(port, tiny_config(tmp_path, gan=1), str(data), str(out)),
             nprocs=2)
    a, b = torch.load(out / "rank0.pt"), torch.load(out / "rank1.pt")
    for name in a:
        for key in a[name]:
            assert torch.equal(a[name][key], b[name][key]), f"{name}.{key}"
    saved = read_original(out / "checkpoint.pth.tar")
    assert saved["fomm_resume"]["step"] == 2
    assert torch.equal(saved["generator"]["final.weight"], a["generator"]["final.weight"])


def test_cli_train_reports_user_errors(tmp_path: Path, capsys) -> None:
    from fomm.cli.main import main

    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--config", tiny_config(tmp_path), "--data", str(tmp_path / "nope")])
    assert exit_info.value.code == 2
    assert "nope: dataset folder not found" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        main(["train"])
    assert exit_info.value.code == 2
    assert "--config is required" in capsys.readouterr().err
