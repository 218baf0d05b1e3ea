"""Typed configuration: the official YAML schemas (original and PaddleGAN) ⇄ frozen dataclasses.

An official config file is read once, ``common_params`` is merged into each network's section, and
every key is checked: an unknown or missing key raises :class:`~fomm.errors.ConfigError` naming the
key and the file.  Networks take the same names as keyword arguments.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field, fields
from importlib import resources
from pathlib import Path
from typing import Any, Literal, TypeVar, get_args

import yaml

from fomm.errors import ConfigError

Flavour = Literal["original", "paddle"]
Architecture = Literal["fomm", "mobile"]


@dataclass(frozen=True)
class KPDetectorParams:
    """Keypoint detector hyper-parameters (``kp_detector_params`` + ``common_params``)."""

    num_kp: int = 10
    num_channels: int = 3
    estimate_jacobian: bool = True
    temperature: float = 0.1
    block_expansion: int = 32
    max_features: int = 1024
    num_blocks: int = 5
    scale_factor: float = 0.25
    single_jacobian_map: bool = False
    pad: int = 0


@dataclass(frozen=True)
class DenseMotionParams:
    """Dense motion network hyper-parameters (``generator_params.dense_motion_params``)."""

    block_expansion: int = 64
    max_features: int = 1024
    num_blocks: int = 5
    scale_factor: float = 0.25


@dataclass(frozen=True)
class GeneratorParams:
    """Occlusion-aware generator hyper-parameters (``generator_params`` + ``common_params``)."""

    num_kp: int = 10
    num_channels: int = 3
    estimate_jacobian: bool = True
    block_expansion: int = 64
    max_features: int = 512
    num_down_blocks: int = 2
    num_bottleneck_blocks: int = 6
    estimate_occlusion_map: bool = True
    dense_motion_params: DenseMotionParams = field(default_factory=DenseMotionParams)
    # fomm extension (not in the paper): blend the decoder's output with the source warped at
    # full resolution through a predicted mask, for sharp results from small models
    blend_output: bool = False


@dataclass(frozen=True)
class DiscriminatorParams:
    """Multi-scale discriminator hyper-parameters (``discriminator_params`` + ``common_params``)."""

    num_kp: int = 10
    num_channels: int = 3
    estimate_jacobian: bool = True
    scales: tuple[float, ...] = (1,)
    block_expansion: int = 32
    max_features: int = 512
    num_blocks: int = 4
    sn: bool = False
    use_kp: bool = False


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to build the networks and run them the way their weights expect.

    ``architecture`` is ``"fomm"`` (the paper's blocks) or ``"mobile"`` (PaddleGAN's depthwise
    variant).  ``flavour`` picks the numerics: ``"original"`` (``grid_sample`` with
    ``align_corners=False``, as the original code runs on torch >= 1.3) or ``"paddle"``
    (``align_corners=True`` plus PaddleGAN's inference-time border handling).
    """

    kp_detector: KPDetectorParams = field(default_factory=KPDetectorParams)
    generator: GeneratorParams = field(default_factory=GeneratorParams)
    discriminator: DiscriminatorParams = field(default_factory=DiscriminatorParams)
    image_size: int = 256
    architecture: Architecture = "fomm"
    flavour: Flavour = "original"

    @property
    def num_kp(self) -> int:
        return self.kp_detector.num_kp

    def replace(self, **changes: Any) -> ModelConfig:
        """A copy with some top-level fields changed (e.g. ``flavour="paddle"``)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "<dict>") -> ModelConfig:
        """Inverse of :meth:`to_dict` (used for configs embedded in our safetensors files)."""
        data = dict(data)
        gen = dict(_expect_mapping(data.get("generator", {}), "generator", source))
        dm = _build(DenseMotionParams, gen.pop("dense_motion_params", {}), "dense_motion_params",
                    source)
        return cls(
            kp_detector=_build(KPDetectorParams, data.get("kp_detector", {}), "kp_detector",
                               source),
            generator=_build(GeneratorParams, {**gen, "dense_motion_params": dm}, "generator",
                             source),
            discriminator=_build(DiscriminatorParams, data.get("discriminator", {}),
                                 "discriminator", source),
            image_size=int(data.get("image_size", 256)),
            architecture=_choice(data.get("architecture", "fomm"), ("fomm", "mobile"),
                                 "architecture", source),
            flavour=_choice(data.get("flavour", "original"), ("original", "paddle"), "flavour",
                            source),
        )


@dataclass(frozen=True)
class AugmentationParams:
    """``dataset_params.augmentation_params``."""

    horizontal_flip: bool = False
    time_flip: bool = False
    brightness: float = 0.0
    contrast: float = 0.0
    saturation: float = 0.0
    hue: float = 0.0
    crop_size: tuple[int, int] | None = None
    resize_ratio: tuple[float, float] | None = None
    # fomm's pair_motion_param (not in the original): the driving frame alone is moved by a
    # random similarity, so that stabilised face crops still teach the keypoints to track
    pair_rotation: float = 0.0  # degrees, U[-r, r]
    pair_scale: float = 0.0  # zoom factor U[1 - s, 1 + s]
    pair_translation: float = 0.0  # fraction of the side, U[-t, t] on each axis
    pair_probability: float = 0.0  # share of the pairs moved


@dataclass(frozen=True)
class DatasetParams:
    """``dataset_params``: where the frames are and how pairs are sampled."""

    root_dir: str = "data"
    frame_shape: tuple[int, int, int] = (256, 256, 3)
    id_sampling: bool = False
    pairs_list: str | None = None
    augmentation: AugmentationParams = field(default_factory=AugmentationParams)


@dataclass(frozen=True)
class TransformParams:
    """Random affine + thin-plate-spline warp for the equivariance losses."""

    sigma_affine: float = 0.05
    sigma_tps: float = 0.005
    points_tps: int = 5


@dataclass(frozen=True)
class LossWeights:
    generator_gan: float = 0.0
    discriminator_gan: float = 1.0
    feature_matching: tuple[float, ...] = (10, 10, 10, 10)
    perceptual: tuple[float, ...] = (10, 10, 10, 10, 10)
    equivariance_value: float = 10.0
    equivariance_jacobian: float = 10.0


@dataclass(frozen=True)
class TrainParams:
    """``train_params``: schedule, learning rates and loss weights."""

    num_epochs: int = 100
    num_repeats: int = 1
    epoch_milestones: tuple[int, ...] = ()
    lr_generator: float = 2.0e-4
    lr_discriminator: float = 2.0e-4
    lr_kp_detector: float = 2.0e-4
    batch_size: int = 8
    scales: tuple[float, ...] = (1, 0.5, 0.25, 0.125)
    checkpoint_freq: int = 50
    transform_params: TransformParams | None = field(default_factory=TransformParams)
    loss_weights: LossWeights = field(default_factory=LossWeights)


@dataclass(frozen=True)
class NormalizationParams:
    adapt_movement_scale: bool = False
    use_relative_movement: bool = True
    use_relative_jacobian: bool = True


@dataclass(frozen=True)
class FommConfig:
    """A whole official config file: model, dataset, training and evaluation sections."""

    model: ModelConfig = field(default_factory=ModelConfig)
    dataset: DatasetParams = field(default_factory=DatasetParams)
    train: TrainParams = field(default_factory=TrainParams)
    normalization: NormalizationParams = field(default_factory=NormalizationParams)
    num_videos: int = 1000
    source: str = "<default>"


# --------------------------------------------------------------------------------------------
# parsing helpers

T = TypeVar("T")


def _expect_mapping(value: Any, key: str, source: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(f"{source}: '{key}' must be a mapping, got {type(value).__name__}")
    return value


def _choice(value: Any, options: tuple[str, ...], key: str, source: str) -> Any:
    if value not in options:
        raise ConfigError(f"{source}: '{key}' must be one of {', '.join(options)}, got {value!r}")
    return value


def _coerce(value: Any, default: Any, key: str, source: str) -> Any:
    """Coerce a YAML value to the type of the dataclass default (lists → tuples, ints → floats)."""
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ConfigError(f"{source}: '{key}' must be true or false, got {value!r}")
        return value
    if isinstance(default, int) and not isinstance(default, bool):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or int(value) != value:
            raise ConfigError(f"{source}: '{key}' must be an integer, got {value!r}")
        return int(value)
    if isinstance(default, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{source}: '{key}' must be a number, got {value!r}")
        return float(value)
    if isinstance(default, tuple) or (default is None and isinstance(value, list)):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{source}: '{key}' must be a list, got {value!r}")
        return tuple(value)
    return value


def _build(cls: type[T], data: Any, section: str, source: str,
           ignore: tuple[str, ...] = ()) -> T:
    """Build a dataclass from a mapping, rejecting unknown keys with the key and file named."""
    data = _expect_mapping(data, section, source)
    names = {f.name: f for f in fields(cls)}  # type: ignore[arg-type]
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        if key in ignore:
            continue
        if key not in names:
            raise ConfigError(f"{source}: unknown key '{section}.{key}'")
        f = names[key]
        default = f.default if f.default is not dataclasses.MISSING else None
        if f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
            default = f.default_factory()  # type: ignore[misc]
        kwargs[key] = value if dataclasses.is_dataclass(value) else _coerce(
            value, default, f"{section}.{key}", source)
    return cls(**kwargs)


def _require(data: dict[str, Any], key: str, section: str, source: str) -> Any:
    if key not in data:
        raise ConfigError(f"{source}: missing key '{section}.{key}'")
    return data[key]


def _augmentation(data: dict[str, Any], source: str) -> AugmentationParams:
    flip = _expect_mapping(data.get("flip_param"), "flip_param", source)
    jitter = _expect_mapping(data.get("jitter_param"), "jitter_param", source)
    crop = _expect_mapping(data.get("crop_param"), "crop_param", source)
    resize = _expect_mapping(data.get("resize_param"), "resize_param", source)
    motion = _expect_mapping(data.get("pair_motion_param"), "pair_motion_param", source)
    known = {"flip_param", "jitter_param", "crop_param", "resize_param", "pair_motion_param"}
    for key in data:
        if key not in known:
            raise ConfigError(f"{source}: unknown key 'augmentation_params.{key}'")
    for key in motion:
        if key not in ("rotation", "scale", "translation", "probability"):
            raise ConfigError(f"{source}: unknown key 'augmentation_params.pair_motion_param."
                              f"{key}' (rotation, scale, translation, probability)")
    probability = float(motion.get("probability", 1.0 if motion else 0.0))
    if not 0.0 <= probability <= 1.0:
        raise ConfigError(f"{source}: augmentation_params.pair_motion_param.probability must be "
                          f"in [0, 1], got {probability}")
    return AugmentationParams(
        horizontal_flip=bool(flip.get("horizontal_flip", False)),
        time_flip=bool(flip.get("time_flip", False)),
        brightness=float(jitter.get("brightness", 0.0)),
        contrast=float(jitter.get("contrast", 0.0)),
        saturation=float(jitter.get("saturation", 0.0)),
        hue=float(jitter.get("hue", 0.0)),
        crop_size=tuple(crop["size"]) if "size" in crop else None,
        resize_ratio=tuple(resize["ratio"]) if "ratio" in resize else None,
        pair_rotation=float(motion.get("rotation", 0.0)),
        pair_scale=float(motion.get("scale", 0.0)),
        pair_translation=float(motion.get("translation", 0.0)),
        pair_probability=probability,
    )


def _model_from_sections(common: dict[str, Any], kp: dict[str, Any], gen: dict[str, Any],
                         disc: dict[str, Any], extra: dict[str, Any], source: str,
                         default_flavour: Flavour) -> ModelConfig:
    common = _expect_mapping(common, "common_params", source)
    for key in common:
        if key not in {"num_kp", "num_channels", "estimate_jacobian"}:
            raise ConfigError(f"{source}: unknown key 'common_params.{key}'")
    kp = dict(_expect_mapping(kp, "kp_detector_params", source))
    gen = dict(_expect_mapping(gen, "generator_params", source))
    mobile = bool(kp.pop("mobile_net", False)) | bool(gen.pop("mobile_net", False))
    for key in ("temperature", "block_expansion", "max_features", "num_blocks", "scale_factor"):
        _require(kp, key, "kp_detector_params", source)
    for key in ("block_expansion", "max_features", "num_down_blocks", "num_bottleneck_blocks"):
        _require(gen, key, "generator_params", source)
    dm = _build(DenseMotionParams, _require(gen, "dense_motion_params", "generator_params", source),
                "generator_params.dense_motion_params", source)
    gen["dense_motion_params"] = dm
    extra = _expect_mapping(extra, "fomm_params", source)
    for key in extra:
        if key not in {"image_size", "architecture", "flavour"}:
            raise ConfigError(f"{source}: unknown key 'fomm_params.{key}'")
    return ModelConfig(
        kp_detector=_build(KPDetectorParams, {**common, **kp}, "kp_detector_params", source),
        generator=_build(GeneratorParams, {**common, **gen}, "generator_params", source),
        discriminator=_build(DiscriminatorParams, {**common, **(disc or {})},
                             "discriminator_params", source),
        image_size=int(extra.get("image_size", 256)),
        architecture=_choice(extra.get("architecture", "mobile" if mobile else "fomm"),
                             ("fomm", "mobile"), "fomm_params.architecture", source),
        flavour=_choice(extra.get("flavour", default_flavour), ("original", "paddle"),
                        "fomm_params.flavour", source),
    )


def _parse_original(raw: dict[str, Any], source: str) -> FommConfig:
    known = {"dataset_params", "model_params", "train_params", "reconstruction_params",
             "animate_params", "visualizer_params", "fomm_params"}
    for key in raw:
        if key not in known:
            raise ConfigError(f"{source}: unknown top-level key '{key}'")
    mp = _expect_mapping(_require(raw, "model_params", "", source), "model_params", source)
    for key in mp:
        if key not in {"common_params", "kp_detector_params", "generator_params",
                       "discriminator_params"}:
            raise ConfigError(f"{source}: unknown key 'model_params.{key}'")
    model = _model_from_sections(
        _require(mp, "common_params", "model_params", source),
        _require(mp, "kp_detector_params", "model_params", source),
        _require(mp, "generator_params", "model_params", source),
        mp.get("discriminator_params", {}), raw.get("fomm_params", {}), source, "original")
    dp = dict(_expect_mapping(raw.get("dataset_params"), "dataset_params", source))
    aug = _augmentation(_expect_mapping(dp.pop("augmentation_params", {}),
                                        "augmentation_params", source), source)
    dataset = _build(DatasetParams, {**dp, "augmentation": aug}, "dataset_params", source)
    tp = dict(_expect_mapping(raw.get("train_params"), "train_params", source))
    tp = _train_sections(tp, source)
    train = _build(TrainParams, tp, "train_params", source)
    ap = _expect_mapping(raw.get("animate_params"), "animate_params", source)
    norm = _build(NormalizationParams, ap.get("normalization_params", {}),
                  "animate_params.normalization_params", source)
    rp = _expect_mapping(raw.get("reconstruction_params"), "reconstruction_params", source)
    return FommConfig(model=model, dataset=dataset, train=train, normalization=norm,
                      num_videos=int(rp.get("num_videos", 1000)), source=source)


def _train_sections(tp: dict[str, Any], source: str) -> dict[str, Any]:
    if tp.get("transform_params") is not None:
        tp["transform_params"] = _build(TransformParams, tp["transform_params"],
                                        "train_params.transform_params", source)
    if "loss_weights" in tp:
        tp["loss_weights"] = _build(LossWeights, tp["loss_weights"], "train_params.loss_weights",
                                    source)
    return tp


def _parse_paddle(raw: dict[str, Any], source: str) -> FommConfig:
    model_raw = _expect_mapping(raw["model"], "model", source)
    gen = _expect_mapping(_require(model_raw, "generator", "model", source), "model.generator",
                          source)
    disc = _expect_mapping(model_raw.get("discriminator", {}), "model.discriminator", source)
    model = _model_from_sections(
        _require(model_raw, "common_params", "model", source),
        _require(gen, "kp_detector_cfg", "model.generator", source),
        _require(gen, "generator_cfg", "model.generator", source),
        disc.get("discriminator_cfg", {}), raw.get("fomm_params", {}), source, "paddle")
    tp = dict(_expect_mapping(model_raw.get("train_params"), "model.train_params", source))
    lr = _expect_mapping(raw.get("lr_scheduler"), "lr_scheduler", source)
    for key in ("lr_generator", "lr_discriminator", "lr_kp_detector", "epoch_milestones"):
        if key in lr:
            tp[key] = lr[key]
    ds = _expect_mapping(_expect_mapping(raw.get("dataset"), "dataset", source).get("train"),
                         "dataset.train", source)
    if "batch_size" in ds:
        tp["batch_size"] = ds["batch_size"]
    if "num_repeats" in ds:
        tp["num_repeats"] = ds["num_repeats"]
    if "epochs" in raw:
        tp["num_epochs"] = raw["epochs"]
    train = _build(TrainParams, _train_sections(tp, source), "train_params", source)
    jitter = next((t for t in ds.get("transforms", []) if t.get("name") == "PairedColorJitter"), {})
    aug = AugmentationParams(
        horizontal_flip=any(t.get("name") == "PairedRandomHorizontalFlip"
                            for t in ds.get("transforms", [])),
        time_flip=bool(ds.get("time_flip", False)),
        brightness=float(jitter.get("brightness", 0)), contrast=float(jitter.get("contrast", 0)),
        saturation=float(jitter.get("saturation", 0)), hue=float(jitter.get("hue", 0)))
    pairs = ds.get("pairs_list")
    dataset = DatasetParams(root_dir=str(ds.get("dataroot", "data")),
                            frame_shape=tuple(ds.get("frame_shape", (256, 256, 3))),
                            id_sampling=bool(ds.get("id_sampling", False)),
                            pairs_list=None if pairs in (None, "None") else str(pairs),
                            augmentation=aug)
    return FommConfig(model=model, dataset=dataset, train=train, source=source)


# --------------------------------------------------------------------------------------------
# public API


def parse_config(raw: Any, source: str = "<config>") -> FommConfig:
    """Parse an already-loaded YAML mapping in the original or the PaddleGAN schema."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: not a YAML mapping")
    if "model_params" in raw:
        return _parse_original(raw, source)
    if "model" in raw:
        return _parse_paddle(raw, source)
    raise ConfigError(f"{source}: neither 'model_params' (original schema) nor 'model' "
                      "(PaddleGAN schema) found")


def load_config(path_or_name: str | Path) -> FommConfig:
    """Load a config from a YAML path or a packaged preset name (see :func:`preset_names`)."""
    text, source = _read_config_text(path_or_name)
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: not valid YAML ({str(exc).splitlines()[0]})") from None
    return parse_config(raw, source)


def preset_names() -> list[str]:
    """Names of the packaged presets, e.g. ``vox-256``."""
    folder = resources.files("fomm") / "configs"
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".yaml"))


def _read_config_text(path_or_name: str | Path) -> tuple[str, str]:
    path = Path(path_or_name)
    if path.suffix in {".yaml", ".yml"} or path.exists():
        if not path.is_file():
            raise ConfigError(f"{path}: config file not found")
        return path.read_text(encoding="utf-8"), str(path)
    name = str(path_or_name)
    if name in preset_names():
        return (resources.files("fomm") / "configs" / f"{name}.yaml").read_text("utf-8"), name
    raise ConfigError(f"unknown config '{name}'; presets: {', '.join(preset_names())}")


Precision = Literal["auto", "fp32", "fp16", "bf16"]  # auto: fomm.runtime.precision
Backend = Literal["auto", "torch", "onnx", "openvino"]  # auto: fomm.runtime.backends
CropDriving = Literal["auto", "on", "off"]
CROP_DRIVING_CHOICES: tuple[str, ...] = ("auto", "on", "off")
# the expression layer's regions (fomm.expression.REGIONS): all = FOMM motion + expression,
# pose = head motion only, expression / eyes / lips = the photo's head with the driver's expression
Region = Literal["all", "pose", "expression", "eyes", "lips"]
ANIMATION_REGIONS: tuple[str, ...] = get_args(Region)
EXPRESSION_SCALE_RANGE = (0.0, 2.0)
EXPRESSION_OFFSET_RANGE = (-1.0, 1.0)
# AnimateOptions' expression numbers → their (lowest, highest)
EXPRESSION_RANGES = {"expression_scale": EXPRESSION_SCALE_RANGE,
                     **dict.fromkeys(("eye_offset", "mouth_offset", "smile_offset"),
                                     EXPRESSION_OFFSET_RANGE)}
# AnimateOptions field → what the command line calls it, for one-line errors
EXPRESSION_FLAGS = {"expression_scale": "--expression-scale", "eye_offset": "--eye-openness",
                    "mouth_offset": "--mouth-openness", "smile_offset": "--smile"}


@dataclass(frozen=True)
class AnimateOptions:
    """How ``fomm animate`` turns a source image and a driving video into a result.

    Motion: ``relative`` (keypoint displacement since the reference frame, the default) or
    absolute; ``adapt_scale`` scales the motion by the keypoints' convex-hull areas;
    ``best_frame`` picks the reference driving frame (``find_best_frame`` picks it by landmarks).
    Faces: ``crop`` finds the face in the source, animates a square crop and pastes it back;
    ``face_index`` picks one face (0 = largest) or ``multi_person`` animates all of them;
    ``crop_driving`` frames the face in the driving video: ``"auto"`` (default) whenever the
    source face is cropped, ``"on"`` always (also with ``crop=False``), ``"off"`` never (the
    whole driving frame is the model's input).
    Output: ``detail`` renders the face at the photo's resolution (the output's with
    ``crop=False``), moving the photo's own pixels by the dense motion (:mod:`fomm.render.detail`);
    off, the model-size result is scaled up.
    Expression (:mod:`fomm.expression`, on face crops): ``expression`` renders the driver's eye,
    brow and mouth shapes on the result; ``animation_region`` picks what moves (``"all"``: head
    and expression, ``"pose"``: the head only, ``"expression"`` / ``"eyes"`` / ``"lips"``: that
    part of the face on the still photo, without the motion networks); ``expression_scale``
    (0..2) is the expression's strength; ``eye_offset`` / ``mouth_offset`` / ``smile_offset``
    (-1..1) open the eyes and mouth and raise the mouth corners more (positive) or less.
    ``expression=False`` gives the frames of the motion model alone.
    """

    relative: bool = True
    adapt_scale: bool = False
    best_frame: int | None = None
    find_best_frame: bool = False
    batch_size: int = 8
    device: str = "auto"
    precision: Precision = "auto"
    backend: Backend | None = None  # None: $FOMM_BACKEND, else auto
    audio: bool = True
    crop: bool = True
    crop_driving: CropDriving = "auto"
    face_index: int | None = None
    multi_person: bool = False
    crop_margin: float | None = None
    result_size: int | None = None
    detail: bool = True
    max_frames: int | None = None
    fps: float | None = None
    progress: bool = True
    flavour: Flavour | None = None
    expression: bool = True
    animation_region: Region = "all"
    expression_scale: float = 1.0
    eye_offset: float = 0.0
    mouth_offset: float = 0.0
    smile_offset: float = 0.0

    def __post_init__(self) -> None:
        if self.crop_driving not in CROP_DRIVING_CHOICES:
            raise ConfigError(f"crop_driving must be one of {', '.join(CROP_DRIVING_CHOICES)}, "
                              f"got {self.crop_driving!r}")
        check_expression(self.animation_region, self.expression_scale, self.eye_offset,
                         self.mouth_offset, self.smile_offset)

    @property
    def frames_driving(self) -> bool:
        """Whether the driving video's face is framed (``"on"``, or ``"auto"`` with a crop)."""
        return self.crop_driving == "on" or (self.crop_driving == "auto" and self.crop)


def check_expression(region: str, scale: float, eye: float = 0.0, mouth: float = 0.0,
                     smile: float = 0.0) -> None:
    """A :class:`ConfigError` naming the flag when an expression setting is out of range."""
    if region not in ANIMATION_REGIONS:
        raise ConfigError(f"--animation-region must be one of {', '.join(ANIMATION_REGIONS)}, "
                          f"got {region!r}")
    values = {"expression_scale": scale, "eye_offset": eye, "mouth_offset": mouth,
              "smile_offset": smile}
    for name, value in values.items():
        low, high = EXPRESSION_RANGES[name]
        if isinstance(value, bool) or not isinstance(value, (int, float)) \
                or not low <= value <= high:  # NaN fails too
            raise ConfigError(f"{EXPRESSION_FLAGS[name]} must be between {low:g} and {high:g}, "
                              f"got {value!r}")
