"""The small Python API: load a model once, animate many inputs."""

from __future__ import annotations

from pathlib import Path

from fomm.checkpoints.formats import load_checkpoint
from fomm.checkpoints.names import DEFAULT_MODEL, bundled_model_path, resolve
from fomm.config import ModelConfig
from fomm.models import Models

__all__ = ["DEFAULT_MODEL", "bundled_model_path", "load_model"]


def load_model(checkpoint: str | Path | None = None, config: str | Path | ModelConfig | None = None,
               flavour: str | None = None) -> tuple[Models, ModelConfig]:
    """Load networks for inference.

    Args:
        checkpoint: a checkpoint path (``.pth.tar``, ``.pdparams`` or ``.safetensors``; the format
            is read from the content), the name of a bundled model or of downloaded official
            weights, or None for the default (:func:`fomm.checkpoints.resolve`).
        config: preset name, YAML path or ModelConfig, for checkpoints without an embedded
            config (default: the preset that fits official weights, else the one whose shapes
            fit the file).
        flavour: ``"original"`` or ``"paddle"`` numerics (default: by the checkpoint's origin).
    Returns:
        ``(Models, ModelConfig)``, networks in eval mode on the CPU.
    """
    path, preset = resolve(checkpoint)
    models, cfg, _ = load_checkpoint(path, config=config or preset, flavour=flavour)
    return models, cfg
