"""Parity fixtures made at test time, in the layouts of ../shared/fixtures (see their READMEs).

``fomm-parity``: a seeded random-weight model saved as the original first-order-model saves a
training checkpoint (``checkpoint.pth.tar``: generator, kp_detector, spectrally normalised
discriminator, three Adam states with ``initial_lr``, epoch 99) with an official ``config.yaml``.
``paddlegan-parity``: one saved as PaddleGAN saves its predictor weights (``weights.pdparams``)
with a PaddleGAN ``config.yaml``. Both models are the shared fixtures' shrunk vox-256 (5-block
hourglasses), built by the reference code from PyPI (deep-animator, ppgan: see
:mod:`parity.packages`), and :meth:`Generated.expected` holds what that code computes from them
on the repo's own input frames (tests/data/parity), under the keys of the shared fixtures'
``expected.npz``. The original's discriminator is not in deep-animator: it is built here from
torch layers in the official parameter layout, and its expected outputs come from PaddleGAN's
port of it (ppgan's ``discriminator_firstorder``), given the same weights.

tests/conftest.py writes them once a session (``original_fixture``, ``paddle_fixture``); the
tests that need a checkpoint in an official layout use them, and the fixture parity tests run on
them as well as on ../shared/fixtures (on them alone where that folder is absent).
"""

from __future__ import annotations

import bisect
import importlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import yaml
from parity_data import MODES, fomm_inputs, paddle_inputs
from scipy.spatial import ConvexHull
from torch import nn

from .packages import (
    load_ppgan,
    model_params,
    one_thread,
    original_networks,
    paddle_networks,
    require,
    write_paddle_config,
)

EPOCH = 99  # the saved epoch: the last but one of num_epochs 100, as the shared fixture
ADAM_STEPS = 7500  # Adam steps the optimizer states claim (num_repeats 75 x 100 epochs)
FIXTURE_SIZE = 128  # :func:`parity.packages.model_params` at 128: 5 hourglass blocks, as shared
DISCRIMINATOR = {"scales": [1], "block_expansion": 4, "max_features": 16, "num_blocks": 4,
                 "sn": True}
GENERATOR_MODES = ("rel_adapt", "abs")  # PaddleGAN's fixture: "rel" differs only in the scale


@dataclass
class Generated:
    """A fixture folder made at test time and the reference networks it was saved from.

    ``checkpoint`` and ``config`` are the files; ``networks`` the reference code's modules
    (torch for the original, Paddle layers for PaddleGAN), in ``eval()``.
    """

    kind: str  # "fomm-parity" or "paddlegan-parity"
    checkpoint: Path
    config: Path
    networks: tuple
    _expected: dict[str, np.ndarray] | None = field(default=None, repr=False)

    def expected(self) -> dict[str, np.ndarray]:
        """The reference code's outputs on the repo's inputs, keyed as the shared fixture's
        ``expected.npz`` (computed once, from ``networks``, not from the saved files)."""
        if self._expected is None:
            make = original_expected if self.kind == "fomm-parity" else paddle_expected
            self._expected = make(self)
        return self._expected


# ---------------------------------------------------------------------------------------------
# the original first-order-model: official training checkpoint and config


def original_config() -> dict:
    """The official ``config/vox-256.yaml`` layout and training values, with the shared fixture's
    shrunk ``model_params``."""
    return {
        "dataset_params": {
            "root_dir": "data/vox-png", "frame_shape": [256, 256, 3], "id_sampling": True,
            "pairs_list": "data/vox256.csv",
            "augmentation_params": {
                "flip_param": {"horizontal_flip": True, "time_flip": True},
                "jitter_param": {"brightness": 0.1, "contrast": 0.1, "saturation": 0.1,
                                 "hue": 0.1}}},
        "model_params": {**model_params(FIXTURE_SIZE), "discriminator_params": DISCRIMINATOR},
        "train_params": {
            "num_epochs": 100, "num_repeats": 75, "epoch_milestones": [60, 90],
            "lr_generator": 2.0e-4, "lr_discriminator": 2.0e-4, "lr_kp_detector": 2.0e-4,
            "batch_size": 40, "scales": [1, 0.5, 0.25, 0.125], "checkpoint_freq": 50,
            "transform_params": {"sigma_affine": 0.05, "sigma_tps": 0.005, "points_tps": 5},
            "loss_weights": {"generator_gan": 0, "discriminator_gan": 1,
                             "feature_matching": [10, 10, 10, 10],
                             "perceptual": [10, 10, 10, 10, 10], "equivariance_value": 10,
                             "equivariance_jacobian": 10}},
        "reconstruction_params": {"num_videos": 1000, "format": ".mp4"},
        "animate_params": {"num_pairs": 50, "format": ".mp4", "normalization_params": {
            "adapt_movement_scale": False, "use_relative_movement": True,
            "use_relative_jacobian": True}},
        "visualizer_params": {"kp_size": 5, "draw_border": True, "colormap": "gist_rainbow"},
    }


def original_discriminator(params: dict, seed: int = 1234) -> nn.Module:
    """The original's ``MultiScaleDiscriminator`` parameters (modules/discriminator.py), from
    torch layers: ``discs.<scale>.down_blocks.<i>.conv`` (spectral norm: ``weight_orig``,
    ``weight_u``, ``weight_v``), ``.norm`` (affine instance norm, not on block 0) and
    ``discs.<scale>.conv`` (1x1). Seeded: norm weights U(0.5, 1.5), biases N(0, 0.1); u and v
    from 5 train-mode power iterations. Returned in ``eval()``."""
    p = {**params["common_params"], **params["discriminator_params"]}
    assert p["sn"] and not p.get("use_kp", False)
    torch.manual_seed(seed)
    width = [p["num_channels"]] + [min(p["max_features"], p["block_expansion"] * 2 ** (i + 1))
                                   for i in range(p["num_blocks"])]

    def block(i: int) -> nn.Module:
        out = nn.Module()
        out.conv = nn.utils.spectral_norm(nn.Conv2d(width[i], width[i + 1], kernel_size=4))
        out.norm = nn.InstanceNorm2d(width[i + 1], affine=True) if i else None
        return out

    def scale() -> nn.Module:
        out = nn.Module()
        out.down_blocks = nn.ModuleList(block(i) for i in range(p["num_blocks"]))
        out.conv = nn.utils.spectral_norm(nn.Conv2d(width[-1], 1, kernel_size=1))
        return out

    disc = nn.Module()
    disc.discs = nn.ModuleDict({str(s).replace(".", "-"): scale() for s in p["scales"]})
    with torch.no_grad():
        for m in disc.modules():
            if isinstance(m, nn.InstanceNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0, 0.1)
            elif isinstance(m, nn.Conv2d):
                m.train()
                for _ in range(5):  # the spectral norm's pre-hook iterates in train mode
                    m(torch.zeros(1, m.in_channels, *m.kernel_size))
    return disc.eval()


def adam_state(network: nn.Module, lr: float, milestones: list[int], seed: int) -> dict:
    """A ``torch.optim.Adam`` state dict as first-order-model saves it at :data:`EPOCH`: betas
    (0.5, 0.999), MultiStepLR's ``initial_lr`` and decayed ``lr``, and a filled ``state`` (step,
    exp_avg, exp_avg_sq) for every parameter; the network itself is left unchanged."""
    optimizer = torch.optim.Adam(network.parameters(), lr=lr, betas=(0.5, 0.999))
    for group in optimizer.param_groups:  # as MultiStepLR(gamma=0.1) after EPOCH + 1 steps
        group["initial_lr"] = lr
        group["lr"] = lr * 0.1 ** bisect.bisect_right(milestones, EPOCH + 1)
    generator = torch.Generator().manual_seed(seed)
    for param in network.parameters():
        optimizer.state[param] = {
            "step": torch.tensor(float(ADAM_STEPS)),
            "exp_avg": torch.randn(param.shape, generator=generator) * 1e-4,
            "exp_avg_sq": torch.rand(param.shape, generator=generator) * 1e-8}
    return optimizer.state_dict()


def write_original(folder: Path, seed: int = 1234) -> Generated:
    """Write ``config.yaml`` and ``checkpoint.pth.tar`` (official training layout) to ``folder``.

    The generator and keypoint detector are the original's (deep-animator), seeded random with
    nothing at its default (:func:`parity.packages.original_networks`, BN statistics those of the
    repo's source frame and last driving frame); the discriminator is
    :func:`original_discriminator`.
    """
    config = original_config()
    config_path = folder / "config.yaml"
    config_path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    params, train = config["model_params"], config["train_params"]
    inputs = fomm_inputs()
    batch = torch.from_numpy(np.concatenate([inputs["source"], inputs["driving"][-1:]]))
    with one_thread():
        # BN statistics of the batch itself, no extra gains: outputs spread over [0.01, 0.91]
        # and follow the motion (a frame step changes the prediction by ~20 levels on average),
        # and float32 rounding is amplified no more than in the shared fixture
        generator, kp_detector = original_networks(params, batch, seed, exact_stats=True,
                                                   kp_gain=1.0, final_gain=1.0)
    discriminator = original_discriminator(params, seed)
    networks = {"generator": generator, "kp_detector": kp_detector,
                "discriminator": discriminator}
    checkpoint: dict[str, object] = {name: net.state_dict() for name, net in networks.items()}
    for i, (name, network) in enumerate(networks.items()):
        checkpoint[f"optimizer_{name}"] = adam_state(network, train[f"lr_{name}"],
                                                     train["epoch_milestones"], seed + i)
    checkpoint["epoch"] = EPOCH
    path = folder / "checkpoint.pth.tar"
    torch.save(checkpoint, path)
    return Generated("fomm-parity", path, config_path, (generator, kp_detector, discriminator))


def _hull_scale(source: np.ndarray, initial: np.ndarray) -> float:
    """``adapt_movement_scale`` as the original computes it (float64 convex hull areas)."""
    return float(np.sqrt(ConvexHull(source).volume) / np.sqrt(ConvexHull(initial).volume))


def original_expected(fixture: Generated) -> dict[str, np.ndarray]:
    """The original's outputs (deep-animator's modules and ``normalize_kp``), computed as the
    shared fixture's README says: eval, no_grad, batch 1, modes rel_adapt/rel/abs, strided
    subsamples of every frame, the last frame of rel_adapt in full, the discriminator on the
    source."""
    utils = require("deep_animator.utils")
    generator, kp_detector, discriminator = fixture.networks
    inputs = fomm_inputs()
    source, driving = torch.from_numpy(inputs["source"]), torch.from_numpy(inputs["driving"])
    T = len(driving)
    grids: list[torch.Tensor] = []  # the dense-motion grid, not in the generator's output
    hook = generator.dense_motion_network.register_forward_hook(
        lambda module, args, out: grids.append(out["deformation"]))
    out: dict[str, np.ndarray] = {}
    try:
        with one_thread(), torch.no_grad():
            kp_source = kp_detector(source)
            kp_driving = [kp_detector(driving[t:t + 1]) for t in range(T)]
            for key in ("value", "jacobian"):
                out[f"kp_source_{key}"] = kp_source[key].numpy()
                out[f"kp_driving_initial_{key}"] = kp_driving[0][key].numpy()
                out[f"kp_driving_{key}"] = torch.cat([k[key] for k in kp_driving]).numpy()
            for mode, (relative, adapt) in MODES.items():
                norms = [utils.normalize_kp(kp_source, kp, kp_driving[0],
                                            adapt_movement_scale=adapt,
                                            use_relative_movement=relative,
                                            use_relative_jacobian=relative)
                         for kp in kp_driving]
                outs = [generator(source, kp_driving=kp, kp_source=kp_source) for kp in norms]
                for o, grid in zip(outs, grids[-T:], strict=True):
                    o["deformation"] = grid
                scale = _hull_scale(out["kp_source_value"][0],
                                    out["kp_driving_initial_value"][0]) if adapt else 1.0
                out[f"{mode}_scale"] = np.full(T, scale, np.float64)
                for key in ("value", "jacobian"):
                    out[f"{mode}_kp_norm_{key}"] = torch.cat([k[key] for k in norms]).numpy()

                def stack(key: str, index: tuple, outs: list = outs) -> np.ndarray:
                    return torch.cat([o[key][index] for o in outs]).numpy()

                every = slice(None)
                quarter = (every, every, slice(None, None, 4), slice(None, None, 4))
                eighth = (every, every, slice(None, None, 8), slice(None, None, 8))
                out[f"{mode}_prediction_sub"] = stack("prediction", eighth)
                out[f"{mode}_deformed_sub"] = stack("deformed", eighth)
                out[f"{mode}_mask_sub"] = stack("mask", quarter)
                out[f"{mode}_occlusion_map_sub"] = stack("occlusion_map", quarter)
                out[f"{mode}_sparse_deformed_sub"] = stack("sparse_deformed", (every, *quarter))
                out[f"{mode}_deformation_sub"] = stack("deformation", quarter[1:] + (every,))
                if mode == "rel_adapt":
                    last = outs[-1]
                    for key in ("prediction", "mask", "sparse_deformed", "occlusion_map",
                                "deformation"):
                        out[f"full_rel_adapt_t{T - 1}_{key}"] = last[key].numpy()
                    out[f"full_rel_adapt_t{T - 1}_deformed_s2"] = \
                        last["deformed"][:, :, ::2, ::2].numpy()
    finally:
        hook.remove()
    out.update(_paddle_discriminator(discriminator, inputs["source"]))
    return out


def _paddle_discriminator(discriminator: nn.Module, source: np.ndarray) -> dict[str, np.ndarray]:
    """``disc_*`` keys: PaddleGAN's port of the original discriminator, given ``discriminator``'s
    weights (Paddle's instance norm says ``scale`` for ``weight``), called in eval on
    ``{'prediction_1': source}``."""
    paddle = require("paddle")
    load_ppgan()
    module = importlib.import_module("ppgan.models.discriminators.discriminator_firstorder")
    params = original_config()["model_params"]
    theirs = module.MultiScaleDiscriminator(**params["discriminator_params"],
                                            **params["common_params"])
    state = {key.replace(".norm.weight", ".norm.scale"): value.numpy()
             for key, value in discriminator.state_dict().items()}
    assert set(state) == set(theirs.state_dict()), set(state) ^ set(theirs.state_dict())
    theirs.set_state_dict(state)
    theirs.eval()
    with paddle.no_grad():
        result = theirs({"prediction_1": paddle.to_tensor(source)})
    out = {}
    for i, fmap in enumerate(result["feature_maps_1"]):
        out[f"disc_feature_map{i}_sub"] = fmap.numpy()[:, :, ::4, ::4]
        out[f"disc_feature_map{i}_shape"] = np.array(fmap.shape, np.int64)
    out["disc_prediction_map"] = result["prediction_map_1"].numpy()
    return out


# ---------------------------------------------------------------------------------------------
# PaddleGAN: predictor weights and config


def _paddle_images() -> tuple[np.ndarray, np.ndarray]:
    """The predictor's input: ``(u8 / 255.0).astype(float32)``, NCHW (source, driving)."""
    inputs = paddle_inputs()

    def nchw(u8: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray((u8 / 255.0).astype(np.float32).transpose(0, 3, 1, 2))

    return nchw(inputs["source_u8"][None]), nchw(inputs["driving_u8"])


def write_paddle(folder: Path, seed: int = 1234) -> Generated:
    """Write ``config.yaml`` (PaddleGAN layout) and ``weights.pdparams`` (PaddleGAN's own
    writer) to ``folder``; the networks are built as ``FirstOrderPredictor`` builds them
    (``inference=True``), seeded random (:func:`parity.packages.paddle_networks`)."""
    _, _, _, filesystem = load_ppgan()
    config_path = write_paddle_config(folder / "config.yaml", FIXTURE_SIZE)
    model = yaml.safe_load(config_path.read_text(encoding="utf-8"))["model"]
    source, driving = _paddle_images()
    # BN statistics of the batch itself; keypoint head x 0.25 and output layer x 0.05: the
    # predictions (over [0.38, 0.64]) follow the image and the motion, and the two frameworks'
    # float32 rounding is amplified no more than in the shared fixture (abs mode: 2.5e-5)
    generator, kp_detector = paddle_networks(model, np.concatenate([source, driving[-1:]]), seed,
                                             inference=True, exact_stats=True, kp_gain=0.25,
                                             final_gain=0.05)
    path = folder / "weights.pdparams"
    filesystem.save({"generator": generator.state_dict(),
                     "kp_detector": kp_detector.state_dict()}, str(path))
    return Generated("paddlegan-parity", path, config_path, (generator, kp_detector))


def paddle_expected(fixture: Generated) -> dict[str, np.ndarray]:
    """PaddleGAN's outputs (ppgan's modules and ``normalize_kp``), keyed as its shared fixture:
    keypoints per frame (batch 1), normalised keypoints for every mode, and for rel_adapt and
    abs the prediction as ``round(p * 65535)`` (all frames, ``_sub4`` and ``_last`` too), the
    occlusion map and the dense-motion grid before the predictor's border blend."""
    paddle = require("paddle")
    _, _, animate, _ = load_ppgan()
    generator, kp_detector = fixture.networks
    source_np, driving_np = _paddle_images()
    T = len(driving_np)
    grids: list[np.ndarray] = []
    hook = generator.dense_motion_network.register_forward_post_hook(
        lambda layer, args, out: grids.append(out["deformation"].numpy()))
    out: dict[str, np.ndarray] = {}
    try:
        with paddle.no_grad():
            source, driving = paddle.to_tensor(source_np), paddle.to_tensor(driving_np)
            kp_source = kp_detector(source)
            kp_driving = [kp_detector(driving[t:t + 1]) for t in range(T)]
            for key in ("value", "jacobian"):
                out[f"kp_source_{key}"] = kp_source[key].numpy()
                out[f"kp_driving_{key}"] = np.concatenate([k[key].numpy() for k in kp_driving])
            out["adapt_movement_scale"] = np.float64(_hull_scale(
                out["kp_source_value"][0], out["kp_driving_value"][0]))
            for mode, (relative, adapt) in MODES.items():
                norms = [animate.normalize_kp(kp_source, kp, kp_driving[0],
                                              adapt_movement_scale=adapt,
                                              use_relative_movement=relative,
                                              use_relative_jacobian=relative)
                         for kp in kp_driving]
                for key in ("value", "jacobian"):
                    out[f"kp_norm_{key}_{mode}"] = np.concatenate([k[key].numpy() for k in norms])
                if mode not in GENERATOR_MODES:
                    continue
                outs = [generator(source, kp_source=kp_source, kp_driving=kp) for kp in norms]
                prediction = np.concatenate([o["prediction"].numpy() for o in outs])
                q16 = np.round(prediction.astype(np.float64) * 65535).astype(np.uint16)
                out[f"prediction_{mode}_q16"] = q16
                out[f"prediction_{mode}_q16_sub4"] = q16[:, :, ::4, ::4]
                out[f"prediction_{mode}_q16_last"] = q16[-1:]
                out[f"occlusion_map_{mode}"] = np.concatenate(
                    [o["occlusion_map"].numpy() for o in outs])
                out[f"deformation_{mode}"] = np.concatenate(grids[-T:])
    finally:
        hook.remove()
    out["paddle_version"] = np.array(paddle.__version__)
    return out
