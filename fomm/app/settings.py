"""How ``fomm serve`` and ``fomm worker`` run: the model, the queue, where files go, what uploads
may be (one frozen dataclass, built from the command line)."""

from __future__ import annotations

from dataclasses import dataclass


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
    live_photo_s: float = 25  # a live session must send its photo within this
    live_idle_s: float = 25  # a live session that sends nothing for this long is closed
    live_session_s: float | None = None  # the longest a live session may last (None: no limit)
    live_max_fps: float = 30  # camera frames a live session may send a second
