"""A checkpoint argument as a file: bundled models, downloaded official weights and paths.

Standard library only, so that the CLI can check a ``--checkpoint`` before torch loads.
"""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

from fomm.checkpoints.hub import WEIGHTS, cached_path, how_to_get
from fomm.config import preset_names
from fomm.errors import CheckpointError

DEFAULT_MODEL = "fomm-face-256"


def bundled_model_path(name: str = DEFAULT_MODEL) -> Path | None:
    """Path of a model shipped inside the package, or None if this install has none."""
    path = Path(str(resources.files("fomm") / "weights" / f"{name}.safetensors"))
    return path if path.is_file() else None


def resolve(checkpoint: str | os.PathLike | None = None) -> tuple[Path, str | None]:
    """The file a checkpoint argument names, and the config preset that fits it.

    Args:
        checkpoint: an existing path; the name of a bundled model (``fomm-face-256``, its
            config embedded); the name of downloaded official weights (``fomm weights list``);
            or None for the default bundled model.
    Returns:
        ``(path, preset)``: ``preset`` is the packaged config for official weights, else None
        (the file embeds its config, or the loader infers it from the shapes).
    Raises:
        CheckpointError: a name not downloaded yet or not known, or a config preset's name,
            with what to do instead.
    """
    if checkpoint is not None and Path(checkpoint).exists():
        return Path(checkpoint), None
    name = DEFAULT_MODEL if checkpoint is None else str(checkpoint)
    if "/" not in name and (bundled := bundled_model_path(name)) is not None:
        return bundled, None
    if checkpoint is None:
        raise CheckpointError(
            f"no bundled model '{name}' in this install; pass a checkpoint with "
            "--checkpoint PATH (e.g. vox-cpk.pth.tar, vox-cpk.pdparams or a fomm .safetensors)")
    if name in WEIGHTS:
        cached = cached_path(name)
        if cached is None:
            raise CheckpointError(f"{name}: not downloaded yet; {how_to_get(name)}")
        return cached, WEIGHTS[name].config
    if name in preset_names():
        raise CheckpointError(
            f"'{name}' is a config preset, not weights; pass the checkpoint file with "
            f"--checkpoint PATH and --config {name}")
    raise CheckpointError(f"{name}: checkpoint not found; {how_to_get(name)}")
