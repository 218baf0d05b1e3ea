"""What the routes share, kept on ``app.state`` by :func:`fomm.app.api.create_app` and handed to
them as FastAPI dependencies: the settings, the job queue (embedded or a broker's), the model and
its previewer, the uploads' limits, the built-in examples."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import Depends, Request
from starlette.exceptions import HTTPException

from fomm.app.metrics import Metrics
from fomm.app.settings import Settings
from fomm.app.storage import DiskSpace
from fomm.app.store import JobStore
from fomm.app.uploads import Pace
from fomm.errors import FommError

if TYPE_CHECKING:
    from fomm.app.preview import Previewer

log = logging.getLogger("fomm.serve")
NOT_FOUND = "no such animation (unknown id, deleted, or expired)"


@dataclass
class Intake:
    """Where uploads go and what they may be: sizes, pace, free disk, checks at once."""

    folder: Path  # one folder per job (read by the workers with a broker's shared storage)
    scratch: Path  # the data folder: previews' files, for a request's time
    limits: dict[str, int]  # form file → its most bytes
    pace: Pace
    disk: DiskSpace
    checking: asyncio.Semaphore  # uploads decoded and checked at once
    most: int  # upload bodies received at once (the queue's room)
    in_flight: int = 0


class Examples:
    """The built-in example inputs (fomm.inference.demo.builtin_inputs), made once on first
    request."""

    def __init__(self, folder: Path) -> None:
        self.folder, self._lock, self._paths = folder, threading.Lock(), None

    def paths(self) -> tuple[Path, Path] | None:
        with self._lock:
            if self._paths is None:
                try:
                    from fomm.inference.demo import builtin_inputs

                    self.folder.mkdir(parents=True, exist_ok=True)
                    self._paths = tuple(Path(p) for p in builtin_inputs(self.folder))
                except (ImportError, FommError, OSError) as err:
                    log.warning("no built-in examples: %s", err)
                    self._paths = ()
            return self._paths or None


def from_state(name: str) -> Callable[[Request], Any]:
    """A dependency that gives ``app.state.<name>``."""

    def get(request: Request) -> Any:
        return getattr(request.app.state, name)

    get.__name__ = f"get_{name}"
    return get


def get_previewer(request: Request) -> Previewer:
    previewer = request.app.state.previewer
    if previewer is None:
        raise HTTPException(404, "this server runs jobs on workers: no preview here")
    return previewer


SettingsDep = Annotated[Settings, Depends(from_state("settings"))]
# the jobs: a fomm.app.jobs.JobQueue, or a broker's fomm.app.broker.BrokerJobs
QueueDep = Annotated[Any, Depends(from_state("queue"))]
IntakeDep = Annotated[Intake, Depends(from_state("intake"))]
# with a broker: where the jobs' files are (fomm.app.storage); None without
StorageDep = Annotated[Any, Depends(from_state("storage"))]
# without a broker: the embedded queue's job table (SQLite); None with one
StoreDep = Annotated[JobStore | None, Depends(from_state("store"))]
MetricsDep = Annotated[Metrics, Depends(from_state("metrics"))]
ExamplesDep = Annotated[Examples, Depends(from_state("examples"))]
# the model loaded here (None with a broker: the workers have it); its type stays a name: a
# broker's API process does not import torch
AnimatorDep = Annotated[Any, Depends(from_state("animator"))]
PreviewerDep = Annotated[Any, Depends(get_previewer)]
