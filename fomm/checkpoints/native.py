"""Our own format: one ``.safetensors`` file with the model config embedded as JSON metadata."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from fomm.config import ModelConfig
from fomm.errors import CheckpointError
from fomm.media.fileio import atomic_output

FORMAT_TAG = "fomm-safetensors-v1"


def read_native(path: str | Path) -> tuple[dict[str, dict[str, torch.Tensor]], ModelConfig]:
    """Read a fomm safetensors file.

    Returns:
        ``{"kp_detector": {...}, "generator": {...}, ["discriminator": {...}]}`` and its config.
    """
    try:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
        flat = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{path}: not a readable safetensors file ({exc})") from None
    if meta.get("format") != FORMAT_TAG or "config" not in meta:
        raise CheckpointError(f"{path}: safetensors file without a fomm config in its metadata "
                              "(not written by fomm)")
    try:
        config = ModelConfig.from_dict(json.loads(meta["config"]), str(path))
    except json.JSONDecodeError:
        raise CheckpointError(f"{path}: its embedded config is not valid JSON") from None
    state: dict[str, dict[str, torch.Tensor]] = {}
    for key, value in flat.items():
        net, _, name = key.partition(".")
        state.setdefault(net, {})[name] = value
    return state, config


def write_native(path: str | Path, state: dict[str, dict[str, torch.Tensor]],
                 config: ModelConfig, dtype: torch.dtype | None = None,
                 extra_metadata: dict[str, str] | None = None) -> None:
    """Write networks' state dicts and config to one safetensors file, atomically.

    Args:
        state: network name → state dict.
        dtype: cast floating tensors (e.g. ``torch.float16`` halves the size).
    """
    flat = {}
    for net, sd in state.items():
        for name, value in sd.items():
            value = value.detach().cpu()
            if dtype is not None and value.is_floating_point():
                value = value.to(dtype)
            flat[f"{net}.{name}"] = value.contiguous()
    meta = {"format": FORMAT_TAG, "config": config.to_json(), **(extra_metadata or {})}
    with atomic_output(path) as tmp:
        save_file(flat, str(tmp), metadata=meta)
