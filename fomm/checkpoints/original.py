"""The original first-order-model ``.pth.tar`` layout, read with ``torch.load(weights_only)``."""

from __future__ import annotations

import os
import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch

from fomm.errors import CheckpointError
from fomm.media.fileio import atomic_output

NETWORKS = ("generator", "kp_detector", "discriminator")


def read_original(path: str | Path) -> dict[str, Any]:
    """Load an official training checkpoint without executing code.

    Returns:
        The checkpoint dict: ``generator``, ``kp_detector`` state dicts, and optionally
        ``discriminator``, ``optimizer_*`` and ``epoch``.
    """
    try:
        with open(path, "rb") as f:  # a file object: torch.load must not go by the suffix
            data = torch.load(f, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else "unsafe pickle"
        raise CheckpointError(
            f"{path}: refused to load: the file holds objects other than tensors, so loading it "
            f"could run code ({first[:160]})") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError) as exc:
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint "
                              f"(truncated or corrupt: {msg[:160]})") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{path}: not a FOMM checkpoint (a {type(data).__name__}, "
                              "expected a dict with 'generator' and 'kp_detector')")
    # Some exports wrap state dicts in DataParallel ('module.' prefixes); strip them.
    for name in NETWORKS:
        if isinstance(data.get(name), dict):
            data[name] = {k.removeprefix("module."): v for k, v in data[name].items()}
    missing = [n for n in ("generator", "kp_detector") if not isinstance(data.get(n), dict)]
    if missing:
        keys = ", ".join(sorted(map(str, data))[:6]) or "nothing"
        raise CheckpointError(f"{path}: not a FOMM checkpoint: no '{missing[0]}' state dict "
                              f"(found: {keys})")
    return data


def write_original(path: str | Path, data: dict[str, Any]) -> None:
    """Write a checkpoint dict in the official layout, atomically (temp file + ``os.replace``)."""
    with atomic_output(path) as tmp, open(tmp, "wb") as f:
        torch.save(data, f)
        f.flush()
        os.fsync(f.fileno())
