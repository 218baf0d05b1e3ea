"""Old module names of the flat layout, kept importable for one release (0.2) with a warning.

``import fomm.image`` still works and gives the module ``fomm.media.image``; new code imports the
new names (see the table below).
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import warnings

MOVED = {
    "fomm.animate": "fomm.inference.animator",
    "fomm.api": "fomm.checkpoints.loading",
    "fomm.argtypes": "fomm.cli.argtypes",
    "fomm.backends": "fomm.runtime.backends",
    "fomm.demo": "fomm.inference.demo",
    "fomm.detail": "fomm.render.detail",
    "fomm.evaluate": "fomm.train.evaluate",
    "fomm.export": "fomm.runtime.export",
    "fomm.fileio": "fomm.media.fileio",
    "fomm.graphs": "fomm.runtime.graphs",
    "fomm.hub": "fomm.checkpoints.hub",
    "fomm.image": "fomm.media.image",
    "fomm.motion": "fomm.models.motion",
    "fomm.openvino_backend": "fomm.runtime.openvino",
    "fomm.pipeline": "fomm.inference.pipeline",
    "fomm.precision": "fomm.runtime.precision",
    "fomm.preflight": "fomm.cli.preflight",
    "fomm.spline": "fomm.render.spline",
    "fomm.video": "fomm.media.video",
}


class _Alias(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds an old name and loads it as the module under its new name."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname not in MOVED:
            return None
        return importlib.util.spec_from_loader(fullname, self)

    def create_module(self, spec):
        new = MOVED[spec.name]
        warnings.warn(f"{spec.name} moved to {new}; the old name goes in fomm 0.3",
                      DeprecationWarning, stacklevel=3)
        return importlib.import_module(new)

    def exec_module(self, module) -> None:
        """The module is already executed under its new name."""


def install() -> None:
    """Put the alias finder on ``sys.meta_path`` (once)."""
    if not any(isinstance(f, _Alias) for f in sys.meta_path):
        sys.meta_path.append(_Alias())
