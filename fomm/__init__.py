"""fomm: the First Order Motion Model for image animation (Siarohin et al., NeurIPS 2019).

Public API::

    from fomm import load_model, Animator, animate_file
    models, config = load_model("vox-cpk.pth.tar")
    animate_file("face.png", "driving.mp4", "output/result.mp4", models=models, config=config)
"""

from __future__ import annotations

from fomm import _moved

__version__ = "0.1.0"

_moved.install()

__all__ = ["AnimateOptions", "Animator", "__version__", "animate_file", "load_model"]


def __getattr__(name: str):
    # Lazy imports keep `import fomm` (and `fomm --help`) fast.
    if name == "load_model":
        from fomm.checkpoints.loading import load_model

        return load_model
    if name == "Animator":
        from fomm.inference.animator import Animator

        return Animator
    if name == "animate_file":
        from fomm.inference.pipeline import animate_file

        return animate_file
    if name == "AnimateOptions":
        from fomm.config import AnimateOptions

        return AnimateOptions
    raise AttributeError(f"module 'fomm' has no attribute {name!r}")
