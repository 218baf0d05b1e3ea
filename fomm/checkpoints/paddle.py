"""PaddleGAN ``.pdparams``: a restricted unpickler that only rebuilds arrays, plus one key remap.

A ``.pdparams`` file is a plain pickle (``paddle.save``) of nested dicts of numpy arrays, e.g.
``{'generator': {...}, 'kp_detector': {...}, 'StructuredToParameterName@@': {}}``; training
checkpoints add ``discriminator``, ``epoch`` and optimizer states.  Pickle can call any importable
function, so :class:`_ArrayUnpickler` allows only the few numpy globals needed to rebuild arrays
and refuses everything else before it is imported, let alone called.
"""

from __future__ import annotations

import collections
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fomm.errors import CheckpointError

try:  # numpy >= 2
    from numpy._core.multiarray import _reconstruct, scalar
    from numpy._core.numeric import _frombuffer
except ImportError:  # numpy 1.x
    from numpy.core.multiarray import _reconstruct, scalar  # type: ignore[no-redef]
    from numpy.core.numeric import _frombuffer  # type: ignore[no-redef]

NETWORKS = ("generator", "kp_detector", "discriminator")

# Paddle's own bookkeeping key (``paddle.load`` drops it too).
_PADDLE_META_KEY = "StructuredToParameterName@@"

# Files written by numpy 1 say ``numpy.core``, files written by numpy 2 ``numpy._core``: both map
# to the installed numpy's function.  Nothing here can run code: these only build arrays, dtypes
# and scalars from bytes.
_SAFE_GLOBALS: dict[tuple[str, str], Any] = {
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("collections", "OrderedDict"): collections.OrderedDict,
    # Paddle 2.x pickles a live tensor as tuple((name, ndarray)); tuple() only builds a tuple
    ("builtins", "tuple"): tuple,
    ("__builtin__", "tuple"): tuple,
}


def _latin1_bytes(text: str, encoding: str = "latin1") -> bytes:
    """What protocol-2 pickles written by Python 3 call to rebuild ``bytes`` (array data)."""
    if encoding not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError(f"unexpected bytes encoding {encoding!r}")
    return text.encode("latin1")


_SAFE_GLOBALS[("_codecs", "encode")] = _latin1_bytes
for _core in ("numpy.core", "numpy._core"):
    _SAFE_GLOBALS[(f"{_core}.multiarray", "_reconstruct")] = _reconstruct
    _SAFE_GLOBALS[(f"{_core}.multiarray", "scalar")] = scalar
    _SAFE_GLOBALS[(f"{_core}.numeric", "_frombuffer")] = _frombuffer  # pickle protocol 5

# Paddle name → torch name, as suffixes of the key.
_SUFFIX_RENAMES = (
    ("._mean", ".running_mean"),  # BatchNorm running statistics
    ("._variance", ".running_var"),
    (".scale", ".weight"),  # InstanceNorm2D's affine weight (discriminator)
)


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickler that resolves only :data:`_SAFE_GLOBALS` and refuses every other global."""

    def __init__(self, file: Any, path: str) -> None:
        super().__init__(file, encoding="latin1")  # latin1: arrays pickled by Python 2
        self._path = path

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _SAFE_GLOBALS[(module, name)]
        except KeyError:
            raise CheckpointError(f"{self._path}: refused to load: the file references "
                                  f"{module}.{name}, which could run code") from None

    def persistent_load(self, pid: Any) -> Any:
        raise CheckpointError(f"{self._path}: refused to load: the file uses pickle persistent "
                              "ids, which a .pdparams file never has")


def paddle_to_torch_keys(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename one network's Paddle state dict to PyTorch's parameter names.

    - ``<bn>._mean`` / ``<bn>._variance`` → ``<bn>.running_mean`` / ``<bn>.running_var``, and
      ``<bn>.num_batches_tracked = tensor(0)`` is added: Paddle's BatchNorm has no such counter,
      and adding it (it only matters when training with ``momentum=None``) lets the networks
      load with ``strict=True`` unchanged.
    - ``<norm>.scale`` → ``<norm>.weight`` (Paddle's InstanceNorm2D, in the discriminator).
    - A ``_layers.`` prefix (``paddle.DataParallel``) is dropped.
    - Spectral norm needs nothing: Paddle and PyTorch both say ``weight_orig``, ``weight_u``,
      ``weight_v``; convolutions, ``down.weight`` buffers and everything else keep their names.

    Pure: returns a new dict and shares the tensors.
    """
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        key = key.removeprefix("_layers.")
        for old, new in _SUFFIX_RENAMES:
            if key.endswith(old):
                key = key[: -len(old)] + new
                break
        out[key] = value
        if key.endswith(".running_mean"):
            out[key[: -len(".running_mean")] + ".num_batches_tracked"] = torch.tensor(
                0, dtype=torch.long)
    return out


def _to_tensor(value: Any, where: str) -> torch.Tensor:
    """One pickled parameter (ndarray, numpy scalar or Paddle's ``(name, ndarray)``) → tensor."""
    if (isinstance(value, tuple) and len(value) == 2 and isinstance(value[0], str)
            and isinstance(value[1], np.ndarray)):
        value = value[1]
    if isinstance(value, np.generic):
        value = np.asarray(value)
    if not isinstance(value, np.ndarray):
        raise CheckpointError(f"{where} is a {type(value).__name__}, expected an array")
    if value.dtype.kind not in "biuf":
        raise CheckpointError(f"{where} has dtype {value.dtype}, expected numbers")
    if not value.dtype.isnative:
        value = value.astype(value.dtype.newbyteorder("="))
    return torch.from_numpy(np.ascontiguousarray(value))


def read_paddle(path: str | Path) -> dict[str, dict[str, torch.Tensor]]:
    """Read a PaddleGAN FOMM checkpoint without executing code from it.

    Args:
        path: a ``.pdparams`` file (predictor weights or a training checkpoint).
    Returns:
        Network name (``generator``, ``kp_detector`` and, if present, ``discriminator``) → state
        dict with PyTorch key names (see :func:`paddle_to_torch_keys`).  Optimizer states and the
        epoch of training checkpoints are dropped.
    Raises:
        CheckpointError: the file references anything but numpy arrays (a malicious or foreign
        pickle), is truncated or corrupt, or lacks the generator or keypoint detector.
    """
    path = str(path)
    try:
        with open(path, "rb") as f:
            data = _ArrayUnpickler(f, path).load()
    except CheckpointError:
        raise
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot read ({exc.strerror or exc})") from None
    # Anything else raised while unpickling means a truncated or corrupt file: broken data can
    # make the allowed numpy builders raise almost any exception type.
    except Exception as exc:
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"{path}: not a readable PaddleGAN .pdparams file "
                              f"(truncated or corrupt: {msg[:160]})") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{path}: not a FOMM checkpoint (a {type(data).__name__}, "
                              "expected a dict with 'generator' and 'kp_detector')")
    missing = [n for n in ("generator", "kp_detector") if not isinstance(data.get(n), dict)]
    if missing:
        keys = ", ".join(sorted(str(k) for k in data if k != _PADDLE_META_KEY)[:6]) or "nothing"
        raise CheckpointError(f"{path}: not a FOMM checkpoint: no '{missing[0]}' state dict "
                              f"(found: {keys})")
    state: dict[str, dict[str, torch.Tensor]] = {}
    for net in NETWORKS:
        if not isinstance(data.get(net), dict):
            continue
        tensors = {str(key): _to_tensor(value, f"{path}: {net}.{key}")
                   for key, value in data[net].items() if key != _PADDLE_META_KEY}
        state[net] = paddle_to_torch_keys(tensors)
    return state
