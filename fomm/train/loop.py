"""Trainer: the original recipe (``train.py`` + ``GeneratorFullModel``) on CPU, GPU or torchrun.

One :class:`Trainer` with an explicit :meth:`Trainer.step`; the rank comes from torchrun's
environment and rank 0 alone logs and saves.  Checkpoints keep the official layout plus our
resume state (see :mod:`fomm.train.state`), are written atomically, periodically, at epoch ends
and on SIGINT/SIGTERM (the running step finishes first).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import signal
import threading
import time
import warnings
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel as DDP

from fomm.checkpoints import load_networks, read_checkpoint
from fomm.checkpoints.original import read_original, write_original
from fomm.config import FommConfig
from fomm.errors import ConfigError
from fomm.inference.animator import resolve_device
from fomm.models import build_models
from fomm.models.motion import Keypoints
from fomm.train import losses as L
from fomm.train import state as S
from fomm.train.data import EpochSampler, FramesDataset, Pair, make_loader, split_folder
from fomm.train.logs import RunLogger
from fomm.train.options import (
    TrainOptions,
    TrainResult,
    inherit_options,
    load_train_config,
    run_folder,
)

log = logging.getLogger(__name__)


class Trainer:
    """Build networks, optimizers and schedulers from a config; resume; train with :meth:`fit`."""

    def __init__(self, options: TrainOptions, config: FommConfig | None = None) -> None:
        self.rank = int(os.environ.get("RANK", 0))
        self.world_size = int(os.environ.get("WORLD_SIZE", 1))
        self.device = resolve_device(options.device)
        if self.device.type == "cuda" and self.world_size > 1:
            self.device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
            torch.cuda.set_device(self.device)
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True  # fixed input sizes: pick the fastest kernels
        if self.world_size > 1 and not dist.is_initialized():
            dist.init_process_group("nccl" if self.device.type == "cuda" else "gloo")
        resumed = read_original(options.resume) if options.resume else None
        self.options = options = inherit_options(options, resumed)
        self.config_text, self.config = load_train_config(options, config, resumed)
        self.train_params = self.config.train
        self.progress = S.Progress()
        self.interrupted = False
        self.latest: Path | None = None
        self.notes: list[str] = []  # reported once the run folder exists
        self._official_start = False  # resumed from a first-order-model checkpoint
        self._saved_at: tuple[int, int, int] | None = None
        self.run_dir = run_folder(options, self.config)
        if options.landmark_weight:
            from fomm.train.regions import NUM_GUIDES

            num_kp = self.config.model.num_kp
            if num_kp < NUM_GUIDES:
                raise ConfigError(f"--landmark-weight ties {NUM_GUIDES} keypoints to landmarks: "
                                  f"the model has only {num_kp} (num_kp)")

        torch.manual_seed(options.seed)  # identical initial weights on every rank
        models = build_models(self.config.model, discriminator=True)
        self.kp_detector, self.generator = models.kp_detector.train(), models.generator.train()
        self.discriminator = models.discriminator.train()
        if options.init:
            self._init_from(options.init)
        tp = self.train_params
        self.optimizers = {
            "generator": torch.optim.Adam(self.generator.parameters(), lr=tp.lr_generator,
                                          betas=(0.5, 0.999)),
            "kp_detector": torch.optim.Adam(self.kp_detector.parameters(), lr=tp.lr_kp_detector,
                                            betas=(0.5, 0.999)),
            "discriminator": torch.optim.Adam(self.discriminator.parameters(),
                                              lr=tp.lr_discriminator, betas=(0.5, 0.999)),
        }
        if resumed is not None:
            restored = S.restore(resumed, options.resume, self.networks, self.optimizers, tp,
                                 self.rank)
            self.progress, self.schedulers = restored.progress, restored.schedulers
            self._official_start, self.notes = restored.official, restored.notes
        else:
            self.schedulers = S.official_schedulers(self.optimizers, tp.epoch_milestones, 0,
                                                    False, False)
        if self.progress.step == 0 and resumed is None:
            torch.manual_seed(options.seed + 1 + self.rank)
        elif self.rank > 0:
            torch.manual_seed(options.seed + 1 + self.rank + 7919 * self.progress.step)

        for net in self.networks.values():
            net.to(self.device)
        for optimizer in self.optimizers.values():  # moments follow their parameters
            optimizer.load_state_dict(optimizer.state_dict())
        self.kp, self.gen, self.disc = self.kp_detector, self.generator, self.discriminator
        if self.world_size > 1:
            self.kp, self.gen, self.disc = (self._ddp(m) for m in self.networks.values()
                                            if m is not None)
        self.vgg = self._perceptual_network(options.vgg_weights)
        self.perceptual = L.PerceptualLoss(tp.scales, tp.loss_weights.perceptual,
                                           self.vgg).to(self.device)
        self.disc_pyramid = L.ImagePyramid(self.discriminator.scales).to(self.device)
        self.logger = RunLogger(self.run_dir, self.rank == 0, options.tensorboard,
                                options.progress)
        if self.vgg is None and sum(tp.loss_weights.perceptual) != 0:
            self.logger.note("no --vgg-weights: the perceptual loss uses the fallback, an L1 "
                             "pyramid on pixels (weight sum(perceptual) per scale)")

    # ----------------------------------------------------------------------------------------
    # construction helpers

    @property
    def networks(self) -> dict[str, nn.Module]:
        return {"kp_detector": self.kp_detector, "generator": self.generator,
                "discriminator": self.discriminator}

    def _ddp(self, module: nn.Module) -> DDP:
        if self.device.type == "cuda":
            module = nn.SyncBatchNorm.convert_sync_batchnorm(module)
            return DDP(module, device_ids=[self.device.index])
        return DDP(module)

    def _perceptual_network(self, path: str | None):
        if sum(self.train_params.loss_weights.perceptual) == 0 or not path:
            return None
        from fomm.models.vgg import load_vgg19

        return load_vgg19(path).to(self.device)

    def _init_from(self, path: str) -> None:
        """Start from another run's weights (fresh optimizers), at this config's resolution.

        Anti-alias kernels are buffers derived from ``scale_factor``, not learned: they are
        rebuilt for this config, so weights trained at 128x128 with ``scale_factor: 0.5``
        fine-tune at 256x256 with ``0.25`` (the inner networks see the same 64x64 input).
        """
        ckpt = read_checkpoint(path)
        nets = ("kp_detector", "generator")
        if "discriminator" in ckpt.state:
            nets += ("discriminator",)
        name = Path(path).name
        rebuilt = load_networks(self, ckpt.state, name, nets, rebuild_kernels=True)
        if rebuilt:
            self.notes.append(f"--init {name}: {rebuilt} anti-alias kernels rebuilt for this "
                              "config's scale factors")

    # ----------------------------------------------------------------------------------------
    # one step

    def autocast(self) -> contextlib.AbstractContextManager:
        return torch.autocast(self.device.type, dtype=torch.bfloat16,
                              enabled=self.options.precision == "bf16")

    def step(self, batch: Pair) -> dict[str, float]:
        """One optimisation step on a batch: generator + kp detector, then the discriminator.

        Returns:
            The weighted loss terms of this step (floats).
        """
        source = batch.source.to(self.device, non_blocking=True)  # (B, 3, H, W)
        driving = batch.driving.to(self.device, non_blocking=True)
        weight = batch.weight.to(self.device, non_blocking=True) if batch.weight.numel() else None
        guides = batch.guides.to(self.device, non_blocking=True) if batch.guides.numel() else None
        autoencoder = self.progress.step < self.options.pretrain_autoencoder
        with self.autocast():
            if autoencoder:
                losses, generated = self._autoencoder_losses(driving)
            else:
                losses, generated = self._generator_losses(source, driving, weight, guides)
        total = sum(losses.values())
        total.backward()
        self.optimizers["generator"].step()
        self.optimizers["generator"].zero_grad(set_to_none=True)
        if not autoencoder:
            self.optimizers["kp_detector"].step()
        self.optimizers["kp_detector"].zero_grad(set_to_none=True)
        if self.train_params.loss_weights.generator_gan != 0 and not autoencoder:
            self.optimizers["discriminator"].zero_grad(set_to_none=True)
            with self.autocast():
                disc = self._discriminator_loss(driving, generated)
            disc.backward()
            self.optimizers["discriminator"].step()
            self.optimizers["discriminator"].zero_grad(set_to_none=True)
            losses["disc_gan"] = disc
        self.progress.step += 1
        self.last = (source, driving, generated)  # for the image grids
        return {k: float(v.detach()) for k, v in losses.items()}

    def _generator_losses(self, source: Tensor, driving: Tensor, weight: Tensor | None = None,
                          guides: Tensor | None = None) -> tuple[dict[str, Tensor], dict]:
        """GeneratorFullModel.forward: perceptual pyramid, GAN + feature matching, equivariance.

        ``weight``: (B, 1, H, W) eyes-and-mouth map of the driving frames for ``region_weight``.
        ``guides``: (B, 2, G, 2) landmark targets of source and driving for ``landmark_weight``.
        """
        tp = self.train_params
        weights = tp.loss_weights
        kp_source = self.kp(source)
        kp_driving = self.kp(driving)
        out = self.gen(source, kp_driving, kp_source)
        generated: dict[str, Any] = {"out": out, "kp_source": kp_source, "kp_driving": kp_driving}
        pyramid_real = self.perceptual.pyramid(driving)
        pyramid_fake = self.perceptual.pyramid(out.prediction)
        losses: dict[str, Tensor] = {}
        if sum(weights.perceptual) != 0:
            losses["perceptual"] = self.perceptual(out.prediction, driving, pyramid_fake,
                                                   pyramid_real)
        if weights.generator_gan != 0:
            kp = _detach(kp_driving)
            scales = self.discriminator.scales
            with _frozen(self.discriminator):  # no gradients into D from the generator's loss
                fake = self.discriminator(L.discriminator_inputs(pyramid_fake, scales,
                                                                 out.prediction), kp)
                real = self.discriminator(L.discriminator_inputs(pyramid_real, scales, driving),
                                          kp)
            losses.update(L.generator_gan_losses(fake, real, weights))
        if (weights.equivariance_value + weights.equivariance_jacobian) != 0:
            if tp.transform_params is None:
                raise ConfigError(f"{self.config.source}: equivariance losses need "
                                  "train_params.transform_params")
            eq, transformed, kp_t = L.equivariance_losses(self.kp, driving, kp_driving,
                                                          tp.transform_params, weights)
            losses.update(eq)
            generated.update(transformed=transformed, kp_transformed=kp_t)
        losses.update(self._extra_losses(out.prediction, driving))
        if self.options.region_weight and weight is not None:
            losses["region"] = self.options.region_weight * L.region_l1(
                pyramid_fake, pyramid_real, weight)
        if self.options.landmark_weight and guides is not None:
            chosen = self.options.landmark_keypoints or ()
            losses["landmark"] = self.options.landmark_weight / 2 * (
                L.landmark_guidance(kp_source.value, guides[:, 0], chosen)
                + L.landmark_guidance(kp_driving.value, guides[:, 1], chosen))
        if self.options.separation_weight:
            values = torch.cat([kp_source.value, kp_driving.value])  # (2B, K, 2)
            losses["separation"] = self.options.separation_weight * L.keypoint_separation(
                values.float(), self.options.separation_sigma)
        return losses, generated

    def _autoencoder_losses(self, driving: Tensor) -> tuple[dict[str, Tensor], dict]:
        """Identity motion (source = driving, same keypoints): trains encoder/decoder alone."""
        with torch.no_grad():
            kp = _detach(self.kp(driving))
        out = self.gen(driving, kp, kp)
        losses = {"perceptual": self.perceptual(out.prediction, driving)}
        losses.update(self._extra_losses(out.prediction, driving))
        return losses, {"out": out, "kp_source": kp, "kp_driving": kp}

    def _extra_losses(self, prediction: Tensor, target: Tensor) -> dict[str, Tensor]:
        losses = {}
        if self.options.ssim_weight:
            losses["ssim"] = self.options.ssim_weight * L.ssim_loss(prediction, target)
        if self.options.gradient_weight:
            losses["gradient"] = self.options.gradient_weight * L.gradient_l1(prediction, target)
        return losses

    def _discriminator_loss(self, driving: Tensor, generated: dict) -> Tensor:
        """DiscriminatorFullModel.forward on the detached prediction."""
        scales = self.discriminator.scales
        kp = _detach(generated["kp_driving"])
        prediction = generated["out"].prediction.detach()
        fake = self.disc(L.discriminator_inputs(self.disc_pyramid(prediction), scales,
                                                prediction), kp)
        real = self.disc(L.discriminator_inputs(self.disc_pyramid(driving), scales, driving), kp)
        return L.discriminator_loss(fake, real, self.train_params.loss_weights)

    # ----------------------------------------------------------------------------------------
    # the loop

    def fit(self) -> TrainResult:
        """Train until ``num_epochs`` (or ``max_steps``), or until SIGINT/SIGTERM; save, return."""
        opts, tp = self.options, self.train_params
        ds = self.config.dataset
        folder = split_folder(opts.data or ds.root_dir, "train")
        dataset = FramesDataset(folder, ds.frame_shape, ds.id_sampling, tp.num_repeats,
                                ds.augmentation, opts.seed, opts.cache_mb,
                                regions=opts.region_weight > 0,
                                expressive_pairs=opts.expressive_pairs,
                                guides=opts.landmark_weight > 0,
                                eye_guides=opts.eye_guides)
        per_rank = max(1, tp.batch_size // self.world_size)
        sampler = EpochSampler(len(dataset), self.rank, self.world_size, opts.seed)
        loader = make_loader(dataset, per_rank, sampler, opts.workers,
                             pin_memory=self.device.type == "cuda")
        steps_per_epoch = sampler.per_rank // per_rank
        if self._official_start:
            self.progress.step = self.progress.epoch * steps_per_epoch  # best estimate
        if opts.landmark_weight and not opts.landmark_keypoints:
            self._assign_guides(dataset)
        self.logger.start(self.config_text, dataclasses.asdict(opts), self.config.source,
                          self.progress, len(dataset), steps_per_epoch, self.world_size)
        for message in self.notes:
            self.logger.note(message)
        last_save = time.monotonic()
        with _StopSignals() as signals:
            while self.progress.epoch < tp.num_epochs and not self._done(signals):
                epoch = self.progress.epoch
                sampler.set_epoch(epoch, skip=self.progress.batch * per_rank)
                bar = self.logger.bar(epoch, self.progress.batch, steps_per_epoch)
                tick = time.perf_counter()
                for batch in loader:
                    losses = self.step(batch)
                    self.progress.batch += 1
                    seconds, tick = time.perf_counter() - tick, time.perf_counter()  # with data
                    self.logger.step(self, losses, per_rank * self.world_size, seconds, bar)
                    if self.rank == 0 and self._periodic_save_due(last_save):
                        self.save()
                        last_save = time.monotonic()
                    if self._done(signals):
                        break
                bar.close()
                if self.progress.batch >= steps_per_epoch:
                    self._end_epoch()
        self.interrupted = signals.received is not None
        if self.interrupted:
            self.logger.note(f"stopped by signal {signals.received} at step "
                             f"{self.progress.step}; saving")
        if self.rank == 0 and self._saved_at != self._position():
            self.save()
        self.logger.close()
        if self.world_size > 1:
            dist.barrier()
        return TrainResult(self.run_dir, self.latest, self.progress.step, self.progress.epoch,
                           self.interrupted, self.rank)

    def _assign_guides(self, dataset: FramesDataset, samples: int = 64) -> None:
        """Tie a keypoint to each landmark-guidance point: the nearest on average, one each.

        Taken once at the start of a run from the current weights (the ``--init`` ones, so a
        trained model keeps the keypoints it has near the eyes and mouth), kept in the options
        and so in every checkpoint, and inherited on resume.
        """
        from fomm.train.regions import assign_guides

        total, count = None, None
        with torch.no_grad():
            for i in range(min(samples, len(dataset))):
                pair = dataset[(10_000 + self.progress.step, i)]  # not this epoch's draws
                image = torch.stack([pair.source, pair.driving]).to(self.device)
                value = self.kp_detector(image).value.float().cpu()  # (2, K, 2)
                dist = (pair.guides[:, :, None] - value[:, None]).abs().sum(-1)  # (2, G, K)
                known = torch.isfinite(dist)
                part = torch.where(known, dist, 0).sum(0)
                total = part if total is None else total + part
                count = known.sum(0) if count is None else count + known.sum(0)
        mean = (total / count.clamp_min(1)).numpy()
        chosen = assign_guides(mean)
        self.options = dataclasses.replace(self.options, landmark_keypoints=chosen)
        eyes = "eye centres" if self.options.eye_guides == "centres" else "upper lids"
        self.logger.note(f"landmark guidance: keypoints {list(chosen)} tied to the {eyes}, "
                         "mouth corners, upper and lower lip (mean distances "
                         f"{[round(float(mean[g, k]), 3) for g, k in enumerate(chosen)]})")

    def _end_epoch(self) -> None:
        epoch = self.progress.epoch
        with warnings.catch_warnings():  # D's optimizer never steps when generator_gan is 0
            warnings.filterwarnings("ignore", "Detected call of `lr_scheduler.step", UserWarning)
            for scheduler in self.schedulers.values():
                scheduler.step()
        self.progress.epoch += 1
        self.progress.batch = 0
        self.logger.end_epoch(epoch)
        if self.rank == 0:
            self.save()
            last = self.progress.epoch >= self.train_params.num_epochs
            if (epoch + 1) % self.train_params.checkpoint_freq == 0 or last:
                self.save(self.run_dir / f"{epoch:08d}-checkpoint.pth.tar")

    def _periodic_save_due(self, last_save: float) -> bool:
        opts = self.options
        if opts.save_every_steps and self.progress.step % opts.save_every_steps == 0:
            return True
        minutes = opts.save_every_minutes
        return bool(minutes) and time.monotonic() - last_save >= 60 * minutes

    def _done(self, signals: _StopSignals) -> bool:
        stop = signals.received is not None
        if self.world_size > 1:  # every rank must leave the loop at the same step
            flag = torch.tensor([int(stop)], device=self.device)
            dist.all_reduce(flag, op=dist.ReduceOp.MAX)
            stop = bool(flag.item())
            if stop and signals.received is None:
                signals.received = -1
        max_steps = self.options.max_steps
        return stop or (max_steps is not None and self.progress.step >= max_steps)

    # ----------------------------------------------------------------------------------------
    # checkpoints

    def checkpoint(self) -> dict[str, Any]:
        """The checkpoint dict: the official keys, then ours (``fomm_*``)."""
        return S.checkpoint_dict(self.networks, self.optimizers, self.schedulers, self.progress,
                                 {"fomm_config": self.config_text,
                                  "fomm_model_config": self.config.model.to_dict(),
                                  "fomm_options": dataclasses.asdict(self.options)})

    def save(self, path: str | Path | None = None) -> Path:
        """Write the checkpoint atomically (default ``<run>/checkpoint.pth.tar``)."""
        path = Path(path) if path is not None else self.run_dir / "checkpoint.pth.tar"
        write_original(path, self.checkpoint())
        if path.name == "checkpoint.pth.tar":
            self.latest = path
            self._saved_at = self._position()
        self.logger.note(f"saved {path} (epoch {self.progress.epoch}, step {self.progress.step})",
                         echo=False)
        return path


    def _position(self) -> tuple[int, int, int]:
        return self.progress.epoch, self.progress.batch, self.progress.step


def train(options: TrainOptions) -> TrainResult:
    """``fomm train``: build a :class:`Trainer` and run it to the end (or a stop signal)."""
    return Trainer(options).fit()


# --------------------------------------------------------------------------------------------
# helpers


class _StopSignals:
    """SIGINT/SIGTERM set ``received``; the loop finishes its step and saves. A second one quits."""

    def __init__(self) -> None:
        self.received: int | None = None
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: Any) -> None:
        if self.received is not None:
            raise KeyboardInterrupt
        self.received = signum
        log.info("signal %d: finishing this step, then saving a checkpoint (again to quit at "
                 "once)", signum)

    def __enter__(self) -> _StopSignals:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


@contextlib.contextmanager
def _frozen(module: nn.Module):
    flags = [p.requires_grad for p in module.parameters()]
    module.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in zip(module.parameters(), flags, strict=True):
            p.requires_grad_(flag)


def _detach(kp: Keypoints) -> Keypoints:
    return Keypoints(kp.value.detach(), None if kp.jacobian is None else kp.jacobian.detach())
