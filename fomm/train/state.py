"""What a training checkpoint holds beyond the networks: optimizers, schedulers, RNG, progress.

The file keeps the official ``.pth.tar`` layout (``generator``, ``kp_detector``,
``discriminator``, ``optimizer_*``, ``epoch``) so first-order-model's ``Logger.load_cpk`` loads
it; our extra keys start with ``fomm_`` and hold only tensors, numbers, strings, lists and dicts,
so ``torch.load(weights_only=True)`` reads the whole file.
"""

from __future__ import annotations

import bisect
import random
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.optim import Optimizer
from torch.optim.lr_scheduler import MultiStepLR

from fomm.checkpoints import load_state
from fomm.config import TrainParams
from fomm.errors import CheckpointError


@dataclass
class Progress:
    """Where training is: ``epoch`` in progress, ``batch`` batches done in it, ``step`` overall."""

    epoch: int = 0
    batch: int = 0
    step: int = 0


def scheduler_state(scheduler: MultiStepLR) -> dict[str, Any]:
    state = scheduler.state_dict()
    state["milestones"] = {int(k): int(v) for k, v in state["milestones"].items()}  # not Counter
    return state


def load_scheduler_state(scheduler: MultiStepLR, state: dict[str, Any]) -> None:
    state = dict(state)
    state["milestones"] = Counter({int(k): int(v) for k, v in state["milestones"].items()})
    scheduler.load_state_dict(state)


def rng_state() -> dict[str, Any]:
    """torch (CPU and CUDA), numpy and Python RNG states, in weights_only-safe types."""
    name, keys, pos, has_gauss, gauss = np.random.get_state()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {"name": name, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "gauss": float(gauss)},
        "python": random.getstate(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    np_state = state.get("numpy")
    if np_state is not None:
        np.random.set_state((np_state["name"], np_state["keys"].numpy().astype(np.uint32),
                             np_state["pos"], np_state["has_gauss"], np_state["gauss"]))
    if state.get("python") is not None:
        version, internal, gauss = state["python"]
        random.setstate((version, tuple(internal), gauss))
    if state.get("cuda") is not None and torch.cuda.is_available():
        cuda = state["cuda"]
        if len(cuda) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda)


def load_optimizer(optimizer: Optimizer, state: dict[str, Any], name: str) -> None:
    """``optimizer.load_state_dict`` after checking that every moment matches its parameter.

    torch only checks the number of parameters per group; a state from another architecture
    would otherwise load and corrupt training silently.
    """
    params = [p for group in optimizer.param_groups for p in group["params"]]
    groups = state.get("param_groups", [])
    saved = [i for group in groups for i in group.get("params", [])]
    if len(saved) != len(params):
        raise CheckpointError(f"{name} holds {len(saved)} parameters, the network has "
                              f"{len(params)}")
    for index, param in zip(saved, params, strict=True):
        moments = state.get("state", {}).get(index, {})
        for key in ("exp_avg", "exp_avg_sq"):
            value = moments.get(key)
            if value is not None and tuple(value.shape) != tuple(param.shape):
                raise CheckpointError(f"{name}: parameter {index} {key} is "
                                      f"{tuple(value.shape)}, the network's is "
                                      f"{tuple(param.shape)}")
    try:
        optimizer.load_state_dict(state)
    except (ValueError, KeyError) as exc:
        raise CheckpointError(f"{name}: {exc}") from None


def official_schedulers(optimizers: dict[str, Optimizer], milestones: tuple[int, ...],
                        start_epoch: int, kp_lr_zero: bool,
                        fresh: bool) -> dict[str, MultiStepLR]:
    """Schedulers as first-order-model's ``train.py`` builds them when resuming at ``start_epoch``.

    ``last_epoch = start_epoch - 1`` (and -1 for the kp detector when its lr is 0).  With
    ``fresh`` optimizers (the checkpoint had none) each lr is first set to its decayed value.
    """
    out = {}
    for name, optimizer in optimizers.items():
        last = -1 if (name == "kp_detector" and kp_lr_zero) else start_epoch - 1
        for group in optimizer.param_groups:
            group.setdefault("initial_lr", group["lr"])
            if fresh and last >= 0:
                group["lr"] = group["initial_lr"] * 0.1 ** bisect.bisect_right(
                    sorted(milestones), last)
        out[name] = MultiStepLR(optimizer, list(milestones), gamma=0.1, last_epoch=last)
    return out


@dataclass
class Restored:
    """What :func:`restore` recovered from a checkpoint."""

    progress: Progress
    schedulers: dict[str, MultiStepLR]
    official: bool  # a first-order-model file: no progress beyond ``epoch``
    notes: list[str] = field(default_factory=list)


def restore(data: dict[str, Any], path: str | Path, networks: dict[str, nn.Module],
            optimizers: dict[str, Optimizer], params: TrainParams, rank: int = 0) -> Restored:
    """Load networks, optimizers, schedulers, progress and (rank 0) RNG from a checkpoint dict.

    Our files continue exactly where they stopped.  A first-order-model file restarts, as its
    ``train.py`` does, at ``range(epoch, num_epochs)`` with ``MultiStepLR(last_epoch=epoch-1)``.

    Raises:
        CheckpointError: a network or optimizer state that does not fit (named, with shapes).
    """
    name = Path(path).name
    notes = []
    fresh = False
    try:
        for net in ("kp_detector", "generator"):
            load_state(networks[net], data[net], net)
        if isinstance(data.get("discriminator"), dict):
            load_state(networks["discriminator"], data["discriminator"], "discriminator")
        else:
            notes.append(f"{name}: no discriminator weights; it starts from scratch")
        for net, optimizer in optimizers.items():
            key = f"optimizer_{net}"
            if net == "kp_detector" and params.lr_kp_detector == 0:
                continue  # the original does not load it either
            if isinstance(data.get(key), dict):
                load_optimizer(optimizer, data[key], key)
            else:
                fresh = True
                notes.append(f"{name}: no {key} state; it starts fresh")
    except CheckpointError as exc:
        raise CheckpointError(f"{name}: {exc}") from None
    ours = data.get("fomm_resume")
    if isinstance(ours, dict):
        progress = Progress(int(ours["epoch"]), int(ours["batch"]), int(ours["step"]))
        schedulers = official_schedulers(optimizers, params.epoch_milestones, 0, False, False)
        for net, state in data.get("fomm_schedulers", {}).items():
            load_scheduler_state(schedulers[net], state)
        if "fomm_rng" in data and rank == 0:
            restore_rng_state(data["fomm_rng"])
        return Restored(progress, schedulers, False, notes)
    start = int(data.get("epoch", 0))
    schedulers = official_schedulers(optimizers, params.epoch_milestones, start,
                                     params.lr_kp_detector == 0, fresh)
    return Restored(Progress(start, 0, 0), schedulers, True, notes)


def checkpoint_dict(networks: dict[str, nn.Module], optimizers: dict[str, Optimizer],
                    schedulers: dict[str, MultiStepLR], progress: Progress,
                    extra: dict[str, Any]) -> dict[str, Any]:
    """The official keys (``epoch``: the epoch in progress, or the last finished one at an epoch
    end, as the original saves it), then ``fomm_resume``, ``fomm_schedulers``, ``fomm_rng`` and
    ``extra`` (keys starting with ``fomm_``)."""
    p = progress
    data: dict[str, Any] = {name: _cpu(net.state_dict()) for name, net in networks.items()}
    for name, optimizer in optimizers.items():
        data[f"optimizer_{name}"] = _cpu(optimizer.state_dict())
    data["epoch"] = p.epoch - 1 if p.batch == 0 and p.epoch > 0 else p.epoch
    data["fomm_resume"] = {"epoch": p.epoch, "batch": p.batch, "step": p.step}
    data["fomm_schedulers"] = {n: scheduler_state(s) for n, s in schedulers.items()}
    data["fomm_rng"] = rng_state()
    data.update(extra)
    return data


def _cpu(obj: Any) -> Any:
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu()
    if isinstance(obj, dict):
        return {k: _cpu(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_cpu(v) for v in obj]
    return obj
