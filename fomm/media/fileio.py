"""Atomic writes: results appear at their path complete, or not at all."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def _default_mode(directory: bool = False) -> int:
    umask = os.umask(0)
    os.umask(umask)
    return (0o777 if directory else 0o666) & ~umask


def make_temp_file(path: Path, suffix: str = ".partial") -> Path:
    """A hidden temp file beside ``path`` with the permissions a normal file would get.

    (``mkstemp`` creates 0600 files, which would keep results unreadable after the rename.)
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    os.chmod(tmp, _default_mode())
    return Path(tmp)


def make_temp_dir(path: Path, suffix: str = ".partial") -> Path:
    """A hidden temp folder beside ``path`` with normal folder permissions."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent))
    os.chmod(tmp, _default_mode(directory=True))
    return tmp


@contextmanager
def atomic_output(path: str | os.PathLike, suffix: str = ".partial") -> Iterator[Path]:
    """Yield a temp path beside ``path``; rename it onto ``path`` on success, delete on error."""
    path = Path(path)
    tmp = make_temp_file(path, suffix)
    try:
        yield tmp
        os.chmod(tmp, _default_mode())  # again: some writers (safetensors) recreate the file 0600
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
