"""``/v1/preview``: one frame, fast, for the page's sliders
(:class:`fomm.app.preview.Previewer`)."""

from __future__ import annotations

import tempfile
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from fomm.app.animation import parse_options, public_message
from fomm.app.fields import form_schema
from fomm.app.routes.deps import IntakeDep, PreviewerDep, SettingsDep
from fomm.app.routes.schemas import UPLOAD_ERRORS, errors
from fomm.app.uploads import UploadError, check_image, read_form
from fomm.errors import FommError

router = APIRouter(tags=["animations"])
FILES = {"source": "the still image",
         "driving_frame": "one driving frame (image); none: the photo itself with the expression "
                          "sliders",
         "reference_frame": "the driving frame whose pose and expression count as the photo's "
                            "(default: driving_frame)"}


@router.post("/v1/preview", response_class=Response,
             responses={200: {"content": {"image/jpeg": {}}}, **errors(*UPLOAD_ERRORS, 404)},
             openapi_extra=form_schema(FILES, required=("source",)),
             summary="One frame, fast: the photo animated by one driving frame (JPEG)")
async def preview(request: Request, settings: SettingsDep, intake: IntakeDep,
                  previewer: PreviewerDep) -> Response:
    limits = dict.fromkeys(FILES, intake.limits["source"])  # images, all of them
    with tempfile.TemporaryDirectory(dir=intake.scratch) as tmp:
        form = await read_form(request.headers.get("content-type", ""),
                               request.headers.get("content-length"), request.stream(),
                               Path(tmp), limits, pace=intake.pace)
        options = parse_options(form.fields, settings)
        if "source" not in form.files:
            raise UploadError(400, "missing_file", "the form has no 'source' file")
        async with intake.checking:
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
