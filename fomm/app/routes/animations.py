"""``/v1/animations``: upload a photo and a driving video (checked while they stream in), follow
the job, fetch the video, cancel."""

from __future__ import annotations

import logging
import shutil
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect

from fomm.app.animation import JobInput, parse_options
from fomm.app.fields import form_schema
from fomm.app.jobs import Job, QueueFull, new_job_id
from fomm.app.routes.deps import (
    NOT_FOUND,
    Intake,
    IntakeDep,
    QueueDep,
    SettingsDep,
    StorageDep,
)
from fomm.app.routes.errors import error_response
from fomm.app.routes.schemas import UPLOAD_ERRORS, Animation, Deleted, Queued, errors
from fomm.app.settings import Settings
from fomm.app.uploads import UploadError, check_image, check_video, read_form

log = logging.getLogger("fomm.serve")
router = APIRouter(prefix="/v1/animations", tags=["animations"])
FILES = {"source": "the still image", "driving": "the driving video"}


def found(state: Any) -> Any:
    """``state`` (a job, or its state), or a 404 when it is None."""
    if state is None:
        raise HTTPException(404, NOT_FOUND)
    return state


def links(job_id: str, state: dict[str, Any]) -> dict[str, Any]:
    """``state`` with the job's status and result URLs."""
    base = f"{router.prefix}/{job_id}"
    return {**state, "status_url": base, "result_url": f"{base}/result.mp4"}


@router.post("", status_code=202, response_model=Queued,
             responses=errors(*UPLOAD_ERRORS, 503, 507),
             openapi_extra=form_schema(FILES, required=tuple(FILES)),
             summary="Upload a source image and a driving video; queue an animation")
async def create_animation(request: Request, settings: SettingsDep, queue: QueueDep,
                           intake: IntakeDep) -> JSONResponse:
    await run_in_threadpool(queue.check_room)  # refuse before reading a large body when full
    length = request.headers.get("content-length", "")
    await run_in_threadpool(intake.disk.check, int(length) if length.isdigit() else 0)
    if intake.in_flight >= intake.most:
        raise QueueFull(5, "too many uploads in progress")
    intake.in_flight += 1
    try:
        return await _receive(request, settings, queue, intake)
    except ClientDisconnect:
        log.info("upload from %s aborted by the client",
                 request.client.host if request.client else "?")
        return error_response(400, "aborted", "the upload was aborted")
    finally:
        intake.in_flight -= 1


async def _receive(request: Request, settings: Settings, queue: Any,
                   intake: Intake) -> JSONResponse:
    """Read and check the form into a new job's folder, then queue it (nothing stays on error)."""
    job_id = new_job_id()
    folder = intake.folder / job_id
    folder.mkdir(parents=True)
    try:
        form = await read_form(request.headers.get("content-type", ""),
                               request.headers.get("content-length"), request.stream(),
                               folder, intake.limits, pace=intake.pace)
        options = parse_options(form.fields, settings)
        for name in FILES:
            if name not in form.files:
                raise UploadError(400, "missing_file", f"the form has no '{name}' file")
        source, driving = form.files["source"], form.files["driving"]
        names = {str(source): form.filenames["source"],
                 str(driving): form.filenames["driving"], str(folder): ""}
        async with intake.checking:
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
    body = links(job_id, {"id": job_id, "status": job.status})
    return JSONResponse(body, 202, headers={"Location": body["status_url"]})


@router.get("/{job_id}", response_model=Animation, responses=errors(404),
            summary="Status and progress of an animation")
def get_animation(job_id: str, queue: QueueDep) -> dict[str, Any]:
    return links(job_id, found(queue.snapshot(job_id)))


@router.get("/{job_id}/result.mp4", response_class=FileResponse,
            responses={200: {"content": {"video/mp4": {}}}, **errors(404, 409)},
            summary="The animated video (H.264 MP4)")
def get_result(job_id: str, settings: SettingsDep, queue: QueueDep,
               storage: StorageDep) -> Response:
    name = f"fomm-{job_id[:8]}.mp4"
    if settings.broker is not None:
        return _shared_result(queue, storage, job_id, name)
    job = found(queue.get(job_id))
    if job.status != "succeeded" or not job.output.is_file():
        return error_response(409, "not_ready", f"the animation is {job.status}, not succeeded")
    return FileResponse(job.output, media_type="video/mp4", filename=name,
                        content_disposition_type="inline")


def _shared_result(queue: Any, storage: Any, job_id: str, filename: str) -> Response:
    """The result of a broker job: the file from shared storage, or streamed from S3."""
    state = found(queue.state(job_id))
    key = state["result_key"]
    size = storage.size(key) if state["status"] == "succeeded" and key else None
    if size is None:
        return error_response(409, "not_ready",
                              f"the animation is {state['status']}, not succeeded")
    local = storage.local(key)
    if local is not None:
        return FileResponse(local, media_type="video/mp4", filename=filename,
                            content_disposition_type="inline")
    return StreamingResponse(storage.stream(key), media_type="video/mp4",
                             headers={"content-length": str(size),
                                      "content-disposition": f'inline; filename="{filename}"'})


@router.delete("/{job_id}", response_model=Deleted, responses=errors(404),
               summary="Cancel an animation and delete its files")
def delete_animation(job_id: str, queue: QueueDep) -> dict[str, Any]:
    return found(queue.delete(job_id))
