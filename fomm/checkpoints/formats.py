"""Checkpoint files: find the format from the bytes, read it, build the networks, load strictly.

Formats: the original ``.pth.tar`` (``torch.save``, zip or legacy), PaddleGAN ``.pdparams``
(plain pickle of numpy arrays) and fomm's ``.safetensors`` (config embedded).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from fomm.config import ModelConfig, load_config, preset_names
from fomm.errors import CheckpointError, ConfigError

Format = Literal["original", "paddle", "native"]

# torch.save's legacy (pre-1.6) files start with a pickled magic number
_TORCH_LEGACY_MAGIC = b"\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19"


@dataclass
class Checkpoint:
    """What a checkpoint file holds, independent of its format."""

    state: dict[str, dict[str, torch.Tensor]]  # network name → state dict (torch key names)
    format: Format
    path: str
    config: ModelConfig | None = None  # embedded config (fomm files only)
    extra: dict[str, Any] = field(default_factory=dict)  # optimizer states, epoch, …


def detect_format(path: str | Path) -> Format:
    """The checkpoint format from the file's first bytes (never its suffix)."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: checkpoint not found (names of bundled and downloaded "
                              "weights: fomm.checkpoints.resolve)")
    if path.is_dir():
        raise CheckpointError(f"{path}: is a folder, not a checkpoint file")
    with open(path, "rb") as f:
        head = f.read(16)
    if not head:
        raise CheckpointError(f"{path}: empty file, not a checkpoint")
    if head[:4] == b"PK\x03\x04" or head.startswith(_TORCH_LEGACY_MAGIC):
        return "original"
    if len(head) >= 9 and head[8:9] == b"{":
        return "native"
    if head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        return "paddle"
    raise CheckpointError(f"{path}: unknown checkpoint format (not a PyTorch .pth.tar, "
                          "PaddleGAN .pdparams or fomm .safetensors file)")


def read_checkpoint(path: str | Path) -> Checkpoint:
    """Read any supported checkpoint into torch tensors without executing code from it."""
    fmt = detect_format(path)
    if fmt == "native":
        from fomm.checkpoints.native import read_native

        state, config = read_native(path)
        return Checkpoint(state, fmt, str(path), config)
    if fmt == "paddle":
        from fomm.checkpoints.paddle import read_paddle

        return Checkpoint(read_paddle(path), fmt, str(path))
    from fomm.checkpoints.original import NETWORKS, read_original

    data = read_original(path)
    state = {n: data[n] for n in NETWORKS if isinstance(data.get(n), dict)}
    extra = {k: v for k, v in data.items() if k not in NETWORKS}
    return Checkpoint(state, fmt, str(path), None, extra)


def load_state(module: nn.Module, state: dict[str, torch.Tensor], what: str) -> None:
    """``load_state_dict(strict=True)`` with the first problem named in one line.

    Raises:
        CheckpointError: e.g. ``vox.pth.tar: generator.final.weight is (3, 64, 7, 7), config
        expects (3, 32, 7, 7)``.
    """
    own = module.state_dict()
    for key, value in state.items():
        if key in own and tuple(own[key].shape) != tuple(value.shape):
            raise CheckpointError(f"{what}.{key} is {tuple(value.shape)}, config expects "
                                  f"{tuple(own[key].shape)}")
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    if missing:
        raise CheckpointError(f"{what}.{missing[0]} is missing from the checkpoint "
                              f"({len(missing)} missing keys)")
    if unexpected:
        raise CheckpointError(f"{what}.{unexpected[0]} is in the checkpoint but not in the "
                              f"config's network ({len(unexpected)} unexpected keys)")
    converted = {k: v.to(own[k].dtype) if v.is_floating_point() else v for k, v in state.items()}
    module.load_state_dict(converted, strict=True)


def _with_own_kernels(module: nn.Module, state: dict[str, torch.Tensor]
                      ) -> tuple[dict[str, torch.Tensor], int]:
    """``state`` with the anti-alias kernels of ``module`` put in place of the saved ones.

    Those kernels are buffers derived from ``scale_factor``, not learned: weights trained at
    128x128 with ``scale_factor: 0.5`` load into a 256x256 config with ``0.25`` (the inner
    networks see the same 64x64 input).

    Returns:
        The new state dict and how many kernels differed in shape.
    """
    from fomm.models.blocks import AntiAliasInterpolation2d

    state, own, changed = dict(state), module.state_dict(), 0
    for prefix, sub in module.named_modules():
        key = f"{prefix}.weight" if prefix else "weight"
        if isinstance(sub, AntiAliasInterpolation2d) and key in state:
            changed += int(state[key].shape != own[key].shape)
            state[key] = own[key]
    return state, changed


def load_networks(models: Any, state: dict[str, dict[str, torch.Tensor]], name: str,
                  nets: tuple[str, ...] = ("kp_detector", "generator"),
                  rebuild_kernels: bool = False) -> int:
    """Load ``state[net]`` strictly into ``models.<net>`` for each of ``nets``.

    Args:
        models: anything with the networks as attributes (Models, a Trainer).
        name: the file's name, which starts every error message.
        rebuild_kernels: keep the networks' own anti-alias kernels (see
            :func:`_with_own_kernels`): load weights trained at another resolution.
    Returns:
        How many anti-alias kernels differed in shape (0 unless ``rebuild_kernels``).
    """
    rebuilt = 0
    for net in nets:
        if net not in state:
            raise CheckpointError(f"{name}: has no '{net}' weights")
        module, weights = getattr(models, net), state[net]
        if rebuild_kernels:
            weights, changed = _with_own_kernels(module, weights)
            rebuilt += changed
        try:
            load_state(module, weights, net)
        except CheckpointError as exc:
            raise CheckpointError(f"{name}: {exc}") from None
    return rebuilt


def _matches(config: ModelConfig, ckpt: Checkpoint) -> bool:
    from fomm.models import build_models

    with torch.device("meta"):  # shapes only: no memory, no init cost
        models = build_models(config)
    for name in ("kp_detector", "generator"):
        own = getattr(models, name).state_dict()
        got = ckpt.state.get(name, {})
        if set(own) != set(got) or any(own[k].shape != got[k].shape for k in own):
            return False
    return True


def infer_config(ckpt: Checkpoint) -> ModelConfig:
    """Pick the packaged preset whose networks fit the checkpoint's tensors exactly."""
    flavour = "paddle" if ckpt.format == "paddle" else "original"
    # presets of the checkpoint's own origin first
    ordered = sorted(preset_names(),
                     key=lambda n: (n.startswith("paddle") != (flavour == "paddle"), n))
    for name in ordered:
        config = load_config(name).model
        if _matches(config, ckpt):
            return config.replace(flavour=flavour)
    raise CheckpointError(f"{ckpt.path}: no packaged preset fits this checkpoint's shapes; "
                          "pass its YAML with --config")


def resolve_config(ckpt: Checkpoint, config: str | Path | ModelConfig | None,
                   flavour: str | None = None) -> ModelConfig:
    """The config to build for ``ckpt``: explicit > embedded > inferred; flavour by origin."""
    if isinstance(config, ModelConfig):
        resolved = config
    elif config is not None:
        resolved = load_config(config).model
        if ckpt.format == "paddle" and resolved.flavour != "paddle":
            resolved = resolved.replace(flavour="paddle")
    elif ckpt.config is not None:
        resolved = ckpt.config
    else:
        resolved = infer_config(ckpt)
    if flavour is not None:
        if flavour not in ("original", "paddle"):
            raise ConfigError(f"flavour must be 'original' or 'paddle', got {flavour!r}")
        resolved = resolved.replace(flavour=flavour)
    return resolved


def load_checkpoint(path: str | Path, config: str | Path | ModelConfig | None = None,
                    flavour: str | None = None, discriminator: bool = False):
    """Build networks for a checkpoint file and load its weights strictly.

    Args:
        path: any supported checkpoint file (a name of bundled or downloaded weights goes
            through :func:`fomm.checkpoints.resolve` first).
        config: preset name, YAML path or ModelConfig; default: embedded or inferred.
        flavour: override the numerics (``"original"`` or ``"paddle"``).
        discriminator: also build and load the discriminator (must be in the file).
    Returns:
        ``(Models, ModelConfig, Checkpoint)``; networks in eval mode on the CPU.
    """
    from fomm.models import build_models

    ckpt = read_checkpoint(path)
    cfg = resolve_config(ckpt, config, flavour)
    models = build_models(cfg, discriminator=discriminator)
    nets = ("kp_detector", "generator") + (("discriminator",) if discriminator else ())
    load_networks(models, ckpt.state, Path(path).name, nets)
    return models, cfg, ckpt


def save_checkpoint(path: str | Path, models, config: ModelConfig,
                    dtype: torch.dtype | None = None, discriminator: bool = False) -> None:
    """Save networks in fomm's single-file safetensors format (config embedded)."""
    from fomm.checkpoints.native import write_native

    state = {"kp_detector": models.kp_detector.state_dict(),
             "generator": models.generator.state_dict()}
    if discriminator and models.discriminator is not None:
        state["discriminator"] = models.discriminator.state_dict()
    write_native(path, state, config, dtype)
