"""The API's response bodies as pydantic models (what ``/docs`` and ``/openapi.json`` show)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from fomm.app.jobs import Status


class ErrorDetail(BaseModel):
    code: str = Field(description="what went wrong, for programs (e.g. busy, invalid_option)")
    message: str = Field(description="what went wrong, in a sentence")


class ErrorBody(BaseModel):
    """Every error: a 4xx the client can act on (5xx: the server's trouble)."""

    error: ErrorDetail


class Progress(BaseModel):
    done: int = Field(description="driving frames animated so far")
    total: int | None = Field(description="driving frames in all, when known")


class AnimationResult(BaseModel):
    frames: int
    fps: float
    width: int
    height: int
    faces: int = Field(description="faces animated (0: the whole image was animated)")


class AnimationState(BaseModel):
    """An animation's state: queued, running, then succeeded, failed or cancelled."""

    id: str
    status: Status
    progress: Progress
    error: str | None = Field(description="why it failed or was cancelled")
    result: AnimationResult | None = Field(description="the result's size, once it succeeded")
    created_at: float = Field(description="Unix time")
    started_at: float | None
    finished_at: float | None


class Links(BaseModel):
    status_url: str = Field(description="GET: this state; DELETE: cancel and delete")
    result_url: str = Field(description="GET: the video (H.264 MP4), once succeeded")


class Animation(Links, AnimationState):
    """An animation's state and where to find it."""


class Queued(Links):
    """A new animation, queued."""

    id: str
    status: Status


class Deleted(AnimationState):
    """The animation's state after the delete (cancelled, or forgotten when finished)."""

    deleted: Literal[True]


class Examples(BaseModel):
    source_url: str
    driving_url: str


class Check(BaseModel):
    ok: bool
    kind: str | None = Field(None, description="redis; directory or s3 (with the token)")


class StorageCheck(Check):
    free_mb: int | None = Field(None, description="free disk where results go (with the token)")
    min_free_mb: float | None = Field(None, description="below this, uploads get 507")


class QueueStats(BaseModel):
    queued: int
    running: int
    max_queue: int
    workers: int


class ModelInfo(BaseModel):
    architecture: str
    image_size: int
    num_kp: int
    device: str


class Health(BaseModel):
    """``ok`` or ``degraded`` (503). Without the token only ``ok`` of each check is shown."""

    status: Literal["ok", "degraded"]
    version: str | None = None
    storage: StorageCheck
    broker: Check | None = Field(None, description="with --broker")
    queue: QueueStats | None = None
    model: ModelInfo | None = Field(None, description="the model loaded here (none with a broker)")


UPLOAD_ERRORS = (400, 408, 413, 415, 422)  # a bad form or file, too big, too slow


def errors(*statuses: int) -> dict[int | str, dict]:
    """``responses=`` for a route that answers these statuses with an :class:`ErrorBody`."""
    return {status: {"model": ErrorBody} for status in statuses}
