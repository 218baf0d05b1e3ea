"""The HTTP API and web page: uploads checked, then queued as jobs that run animate_file.

:func:`create_app` builds the app from its parts (settings, job queue and store, model, upload
limits) kept on ``app.state`` and includes the routers of :mod:`fomm.app.routes`, which get those
parts as FastAPI dependencies. One model is loaded per app and shared by the worker threads. Every
error is JSON: ``{"error": {"code": "...", "message": "..."}}`` with a 4xx status the client can
act on.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import State

from fomm import __version__
from fomm.app.animation import JobInput, load_animator, parse_options, public_message, run_job
from fomm.app.device import device_router
from fomm.app.guard import Guard
from fomm.app.jobs import FINISHED, Job, JobQueue
from fomm.app.metrics import Metrics
from fomm.app.routes import animations, examples, health, page, preview
from fomm.app.routes.deps import Examples, Intake
from fomm.app.routes.errors import add_error_handlers
from fomm.app.settings import Settings
from fomm.app.storage import DiskSpace
from fomm.app.store import JobStore
from fomm.app.uploads import MB, Pace
from fomm.config import AnimateOptions

if TYPE_CHECKING:  # torch is imported only where a model runs (not by a broker's API process)
    from fomm.inference.animator import Animator

__all__ = ["JobInput", "Settings", "create_app", "parse_options", "public_message"]


def create_app(settings: Settings | None = None, *, animator: Animator | None = None) -> FastAPI:
    """The FastAPI app: API under /v1, the page at /, /healthz, /metrics, docs at /docs if on.

    Without ``settings.broker`` the jobs run in this process (embedded queue, SQLite under
    ``data_dir``); with it they go to Redis for ``fomm worker`` processes, no model is loaded
    here and the live page is off.

    Args:
        settings: limits, queue size, data folder and the model to load.
        animator: a ready model (tests); default: load ``settings.checkpoint`` now.
    """
    settings = settings or Settings()
    if settings.broker is None:
        animator = animator or load_animator(settings)
    app = FastAPI(title="fomm", version=__version__, lifespan=_lifespan,
                  description="Animate a still image with the motion of a driving video.",
                  docs_url="/docs" if settings.docs else None,
                  redoc_url="/redoc" if settings.docs else None)
    app.add_middleware(Guard, bind=settings.host, allowed_hosts=settings.allowed_hosts,
                       token=settings.token)
    add_error_handlers(app)
    state = app.state
    state.settings, state.owned = settings, settings.data_dir is None
    state.data_dir = Path(tempfile.mkdtemp(prefix="fomm-serve-") if state.owned
                          else settings.data_dir)
    state.store = state.storage = state.previewer = None
    if settings.broker is None:
        state.animator = animator
        _embedded_queue(state, settings)
        from fomm.app.preview import Previewer

        state.previewer = Previewer(state.animator)
    else:
        state.animator = None
        _broker_queue(state, settings)
    state.examples = Examples(state.data_dir / "examples")
    state.intake = Intake(
        folder=state.jobs_dir, scratch=state.data_dir,
        limits={"source": int(settings.max_image_mb * MB),
                "driving": int(settings.max_video_mb * MB)},
        pace=Pace(idle_s=settings.upload_idle_s, min_rate=settings.upload_min_rate_kib * 1024,
                  deadline_s=settings.upload_deadline_s),
        disk=DiskSpace(state.data_dir, int(settings.min_free_mb * MB)),
        checking=asyncio.Semaphore(settings.max_checks),
        most=settings.max_queue + settings.workers)
    for routes in (animations, preview, examples, health, page):
        app.include_router(routes.router)
    app.include_router(device_router(settings.checkpoint))  # the on-device page, /device/
    if state.animator is not None:  # with a broker no model is loaded here: no live page
        from fomm.app.live import LiveLimits, add_live_routes

        add_live_routes(app, state.animator,
                        AnimateOptions(device=settings.device, precision=settings.precision,
                                       backend=settings.backend, progress=False),
                        LiveLimits(settings.max_resolution, settings.live_photo_s,
                                   settings.live_idle_s, settings.live_session_s,
                                   settings.live_max_fps))
    app.mount("/static", StaticFiles(directory=page.STATIC), name="static")
    return app


def _embedded_queue(state: State, settings: Settings) -> None:
    """Jobs run here by worker threads, their state in SQLite under the data folder."""
    animator = state.animator
    state.jobs_dir = state.data_dir / "jobs"
    state.store = JobStore(state.data_dir / "jobs.sqlite3")
    state.queue = JobQueue(lambda job, progress: run_job(animator, job, progress),
                           settings.max_queue, settings.workers, settings.job_ttl_s,
                           store=state.store, dump=JobInput.dump,
                           load=lambda data: JobInput.load(data, settings))
    metrics = state.metrics = Metrics(state.queue)

    def observe(job: Job) -> None:
        if job.status in FINISHED and job.started_at and job.finished_at:
            metrics.observe(job.status, job.finished_at - job.started_at, job.done)

    state.queue.on_finish = observe


def _broker_queue(state: State, settings: Settings) -> None:
    """Jobs go to Redis for ``fomm worker`` processes; their files to shared storage."""
    from fomm.app.broker import BrokerJobs
    from fomm.app.storage import DirectoryStorage, open_storage

    storage = state.storage = open_storage(settings.storage, state.data_dir)
    # uploads land where the workers read them, or in a local folder before going to S3
    local = isinstance(storage, DirectoryStorage)
    state.jobs_dir = storage.root if local else state.data_dir / "uploads"
    state.queue = BrokerJobs(settings.broker, storage, settings.max_queue, settings.job_ttl_s,
                             settings.job_timeout_s)
    state.metrics = Metrics(state.queue)
    state.queue.on_observe = state.metrics.observe


@asynccontextmanager
async def _lifespan(app: FastAPI):
    state = app.state
    state.jobs_dir.mkdir(parents=True, exist_ok=True)
    state.queue.start()  # reads the jobs of an earlier run from the store
    if state.settings.broker is None:  # with a broker the folder is shared: others' uploads
        for folder in state.jobs_dir.iterdir():  # uploads cut short by a stop: no job owns them
            if state.queue.get(folder.name) is None:
                shutil.rmtree(folder, ignore_errors=True)
    try:
        yield
    finally:
        await run_in_threadpool(state.queue.stop, state.settings.shutdown_grace_s)
        if state.store is not None:
            state.store.close()
        if state.owned:
            shutil.rmtree(state.data_dir, ignore_errors=True)
