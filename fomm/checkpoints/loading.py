"""The small Python API: load a model once, animate many inputs."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from fomm.checkpoints import load_checkpoint
from fomm.config import ModelConfig, preset_names
from fomm.errors import CheckpointError
from fomm.models import Models

DEFAULT_MODEL = "fomm-face-256"


def bundled_model_path(name: str = DEFAULT_MODEL) -> Path | None:
    """Path of a model shipped inside the package, or None if this install has none."""
    path = Path(str(resources.files("fomm") / "weights" / f"{name}.safetensors"))
    return path if path.is_file() else None


def load_model(checkpoint: str | Path | None = None, config: str | Path | ModelConfig | None = None,
               flavour: str | None = None) -> tuple[Models, ModelConfig]:
    """Load networks for inference.

    Args:
        checkpoint: a checkpoint path (``.pth.tar``, ``.pdparams`` or ``.safetensors``; the format
            is read from the content), the name of a bundled model, or None for the default.
        config: preset name, YAML path or ModelConfig, for checkpoints without an embedded
            config (default: the preset whose shapes fit the file).
        flavour: ``"original"`` or ``"paddle"`` numerics (default: by the checkpoint's origin).
    Returns:
        ``(Models, ModelConfig)``, networks in eval mode on the CPU.
    """
    if checkpoint is None or (not Path(checkpoint).exists() and "/" not in str(checkpoint)
                              and bundled_model_path(str(checkpoint)) is not None):
        name = DEFAULT_MODEL if checkpoint is None else str(checkpoint)
        path = bundled_model_path(name)
        if path is None:
            raise CheckpointError(
                f"no bundled model '{name}' in this install; pass a checkpoint with "
                "--checkpoint PATH (e.g. vox-cpk.pth.tar, vox-cpk.pdparams or a fomm .safetensors)")
        checkpoint = path
    elif not Path(checkpoint).exists() and str(checkpoint) in preset_names():
        raise CheckpointError(
            f"'{checkpoint}' is a config preset, not weights; pass the checkpoint file with "
            f"--checkpoint PATH and --config {checkpoint}")
    models, cfg, _ = load_checkpoint(checkpoint, config=config, flavour=flavour)
    return models, cfg
