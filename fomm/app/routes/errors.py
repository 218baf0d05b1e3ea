"""Every error as JSON, ``{"error": {"code": "...", "message": "..."}}``, with a status the client
can act on (:class:`~fomm.app.routes.schemas.ErrorBody`)."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from fomm.app.jobs import QueueFull
from fomm.app.uploads import UploadError


def error_response(status: int, code: str, message: str,
                   headers: dict[str, str] | None = None) -> JSONResponse:
    """The JSON error body with ``status``."""
    return JSONResponse({"error": {"code": code, "message": message}}, status, headers=headers)


async def _upload_error(request: Request, err: UploadError) -> JSONResponse:
    return error_response(err.status, err.code, err.message)


async def _queue_full(request: Request, err: QueueFull) -> JSONResponse:
    return error_response(503, err.code, f"{err}; retry in {err.retry_after} s",
                          {"Retry-After": str(err.retry_after)})


async def _http_error(request: Request, err: HTTPException) -> JSONResponse:
    code = {404: "not_found", 405: "method_not_allowed"}.get(err.status_code, "http_error")
    return error_response(err.status_code, code, str(err.detail), getattr(err, "headers", None))


async def _internal_error(request: Request, err: Exception) -> JSONResponse:
    return error_response(500, "internal_error", "internal error; the server log has the details")


async def _invalid_request(request: Request, err: RequestValidationError) -> JSONResponse:
    return error_response(422, "invalid_request", "; ".join(e["msg"] for e in err.errors()))


def add_error_handlers(app: FastAPI) -> None:
    """Upload and option errors, a full queue (503 with Retry-After), HTTP errors, invalid
    requests and anything unexpected (500, details in the log) as JSON errors."""
    app.add_exception_handler(UploadError, _upload_error)
    app.add_exception_handler(QueueFull, _queue_full)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(Exception, _internal_error)
    app.add_exception_handler(RequestValidationError, _invalid_request)
