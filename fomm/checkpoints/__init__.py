"""One front door to weights: :func:`resolve` turns a checkpoint argument (a bundled model's
name, downloaded official weights' name, a path) into a file; :func:`load_checkpoint` finds the
file's format from its bytes, reads it and loads it strictly.

Formats: the original ``.pth.tar`` (``torch.save``, zip or legacy), PaddleGAN ``.pdparams``
(plain pickle of numpy arrays) and fomm's ``.safetensors`` (config embedded). The readers
(torch) are imported on first use, so that :func:`resolve` runs before torch loads.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from fomm.checkpoints.names import DEFAULT_MODEL, bundled_model_path, resolve

if TYPE_CHECKING:
    from fomm.checkpoints.formats import (
        Checkpoint,
        detect_format,
        infer_config,
        load_checkpoint,
        load_networks,
        load_state,
        read_checkpoint,
        resolve_config,
        save_checkpoint,
    )

__all__ = ["DEFAULT_MODEL", "Checkpoint", "bundled_model_path", "detect_format", "infer_config",
           "load_checkpoint", "load_networks", "load_state", "read_checkpoint", "resolve",
           "resolve_config", "save_checkpoint"]
_FORMATS = frozenset(__all__) - {"DEFAULT_MODEL", "bundled_model_path", "resolve"}


def __getattr__(name: str) -> Any:
    if name in _FORMATS:
        return getattr(importlib.import_module("fomm.checkpoints.formats"), name)
    raise AttributeError(f"module 'fomm.checkpoints' has no attribute {name!r}")
