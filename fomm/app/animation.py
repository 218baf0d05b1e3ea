"""An animation job as the server and ``fomm worker`` both run it: its input, the form's fields
turned into :class:`~fomm.config.AnimateOptions`, the model, the run, and core messages in the
client's words. Knows nothing about HTTP."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fomm.app.fields import parse_fields
from fomm.app.jobs import Cancelled, Job
from fomm.app.settings import Settings
from fomm.config import AnimateOptions
from fomm.errors import FommError

if TYPE_CHECKING:  # torch is imported only where a model runs (not by a broker's API process)
    from fomm.inference.animator import Animator
    from fomm.inference.pipeline import AnimationResult

# CLI flags in core error messages → the form fields that do the same here
FLAG_NAMES = {"--no-crop": 'crop=false (on the page: untick "crop the face and paste it back")',
              "--face-index": "face_index",
              "--best-frame": "best_frame",
              "--animation-region": "animation_region",
              "--expression-scale": "expression_scale",
              "--eye-openness": "eye_offset",
              "--mouth-openness": "mouth_offset",
              "--smile": "smile_offset"}


def public_message(message: str, names: dict[str, str]) -> str:
    """A core error message with server paths and CLI flags replaced by what the client knows."""
    for old, new in {**names, **FLAG_NAMES}.items():
        message = message.replace(old, new)
    return message


def parse_options(fields: dict[str, str], settings: Settings) -> AnimateOptions:
    """Form fields → AnimateOptions with the server's batch size, device, precision and backend;
    unknown or malformed fields are a 400, expression values out of range a 422
    (:class:`~fomm.app.uploads.UploadError`)."""
    return AnimateOptions(**parse_fields(fields), batch_size=settings.batch_size,
                          device=settings.device, precision=settings.precision,
                          backend=settings.backend, progress=False)


@dataclass(frozen=True)
class JobInput:
    """What one animation needs: the uploaded files, the options, and names for messages."""

    source: Path
    driving: Path
    options: AnimateOptions
    names: dict[str, str]  # input path → the client's name for it, for messages
    fields: dict[str, str] = field(default_factory=dict)  # the form's options, as sent

    def dump(self) -> dict[str, Any]:
        """A JSON-able form for the job store (the options as the form sent them)."""
        return {"source": str(self.source), "driving": str(self.driving), "fields": self.fields,
                "names": self.names}

    @classmethod
    def load(cls, data: dict[str, Any], settings: Settings) -> JobInput:
        """Back from :meth:`dump`; the options are parsed again with today's settings."""
        return cls(Path(data["source"]), Path(data["driving"]),
                   parse_options(data["fields"], settings), data["names"], data["fields"])


def summary(result: AnimationResult) -> dict[str, Any]:
    """A finished animation as the API shows it (``result`` of the job's state)."""
    return {"frames": result.frames, "fps": result.fps, "width": result.size[0],
            "height": result.size[1], "faces": result.faces}


def animate(animator: Animator, inp: JobInput, output: Path,
            on_progress: Callable[[int, int | None], None]) -> dict[str, Any]:
    """Animate ``inp`` into ``output``; its :func:`summary`. A core error comes back with the
    client's names (:func:`public_message`)."""
    from fomm.inference.pipeline import animate_file

    try:
        result = animate_file(inp.source, inp.driving, output, inp.options, animator=animator,
                              on_progress=on_progress)
    except FommError as err:
        raise FommError(public_message(str(err), inp.names)) from err
    return summary(result)


def run_job(animator: Animator, job: Job, on_progress) -> dict[str, Any]:
    """The embedded queue's work: animate, then drop the inputs (the result stays until the
    TTL; a job stopped by a shutdown keeps them, to run again after a restart)."""
    inp: JobInput = job.payload
    keep_inputs = False
    try:
        return animate(animator, inp, job.output, on_progress)
    except Cancelled:
        keep_inputs = True
        raise
    finally:
        if not keep_inputs:
            inp.source.unlink(missing_ok=True)
            inp.driving.unlink(missing_ok=True)


def load_animator(settings: Settings) -> Animator:
    """The model ``settings`` name, on its device, precision and backend."""
    from fomm.checkpoints.loading import load_model
    from fomm.inference.animator import Animator

    models, config = load_model(settings.checkpoint, config=settings.config,
                                flavour=settings.flavour)
    return Animator(models, config, settings.device, settings.precision, settings.backend)
