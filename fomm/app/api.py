"""The HTTP API and web page: uploads checked, then queued as jobs that run animate_file.

One model is loaded per app and shared by the worker threads. Every error is JSON:
``{"error": {"code": "...", "message": "..."}}`` with a 4xx status the client can act on.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import tempfile
import threading
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect

from fomm import __version__
from fomm.app.fields import BOOLEAN_OPTIONS, parse_field
from fomm.app.guard import AUTHORIZED, Guard
from fomm.app.jobs import FINISHED, Cancelled, Job, JobQueue, QueueFull, new_job_id
from fomm.app.metrics import CONTENT_TYPE, Metrics
from fomm.app.storage import DiskSpace
from fomm.app.store import JobStore
from fomm.app.uploads import MB, Pace, UploadError, check_image, check_video, read_form
from fomm.config import (
    ANIMATION_REGIONS,
    CROP_DRIVING_CHOICES,
    EXPRESSION_OFFSET_RANGE,
    EXPRESSION_SCALE_RANGE,
    AnimateOptions,
)
from fomm.errors import FommError

if TYPE_CHECKING:  # torch is imported only where a model runs (not by a broker's API process)
    from fomm.inference.animator import Animator

log = logging.getLogger("fomm.serve")
# CLI flags in core error messages → the form fields that do the same here
_FLAG_NAMES = {"--no-crop": 'crop=false (on the page: untick "crop the face and paste it back")',
               "--face-index": "face_index",
               "--best-frame": "best_frame",
               "--animation-region": "animation_region",
               "--expression-scale": "expression_scale",
               "--eye-openness": "eye_offset",
               "--mouth-openness": "mouth_offset",
               "--smile": "smile_offset"}


@dataclass(frozen=True)
class Settings:
    """How ``fomm serve`` runs: the model, the queue, where files go and what uploads may be."""

    checkpoint: str | None = None  # None: the bundled model
    config: str | None = None
    flavour: str | None = None
    device: str = "auto"
    precision: str = "auto"  # as fomm animate's (fomm.runtime.precision)
    backend: str | None = None  # auto, torch, onnx, openvino; None: $FOMM_BACKEND, else auto
    batch_size: int = 8
    max_queue: int = 8  # waiting jobs besides the running ones
    workers: int = 1
    data_dir: str | None = None  # None: a temporary folder removed at shutdown
    max_image_mb: float = 20
    max_video_mb: float = 500
    max_duration_s: float | None = 300
    max_resolution: int | None = 4096  # longest side, px, of the image and the video
    job_ttl_s: float = 3600
    shutdown_grace_s: float = 30
    max_checks: int = 2  # uploads decoded and checked at once (each may take memory)
    upload_idle_s: float = 30  # an upload that sends nothing for this long is cut (408)
    host: str = "127.0.0.1"  # the bind address: a Host header the server answers to
    allowed_hosts: tuple[str, ...] = ()  # more Host names (a proxy's, a DNS name)
    token: str | None = None  # bearer token every API call needs (None: none)
    docs: bool = False  # /docs and /redoc (their pages load scripts from a CDN)
    broker: str | None = None  # redis://HOST:PORT/DB: jobs go to `fomm worker`s (None: run here)
    storage: str | None = None  # with a broker: s3://BUCKET/PREFIX (None: <data_dir>/jobs)
    job_timeout_s: float = 3600  # with a broker: a run taking longer fails
    header_timeout_s: float = 10  # a connection must send its request headers within this
    upload_min_rate_kib: float = 16  # an upload slower than this on average (after 10 s) is cut
    upload_deadline_s: float | None = 1800  # the longest an upload's body may take
    min_free_mb: float = 512  # disk kept free for results: less, and uploads get 507
    live_photo_s: float = 30  # a live session must send its photo within this
    live_idle_s: float = 30  # a live session that sends nothing for this long is closed
    live_session_s: float | None = None  # the longest a live session may last (None: no limit)
    live_max_fps: float = 30  # camera frames a live session may send a second


@dataclass(frozen=True)
class JobInput:
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


def _error(status: int, code: str, message: str, headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status, headers=headers)


def public_message(message: str, names: dict[str, str]) -> str:
    """A core error message with server paths and CLI flags replaced by what the client knows."""
    for old, new in {**names, **_FLAG_NAMES}.items():
        message = message.replace(old, new)
    return message


def parse_options(fields: dict[str, str], settings: Settings) -> AnimateOptions:
    """Form fields → AnimateOptions; unknown or malformed fields are a 400, expression values
    out of range a 422."""
    values: dict[str, Any] = dict(BOOLEAN_OPTIONS)
    for key, text in fields.items():
        values[key] = parse_field(key, text)
    if values.get("best_frame") is not None and values["find_best_frame"]:
        raise UploadError(400, "invalid_option", "give best_frame or find_best_frame, not both")
    if values.get("face_index") is not None and values["multi_person"]:
        raise UploadError(400, "invalid_option", "give face_index or multi_person, not both")
    return AnimateOptions(**values, batch_size=settings.batch_size, device=settings.device,
                          precision=settings.precision, backend=settings.backend,
                          progress=False)


def run_job(animator: Animator, job: Job, on_progress) -> dict[str, Any]:
    """The worker's work: animate, then drop the inputs (the result stays until the TTL)."""
    from fomm.inference.pipeline import animate_file

    inp: JobInput = job.payload
    keep_inputs = False
    try:
        result = animate_file(inp.source, inp.driving, job.output, inp.options,
                              animator=animator, on_progress=on_progress)
    except FommError as err:
        raise FommError(public_message(str(err), inp.names)) from err
    except Cancelled:
        keep_inputs = True  # stopped by a shutdown: the job may run again after a restart
        raise
    finally:
        if not keep_inputs:
            inp.source.unlink(missing_ok=True)
            inp.driving.unlink(missing_ok=True)
    return {"frames": result.frames, "fps": result.fps, "width": result.size[0],
            "height": result.size[1], "faces": result.faces}


def _load_animator(settings: Settings) -> Animator:
    from fomm.checkpoints.loading import load_model
    from fomm.inference.animator import Animator

    models, config = load_model(settings.checkpoint, config=settings.config,
                                flavour=settings.flavour)
    return Animator(models, config, settings.device, settings.precision, settings.backend)


class _Examples:
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
    broker = settings.broker is not None
    if not broker:
        animator = animator or _load_animator(settings)
    owned = settings.data_dir is None
    data_dir = Path(tempfile.mkdtemp(prefix="fomm-serve-") if owned else settings.data_dir)
    jobs_dir = data_dir / "jobs"
    store: JobStore | None = None
    storage = None
    if broker:
        from fomm.app.broker import BrokerJobs
        from fomm.app.storage import DirectoryStorage, open_storage

        storage = open_storage(settings.storage, data_dir)
        # uploads land where the workers read them, or in a local folder before going to S3
        local = isinstance(storage, DirectoryStorage)
        jobs_dir = storage.root if local else data_dir / "uploads"
        queue = BrokerJobs(settings.broker, storage, settings.max_queue, settings.job_ttl_s,
                           settings.job_timeout_s)
        metrics = Metrics(queue)
        queue.on_observe = metrics.observe
    else:
        store = JobStore(data_dir / "jobs.sqlite3")
        queue = JobQueue(lambda job, progress: run_job(animator, job, progress),
                         settings.max_queue, settings.workers, settings.job_ttl_s, store=store,
                         dump=JobInput.dump, load=lambda data: JobInput.load(data, settings))
        metrics = Metrics(queue)

        def observe(job: Job) -> None:
            if job.status in FINISHED and job.started_at and job.finished_at:
                metrics.observe(job.status, job.finished_at - job.started_at, job.done)

        queue.on_finish = observe
    examples = _Examples(data_dir / "examples")
    disk = DiskSpace(data_dir, int(settings.min_free_mb * MB))
    pace = Pace(idle_s=settings.upload_idle_s, min_rate=settings.upload_min_rate_kib * 1024,
                deadline_s=settings.upload_deadline_s)
    limits = {"source": int(settings.max_image_mb * MB), "driving": int(settings.max_video_mb * MB)}
    static = Path(str(resources.files("fomm.app") / "static"))

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        jobs_dir.mkdir(parents=True, exist_ok=True)
        queue.start()  # reads the jobs of an earlier run from the store
        if not broker:  # with a broker the folder is shared: other servers' uploads are there
            for folder in jobs_dir.iterdir():  # uploads cut short by a stop: no job owns them
                if queue.get(folder.name) is None:
                    shutil.rmtree(folder, ignore_errors=True)
        try:
            yield
        finally:
            await run_in_threadpool(queue.stop, settings.shutdown_grace_s)
            if store is not None:
                store.close()
            if owned:
                shutil.rmtree(data_dir, ignore_errors=True)

    app = FastAPI(title="fomm", version=__version__, lifespan=lifespan,
                  description="Animate a still image with the motion of a driving video.",
                  docs_url="/docs" if settings.docs else None,
                  redoc_url="/redoc" if settings.docs else None)
    app.add_middleware(Guard, bind=settings.host, allowed_hosts=settings.allowed_hosts,
                       token=settings.token)
    app.state.settings, app.state.queue, app.state.animator = settings, queue, animator
    app.state.storage = storage

    @app.exception_handler(UploadError)
    async def upload_error(request: Request, err: UploadError) -> JSONResponse:
        return _error(err.status, err.code, err.message)

    @app.exception_handler(QueueFull)
    async def queue_full(request: Request, err: QueueFull) -> JSONResponse:
        return _error(503, err.code, f"{err}; retry in {err.retry_after} s",
                      {"Retry-After": str(err.retry_after)})

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, err: HTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(err.status_code, "http_error")
        return _error(err.status_code, code, str(err.detail), getattr(err, "headers", None))

    @app.exception_handler(Exception)
    async def internal_error(request: Request, err: Exception) -> JSONResponse:
        return _error(500, "internal_error", "internal error; the server log has the details")

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, err: RequestValidationError) -> JSONResponse:
        return _error(422, "invalid_request", "; ".join(e["msg"] for e in err.errors()))

    def job_or_404(job_id: str) -> Job:
        job = queue.get(job_id)
        if job is None:
            raise HTTPException(404, "no such animation (unknown id, deleted, or expired)")
        return job

    def describe(job_id: str, state: dict[str, Any]) -> dict[str, Any]:
        base = f"/v1/animations/{job_id}"
        return {**state, "status_url": base, "result_url": f"{base}/result.mp4"}

    checking = asyncio.Semaphore(settings.max_checks)
    uploads = {"in_flight": 0}  # bodies being received now: at most the queue's room

    @app.post("/v1/animations", status_code=202, openapi_extra=_FORM_SCHEMA,
              summary="Upload a source image and a driving video; queue an animation")
    async def create_animation(request: Request) -> JSONResponse:
        await run_in_threadpool(queue.check_room)  # refuse before reading a large body when full
        length = request.headers.get("content-length", "")
        await run_in_threadpool(disk.check, int(length) if length.isdigit() else 0)
        if uploads["in_flight"] >= settings.max_queue + settings.workers:
            raise QueueFull(5, "too many uploads in progress")
        uploads["in_flight"] += 1
        try:
            return await _create_animation(request)
        except ClientDisconnect:
            log.info("upload from %s aborted by the client",
                     request.client.host if request.client else "?")
            return _error(400, "aborted", "the upload was aborted")
        finally:
            uploads["in_flight"] -= 1

    async def _create_animation(request: Request) -> JSONResponse:
        job_id = new_job_id()
        folder = jobs_dir / job_id
        folder.mkdir(parents=True)
        try:
            form = await read_form(request.headers.get("content-type", ""),
                                   request.headers.get("content-length"), request.stream(),
                                   folder, limits, pace=pace)
            options = parse_options(form.fields, settings)
            for name in limits:
                if name not in form.files:
                    raise UploadError(400, "missing_file", f"the form has no '{name}' file")
            source, driving = form.files["source"], form.files["driving"]
            names = {str(source): form.filenames["source"],
                     str(driving): form.filenames["driving"], str(folder): ""}
            async with checking:
                await run_in_threadpool(check_image, source, names[str(source)],
                                        settings.max_resolution)
                info = await run_in_threadpool(check_video, driving, names[str(driving)],
                                               settings.max_resolution, settings.max_duration_s)
            if options.best_frame is not None and info.num_frames is not None \
                    and options.best_frame >= info.num_frames:
                raise UploadError(422, "invalid_option", f"best_frame {options.best_frame} is "
                                  f"out of range: the video has {info.num_frames} frames")
            job = Job(job_id, folder, JobInput(source, driving, options, names, form.fields),
                      total=info.num_frames)
            await run_in_threadpool(queue.submit, job)
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        body = describe(job_id, {"id": job_id, "status": job.status})
        return JSONResponse(body, 202, headers={"Location": body["status_url"]})

    @app.get("/v1/animations/{job_id}", summary="Status and progress of an animation")
    def get_animation(job_id: str) -> dict[str, Any]:
        state = queue.snapshot(job_id)
        if state is None:
            raise HTTPException(404, "no such animation (unknown id, deleted, or expired)")
        return describe(job_id, state)

    @app.get("/v1/animations/{job_id}/result.mp4", summary="The animated video (H.264 MP4)",
             response_class=FileResponse)
    def get_result(job_id: str):
        name = f"fomm-{job_id[:8]}.mp4"
        if broker:
            return _broker_result(queue, storage, job_id, name)
        job = job_or_404(job_id)
        if job.status != "succeeded" or not job.output.is_file():
            return _error(409, "not_ready", f"the animation is {job.status}, not succeeded")
        return FileResponse(job.output, media_type="video/mp4",
                            filename=name, content_disposition_type="inline")

    @app.delete("/v1/animations/{job_id}", summary="Cancel an animation and delete its files")
    def delete_animation(job_id: str) -> dict[str, Any]:
        state = queue.delete(job_id)
        if state is None:
            raise HTTPException(404, "no such animation (unknown id, deleted, or expired)")
        return state

    @app.get("/healthz", summary="Liveness: broker and storage (details with the token)")
    def healthz(request: Request) -> JSONResponse:
        checks: dict[str, dict[str, Any]] = {}
        if broker:
            checks["broker"] = {"kind": "redis", "ok": queue.ping()}
            checks["storage"] = {"kind": storage.kind, "ok": storage.ping() and disk.ok()}
        else:
            checks["storage"] = {"kind": "directory",
                                 "ok": store.ping() and jobs_dir.is_dir() and disk.ok()}
        free = disk.free()
        checks["storage"]["free_mb"] = None if free is None else round(free / MB)
        checks["storage"]["min_free_mb"] = settings.min_free_mb
        ok = all(check["ok"] for check in checks.values())
        body: dict[str, Any] = {"status": "ok" if ok else "degraded"}
        if not request.scope.get(AUTHORIZED, True):  # no token given: up or not, nothing more
            body.update({name: {"ok": check["ok"]} for name, check in checks.items()})
            return JSONResponse(body, 200 if ok else 503)
        body.update({"version": __version__, **checks})
        body["queue"] = queue.stats() if ok or not broker else None
        if animator is not None:
            cfg = animator.config
            body["model"] = {"architecture": cfg.architecture, "image_size": cfg.image_size,
                             "num_kp": cfg.num_kp, "device": str(animator.device)}
        return JSONResponse(body, 200 if ok else 503)

    @app.get("/metrics", summary="Prometheus metrics", response_class=Response)
    def get_metrics() -> Response:
        return Response(metrics.render(), media_type=CONTENT_TYPE)

    @app.get("/v1/examples", summary="URLs of built-in example inputs (404 when none)")
    def list_examples() -> dict[str, str]:
        if examples.paths() is None:
            raise HTTPException(404, "this install has no built-in example inputs")
        return {"source_url": "/v1/examples/source.png", "driving_url": "/v1/examples/driving.mp4"}

    @app.get("/v1/examples/{name}", summary="A built-in example input",
             response_class=FileResponse)
    def get_example(name: str):
        paths = examples.paths()
        which = {"source.png": 0, "driving.mp4": 1}.get(name)
        if paths is None or which is None:
            raise HTTPException(404, f"no example '{name}'")
        return FileResponse(paths[which])

    previewer = None
    if animator is not None:  # with a broker no model is loaded here: no previews
        from fomm.app.preview import Previewer

        previewer = Previewer(animator)
    preview_limits = {name: limits["source"] for name in PREVIEW_FILES}

    @app.post("/v1/preview", openapi_extra=_PREVIEW_SCHEMA, response_class=Response,
              summary="One frame, fast: the photo animated by one driving frame (JPEG)")
    async def preview(request: Request) -> Response:
        if previewer is None:
            raise HTTPException(404, "this server runs jobs on workers: no preview here")
        with tempfile.TemporaryDirectory(dir=data_dir) as tmp:
            form = await read_form(request.headers.get("content-type", ""),
                                   request.headers.get("content-length"), request.stream(),
                                   Path(tmp), preview_limits, pace=pace)
            options = parse_options(form.fields, settings)
            if "source" not in form.files:
                raise UploadError(400, "missing_file", "the form has no 'source' file")
            async with checking:
                for name, path in form.files.items():
                    await run_in_threadpool(check_image, path, form.filenames[name],
                                            settings.max_resolution)
            files = form.files
            try:
                jpeg = await run_in_threadpool(previewer.render, files["source"],
                                               files.get("driving_frame"),
                                               files.get("reference_frame"), options)
            except FommError as err:
                names = {str(path): form.filenames[name] for name, path in files.items()}
                raise UploadError(422, "cannot_preview", public_message(str(err), names)) from err
        return Response(jpeg, media_type="image/jpeg")

    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(static / "index.html", media_type="text/html")

    if animator is not None:  # with a broker no model is loaded here: no live page
        from fomm.app.live import LiveLimits, add_live_routes

        add_live_routes(app, animator, AnimateOptions(device=settings.device,
                                                      precision=settings.precision,
                                                      backend=settings.backend,
                                                      progress=False),
                        LiveLimits(settings.max_resolution, settings.live_photo_s,
                                   settings.live_idle_s, settings.live_session_s,
                                   settings.live_max_fps))
    app.mount("/static", StaticFiles(directory=static), name="static")
    return app


def _broker_result(queue, storage, job_id: str, filename: str) -> Response:
    """The result of a broker job: the file from shared storage, or streamed from S3."""
    state = queue.state(job_id)
    if state is None:
        raise HTTPException(404, "no such animation (unknown id, deleted, or expired)")
    key = state["result_key"]
    size = storage.size(key) if state["status"] == "succeeded" and key else None
    if size is None:
        return _error(409, "not_ready", f"the animation is {state['status']}, not succeeded")
    local = storage.local(key)
    if local is not None:
        return FileResponse(local, media_type="video/mp4", filename=filename,
                            content_disposition_type="inline")
    return StreamingResponse(storage.stream(key), media_type="video/mp4",
                             headers={"content-length": str(size),
                                      "content-disposition": f'inline; filename="{filename}"'})


PREVIEW_FILES = ("source", "driving_frame", "reference_frame")

_FORM_SCHEMA = {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
    "type": "object", "required": ["source", "driving"],
    "properties": {
        "source": {"type": "string", "format": "binary", "description": "the still image"},
        "driving": {"type": "string", "format": "binary", "description": "the driving video"},
        "relative": {"type": "boolean", "default": True,
                     "description": "relative motion (false: absolute keypoint positions)"},
        "adapt_scale": {"type": "boolean", "default": False},
        "crop": {"type": "boolean", "default": True,
                 "description": "crop the source's face and paste it back (false: whole image)"},
        "crop_driving": {"type": "string", "enum": list(CROP_DRIVING_CHOICES), "default": "auto",
                         "description": "frame the driving video's face: auto (when the source "
                                        "face is cropped), on, off (whole frame)"},
        "detail": {"type": "boolean", "default": True,
                   "description": "render the face at the photo's resolution (false: the "
                                  "model-size result scaled up)"},
        "face_index": {"type": "integer", "minimum": 0},
        "multi_person": {"type": "boolean", "default": False},
        "best_frame": {"type": "integer", "minimum": 0},
        "find_best_frame": {"type": "boolean", "default": False},
        "audio": {"type": "boolean", "default": True},
        "expression": {"type": "boolean", "default": True,
                       "description": "render the driver's eye, brow and mouth shapes on the "
                                      "face (needs crop)"},
        "animation_region": {"type": "string", "enum": list(ANIMATION_REGIONS), "default": "all",
                             "description": "what moves: all (head and expression), pose (the "
                                            "head only), expression, eyes or lips (that part of "
                                            "the face on the still photo)"},
        "expression_scale": {"type": "number", "minimum": EXPRESSION_SCALE_RANGE[0],
                             "maximum": EXPRESSION_SCALE_RANGE[1], "default": 1.0,
                             "description": "strength of the driver's expression"},
        **{name: {"type": "number", "minimum": EXPRESSION_OFFSET_RANGE[0],
                  "maximum": EXPRESSION_OFFSET_RANGE[1], "default": 0.0, "description": text}
           for name, text in (("eye_offset", "eyes more open (+) or closed (-)"),
                              ("mouth_offset", "mouth more open (+) or closed (-)"),
                              ("smile_offset", "mouth corners up (+) or down (-)"))},
    }}}}}}
_OPTION_SCHEMA = {name: value for name, value in _FORM_SCHEMA["requestBody"]["content"][
    "multipart/form-data"]["schema"]["properties"].items() if name not in ("source", "driving")}
_PREVIEW_SCHEMA = {"requestBody": {"required": True, "content": {"multipart/form-data": {
    "schema": {"type": "object", "required": ["source"], "properties": {
        "source": {"type": "string", "format": "binary", "description": "the still image"},
        "driving_frame": {"type": "string", "format": "binary",
                          "description": "one driving frame (image); none: the photo itself "
                                         "with the expression sliders"},
        "reference_frame": {"type": "string", "format": "binary",
                            "description": "the driving frame whose pose and expression count "
                                           "as the photo's (default: driving_frame)"},
        **_OPTION_SCHEMA}}}}}}
