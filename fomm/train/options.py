"""What ``fomm train`` is asked to do: TrainOptions, the config with its overrides, the run folder.

Config values stay in the official YAML; the options only override a few of them (batch size,
epochs, repeats, frame size) and add what the YAML cannot say (paths, device, our extras).
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml

from fomm.config import FommConfig, ModelConfig, load_config, parse_config, preset_names
from fomm.errors import ConfigError

Precision = Literal["fp32", "bf16"]


@dataclass(frozen=True)
class TrainOptions:
    """Everything ``fomm train`` takes; config values stay in the YAML, overrides are here.

    ``batch_size`` is the global batch, split over torchrun processes.  ``max_steps`` counts all
    steps of the run, resumed ones included.  ``pretrain_autoencoder``, ``ssim_weight`` and
    ``gradient_weight`` are our additions (off by default): the first N steps train the generator
    alone to rebuild the driving frame through identity motion, extra SSIM / image-gradient
    L1 terms sharpen small models early, and a keypoint separation term
    (:func:`fomm.train.losses.keypoint_separation`) keeps the keypoints from gathering in one
    spot; ``region_weight`` weighs the eyes and mouth and ``expressive_pairs`` draws pairs
    whose expressions differ, and ``landmark_weight`` ties keypoints to the eyes, mouth corners
    and lips (:mod:`fomm.train.regions`).  Options
    left at their default are taken from the run being resumed.
    """

    config: str | None = None  # preset name or YAML; default: the resumed checkpoint's
    data: str | None = None  # dataset root (with train/, test/); default: the config's root_dir
    out: str | None = None  # run folder; default: the resumed run's, else runs/<config>-<time>
    resume: str | None = None  # a .pth.tar of ours or of first-order-model
    init: str | None = None  # start from these weights with fresh optimizers (fine-tuning)
    vgg_weights: str | None = None  # torchvision vgg19 state dict; without: pixel L1 pyramid
    device: str = "auto"
    precision: Precision = "fp32"
    batch_size: int | None = None
    num_epochs: int | None = None
    num_repeats: int | None = None
    frame_size: int | None = None
    max_steps: int | None = None
    workers: int = 2
    cache_mb: float = 256  # decoded videos kept in memory per DataLoader worker
    seed: int = 0
    log_every: int = 10
    image_every: int = 250
    save_every_steps: int | None = None
    save_every_minutes: float | None = 10.0
    pretrain_autoencoder: int = 0
    ssim_weight: float = 0.0
    gradient_weight: float = 0.0
    separation_weight: float = 0.0
    separation_sigma: float = 0.15
    region_weight: float = 0.0
    expressive_pairs: float = 0.0
    landmark_weight: float = 0.0
    eye_guides: str = "centres"  # what the eye guidance points follow: "centres" or "lids"
    # keypoint tied to each landmark-guidance point; chosen at the start of the run when None
    landmark_keypoints: tuple[int, ...] | None = None
    tensorboard: bool = True
    progress: bool = True


# not inherited from a resumed run: where and how this process runs (the config comes from the
# YAML text embedded in the checkpoint, not from a path that may have changed)
LOCAL_OPTIONS = {"config", "resume", "out", "init", "device", "workers", "cache_mb", "max_steps",
                 "tensorboard", "progress"}


@dataclass
class TrainResult:
    run_dir: Path
    checkpoint: Path | None  # the latest checkpoint written (rank 0)
    step: int
    epoch: int
    interrupted: bool
    rank: int = 0  # of this process (torchrun); only rank 0 saved and logged


def inherit_options(options: TrainOptions, resumed: dict[str, Any] | None) -> TrainOptions:
    """Options left at their default take the resumed run's value."""
    saved = (resumed or {}).get("fomm_options")
    if not isinstance(saved, dict):
        return options
    changes = {}
    for f in dataclasses.fields(TrainOptions):
        if f.name in LOCAL_OPTIONS or f.name not in saved:
            continue
        if getattr(options, f.name) == f.default and saved[f.name] != f.default:
            changes[f.name] = saved[f.name]
    return dataclasses.replace(options, **changes)


def load_train_config(options: TrainOptions, config: FommConfig | None,
                      resumed: dict[str, Any] | None) -> tuple[str, FommConfig]:
    """The config (text kept for the run folder) with the command line's overrides applied."""
    if config is not None:
        text = f"# built in code from {config.source}\n"
    elif options.config is not None:
        path = Path(options.config)
        if path.is_file():
            text = path.read_text(encoding="utf-8")
        else:
            text = (resources.files("fomm") / "configs" / f"{options.config}.yaml").read_text(
                "utf-8") if options.config in preset_names() else ""
        config = load_config(options.config)
    elif resumed is not None and isinstance(resumed.get("fomm_config"), str):
        text = resumed["fomm_config"]
        config = parse_config(yaml.safe_load(text), f"{options.resume} (embedded config)")
    else:
        raise ConfigError("--config is required (a preset name or an official YAML file)")
    ds, tp, model = config.dataset, config.train, config.model
    if options.frame_size:
        s = options.frame_size
        ds = dataclasses.replace(ds, frame_shape=(s, s, ds.frame_shape[2]))
    model = model.replace(image_size=int(ds.frame_shape[0]))  # the size it is trained at
    if options.batch_size:
        tp = dataclasses.replace(tp, batch_size=options.batch_size)
    if options.num_epochs is not None:
        tp = dataclasses.replace(tp, num_epochs=options.num_epochs)
    if options.num_repeats:
        tp = dataclasses.replace(tp, num_repeats=options.num_repeats)
    _check_frame_size(int(ds.frame_shape[0]), int(ds.frame_shape[1]), model, config.source)
    if tp.checkpoint_freq < 1:
        raise ConfigError(f"{config.source}: train_params.checkpoint_freq must be at least 1")
    return text, dataclasses.replace(config, dataset=ds, train=tp, model=model)


def run_folder(options: TrainOptions, config: FommConfig) -> Path:
    """``--out``, else the folder of the run being resumed, else ``runs/<config>-<time>``."""
    if options.out:
        return Path(options.out)
    if options.resume and Path(options.resume).parent.joinpath("config.yaml").exists():
        return Path(options.resume).parent
    stem = Path(str(options.config or config.source)).stem or "run"
    return Path("runs") / f"{stem}-{time.strftime('%Y%m%d-%H%M%S')}"


def _check_frame_size(height: int, width: int, model: ModelConfig, source: str) -> None:
    """The hourglasses concatenate skips, so each downscaled side must halve exactly."""
    nets = [("kp_detector", model.kp_detector.scale_factor, model.kp_detector.num_blocks),
            ("dense_motion", model.generator.dense_motion_params.scale_factor,
             model.generator.dense_motion_params.num_blocks),
            ("generator", 1.0, model.generator.num_down_blocks)]
    for name, scale, blocks in nets:
        for side in (height, width):
            inner = side * scale
            if inner != int(inner) or int(inner) % 2**blocks:
                need = int(2**blocks / scale)
                raise ConfigError(f"{source}: frames of {width}x{height} do not fit the {name} "
                                  f"({blocks} blocks at scale {scale}): use a multiple of {need}")
