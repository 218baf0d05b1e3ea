"""Parity without data files: the reference implementations come from PyPI packages.

``deep-animator`` 0.1.1 packages the original first-order-model modules unchanged
(``modules/kp_detector.py``, ``generator.py``, ``dense_motion.py``, ``util.py`` as ``utils.py``,
``sync_batchnorm`` and ``animate.normalize_kp``); ``ppgan`` 2.1.0 is PaddleGAN's own package,
run by ``paddlepaddle``. Both have pins or imports we do not want (deep-animator pins numpy 1.15
and torchvision, ppgan's ``__init__`` imports most of PaddleGAN), so scripts/test.sh installs them
with ``--no-deps`` and the tests import only the modules they need. A missing package fails the
test in one line that names the install command; it never skips silently.

The networks are built from a small config in the official YAML layout, given random weights
from a fixed seed with nothing left at its default, saved as the reference saves them and loaded
with fomm's own loader. Inputs are drawn from scikit-image's packaged pictures.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import importlib.util
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import torch
import yaml

from fomm.runtime.backends import torch_threads

INSTALL = {
    "deep_animator": "pip install --no-deps deep-animator==0.1.1",
    "paddle": "pip install paddlepaddle==3.3.1",
    "ppgan": "pip install --no-deps ppgan==2.1.0",
}


def require(module: str) -> ModuleType:
    """Import ``module`` or fail the test in one line naming the install command."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        missing = str(exc)
    pytest.fail(f"parity reference package missing ({missing}); install it with "
                f"`{INSTALL[module.split('.')[0]]}` (bash scripts/test.sh does)", pytrace=False)


# The fixture's shrunk vox-256 model (../shared/fixtures/fomm-parity/config.yaml) at 64x64, so
# one hourglass block fewer: jacobians and occlusion on, the anti-alias downscale by 0.25 (13x13
# Gaussian) in both the detector and dense motion, 16x16 heatmaps and motion fields.
MODEL_PARAMS = {
    "common_params": {"num_kp": 10, "num_channels": 3, "estimate_jacobian": True},
    "kp_detector_params": {"temperature": 0.1, "block_expansion": 8, "max_features": 16,
                           "scale_factor": 0.25, "num_blocks": 4},
    "generator_params": {"block_expansion": 8, "max_features": 16, "num_down_blocks": 2,
                         "num_bottleneck_blocks": 2, "estimate_occlusion_map": True,
                         "dense_motion_params": {"block_expansion": 4, "max_features": 16,
                                                 "num_blocks": 4, "scale_factor": 0.25}},
}
SIZE = 64


def model_params(size: int = SIZE) -> dict:
    """:data:`MODEL_PARAMS` for ``size``x``size`` inputs: one hourglass block more per doubling."""
    blocks = 4 + (size // SIZE).bit_length() - 1
    params = {k: dict(v) for k, v in MODEL_PARAMS.items()}
    params["kp_detector_params"]["num_blocks"] = blocks
    params["generator_params"]["dense_motion_params"] = {
        **params["generator_params"]["dense_motion_params"], "num_blocks": blocks}
    return params


def write_original_config(path: Path, size: int = SIZE) -> Path:
    """An official-layout YAML (``model_params``, ``dataset_params``) for :func:`model_params`."""
    config = {"dataset_params": {"root_dir": "data", "frame_shape": [size, size, 3]},
              "model_params": model_params(size)}
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return path


def write_paddle_config(path: Path, size: int) -> Path:
    """The same model in PaddleGAN's ``configs/firstorder_vox_256.yaml`` layout."""
    params = model_params(size)
    config = {"model": {"common_params": params["common_params"], "generator": {
        "kp_detector_cfg": params["kp_detector_params"],
        "generator_cfg": params["generator_params"]}}}
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return path


@functools.cache
def load_ppgan() -> tuple[ModuleType, ModuleType, ModuleType, ModuleType]:
    """PaddleGAN's FOMM modules from the installed ``ppgan``, without its package ``__init__``
    (which imports most of PaddleGAN and its pinned dependencies).

    ppgan 2.1.0's ``AntiAliasInterpolation2d`` downsamples with ``paddle.fluid.layers.
    resize_nearest``, and ``paddle.fluid`` is gone since paddle 2.5; PaddleGAN's master replaced
    that one line by ``out[:, :, ::s, ::s]`` (commit 094a2eb, the code of
    ../shared/fixtures/paddlegan-parity). The same replacement is made here, and nothing else.

    Returns:
        The modules ``keypoint_detector``, ``occlusion_aware``, ``utils.animate`` and
        ``utils.filesystem`` (PaddleGAN's checkpoint writer).
    """
    require("paddle")
    spec = importlib.util.find_spec("ppgan")
    if spec is None or spec.origin is None:
        require("ppgan")  # fails, naming the install command
    root = Path(spec.origin).parent
    for name in ("ppgan", "ppgan.modules", "ppgan.models", "ppgan.models.generators",
                 "ppgan.models.discriminators", "ppgan.utils"):
        if name not in sys.modules:  # a bare package: its folder, not its __init__
            package = ModuleType(name)
            package.__path__ = [str(root.joinpath(*name.split(".")[1:]))]
            sys.modules[name] = package
    first_order = importlib.import_module("ppgan.modules.first_order")
    first_order.AntiAliasInterpolation2d.forward = _anti_alias_forward
    return tuple(importlib.import_module(f"ppgan.{name}") for name in (
        "modules.keypoint_detector", "models.generators.occlusion_aware", "utils.animate",
        "utils.filesystem"))


def _anti_alias_forward(self, input):
    """ppgan 2.1.0's ``AntiAliasInterpolation2d.forward`` as PaddleGAN master has it."""
    import paddle.nn.functional as F

    if self.scale == 1.0:
        return input
    out = F.pad(input, [self.ka, self.kb, self.ka, self.kb])
    out = F.conv2d(out, weight=self.weight, groups=self.groups)
    step = int(1 / self.scale)
    return out[:, :, ::step, ::step]  # was: paddle.fluid.layers.resize_nearest(out, self.scale)


def drawn_inputs(frames: int = 3, size: int = SIZE) -> tuple[np.ndarray, np.ndarray]:
    """(source (1, 3, S, S), driving (T, 3, S, S)) float32 ``u8 / 255`` from packaged pictures.

    The source is scikit-image's astronaut; the driving frames are crops of it that move and
    zoom (the first one too, so that adapt_scale has a scale other than 1), the last one the cat.
    """
    from skimage import data

    def frame(u8: np.ndarray) -> np.ndarray:  # any (H, W, 3) → (3, S, S) by striding, no resize
        step = min(u8.shape[:2]) // size
        crop = u8[: size * step : step, : size * step : step]
        return np.ascontiguousarray(crop.transpose(2, 0, 1)).astype(np.float32) / np.float32(255)

    astronaut = data.astronaut()  # (512, 512, 3)
    boxes = [(32, 48, 448), (64, 16, 384), (0, 0, 512)]
    driving = [frame(astronaut[y:y + s, x:x + s]) for y, x, s in boxes[: frames - 1]]
    driving.append(frame(data.chelsea()[:, 60:360]))
    return frame(astronaut)[None], np.stack(driving)


def perturb(networks: list[torch.nn.Module], train_batch: Callable[[], object],
            seed: int = 1234, exact_stats: bool = False) -> None:
    """Leave no norm at its default: affine weights U(0.5, 1.5) and biases N(0, 0.1); BN running
    stats from one train-mode call of ``train_batch`` (which runs ``networks``), then scaled by
    U(0.5, 1.5) and shifted by N(0, 0.1) standard deviations. Every network ends in ``eval()``.

    With ``exact_stats`` the running stats are that batch's own (momentum 1), not 10% of the way
    to them: the default init's small activations are then normalised
    in eval as in training, and the outputs depend on the image, not on the norms' biases alone.
    """
    generator = torch.Generator().manual_seed(seed)

    def rand(like: torch.Tensor, lo: float, hi: float) -> torch.Tensor:
        return torch.rand(like.shape, generator=generator) * (hi - lo) + lo

    def randn(like: torch.Tensor, std: float) -> torch.Tensor:
        return torch.randn(like.shape, generator=generator) * std

    norms = [m for net in networks for m in net.modules()
             if isinstance(m, torch.nn.modules.batchnorm._NormBase) and m.affine]
    with torch.no_grad():
        for m in norms:
            m.weight.copy_(rand(m.weight, 0.5, 1.5))
            m.bias.copy_(randn(m.bias, 0.1))
        for net in networks:
            net.train()
        momentum = {m: m.momentum for m in norms}
        for m in norms:
            if exact_stats and m.running_var is not None:
                m.momentum = 1.0  # the running stats become the batch's
        train_batch()
        for m in norms:
            m.momentum = momentum[m]
            if m.running_var is not None:
                m.running_mean.add_(randn(m.running_mean, 0.1) * m.running_var.sqrt())
                m.running_var.mul_(rand(m.running_var, 0.5, 1.5))
        for net in networks:
            net.eval()


def original_networks(params: dict, batch: torch.Tensor, seed: int = 7, exact_stats: bool = False,
                      kp_gain: float = 3.0, final_gain: float = 8.0
                      ) -> tuple[torch.nn.Module, torch.nn.Module]:
    """The original's generator and keypoint detector (deep-animator's modules), seeded random.

    Args:
        params: ``model_params`` of an official config (common, kp detector, generator).
        batch: (B, 3, H, W) float32 images for the train-mode call that sets the BN statistics.
        seed: torch seed of the default initialisation.
        exact_stats: BN running statistics of ``batch`` itself (see :func:`perturb`).
        kp_gain: keypoint head weights x ``kp_gain``: sharper heatmaps, keypoints spread out.
        final_gain: output layer weights x ``final_gain``: predictions spread over [0, 1] (with
            ``exact_stats`` the outputs vary enough at 1; more saturates the sigmoid).

    Returns:
        ``(generator, kp_detector)`` in ``eval()``, nothing left at its default (see
        :func:`perturb`): the jacobian head depends on the image, the keypoint heatmaps are
        sharper and the predictions spread over [0, 1].
    """
    generator_mod = require("deep_animator.modules.generator")
    kp_mod = require("deep_animator.modules.kp_detector")
    torch.manual_seed(seed)
    generator = generator_mod.OcclusionAwareGenerator(**params["generator_params"],
                                                      **params["common_params"])
    kp_detector = kp_mod.KPDetector(**params["kp_detector_params"], **params["common_params"])
    with torch.no_grad():
        # the jacobian head starts at weight 0, bias identity: make it depend on the image
        kp_detector.jacobian.weight.normal_(0, 0.02)
        kp_detector.jacobian.bias.add_(torch.randn_like(kp_detector.jacobian.bias) * 0.1)
        kp_detector.kp.weight.mul_(kp_gain)
        generator.final.weight.mul_(final_gain)

    def train_batch():
        kp = kp_detector(batch)
        generator(batch, kp_driving=kp, kp_source={k: v.flip(0) for k, v in kp.items()})

    perturb([generator, kp_detector], train_batch, exact_stats=exact_stats)
    return generator, kp_detector


def paddle_networks(model: dict, batch: np.ndarray, seed: int = 7, inference: bool = False,
                    exact_stats: bool = False, kp_gain: float = 1.0, final_gain: float = 1.0
                    ) -> tuple[object, object]:
    """PaddleGAN's generator and keypoint detector (ppgan's modules), seeded random.

    Args:
        model: the ``model`` section of a PaddleGAN config (``common_params``, ``generator``).
        batch: (B, 3, H, W) float32 images for the train-mode call that sets the BN statistics.
        seed: Paddle and numpy seed.
        inference: build the generator as ``FirstOrderPredictor`` does (border blend on).
        exact_stats: BN running statistics of ``batch`` itself (see :func:`perturb`).
        kp_gain: keypoint head weights x ``kp_gain`` (below 1: flatter heatmaps, which amplify
            float32 rounding less).
        final_gain: output layer weights x ``final_gain`` (below 1: the sigmoid not saturated).

    Returns:
        ``(generator, kp_detector)`` Paddle layers in ``eval()``, nothing left at its default
        (see :func:`paddle_perturb`); the jacobian head depends on the image.
    """
    paddle = require("paddle")
    kp_mod, gen_mod, _, _ = load_ppgan()
    paddle.seed(seed)
    generator = gen_mod.OcclusionAwareGenerator(**model["generator"]["generator_cfg"],
                                                **model["common_params"], inference=inference)
    kp_detector = kp_mod.KPDetector(**model["generator"]["kp_detector_cfg"],
                                    **model["common_params"])
    rng = np.random.default_rng(seed)
    # the jacobian head starts at weight 0, bias identity: make it depend on the image (small
    # enough that every jacobian stays well away from singular: |det| > 0.5)
    jacobian = kp_detector.jacobian
    jacobian.weight.set_value(rng.normal(0, 0.005, jacobian.weight.shape).astype(np.float32))
    jacobian.bias.set_value(jacobian.bias.numpy() + rng.normal(0, 0.1, jacobian.bias.shape)
                            .astype(np.float32))
    images = paddle.to_tensor(batch)

    def train_batch():
        kp = kp_detector(images)
        generator(images, kp_driving=kp, kp_source={k: v.flip([0]) for k, v in kp.items()})

    paddle_perturb([generator, kp_detector], train_batch, exact_stats=exact_stats)
    kp_detector.kp.weight.set_value(kp_detector.kp.weight.numpy() * np.float32(kp_gain))
    generator.final.weight.set_value(generator.final.weight.numpy() * np.float32(final_gain))
    return generator, kp_detector


def paddle_perturb(networks: list, train_batch: Callable[[], object], seed: int = 1234,
                   exact_stats: bool = False) -> None:
    """As :func:`perturb`, for Paddle layers (``_mean``/``_variance``; Paddle's momentum is the
    running stats' weight, so ``exact_stats`` sets it to 0)."""
    paddle = require("paddle")
    rng = np.random.default_rng(seed)
    norms = [layer for net in networks for layer in net.sublayers()
             if isinstance(layer, paddle.nn.BatchNorm | paddle.nn.layer.norm._BatchNormBase)]

    def put(param, value):
        param.set_value(np.asarray(value, np.float32).reshape(param.shape))

    for bn in norms:
        put(bn.weight, rng.uniform(0.5, 1.5, bn.weight.shape))
        put(bn.bias, rng.normal(0, 0.1, bn.bias.shape))
    for net in networks:
        net.train()
    momentum = {id(bn): bn._momentum for bn in norms}
    for bn in norms:
        if exact_stats:
            bn._momentum = 0.0  # the running stats become the batch's
    with paddle.no_grad():
        train_batch()
    for bn in norms:
        bn._momentum = momentum[id(bn)]
        var = bn._variance.numpy()
        put(bn._mean, bn._mean.numpy() + rng.normal(0, 0.1, var.shape) * np.sqrt(var))
        put(bn._variance, var * rng.uniform(0.5, 1.5, var.shape))
    for net in networks:
        net.eval()


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """Run torch on one thread: batch-1 calls of tiny networks gain nothing from more, and on a
    loaded machine the idle threads' spinning doubles the CPU time."""
    with torch_threads(1):
        yield


def max_diff(a, b) -> float:
    """Max abs difference of two tensors/arrays, in float64."""
    a = a.detach().numpy() if torch.is_tensor(a) else np.asarray(a)
    b = b.detach().numpy() if torch.is_tensor(b) else np.asarray(b)
    assert a.shape == b.shape, (a.shape, b.shape)
    return float(np.abs(a.astype(np.float64) - b.astype(np.float64)).max())
