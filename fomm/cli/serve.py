"""The ``fomm serve`` subcommand: the web page and HTTP API on one machine, or in front of a
broker."""

from __future__ import annotations

import argparse
import os

from fomm.app.serve import server_options
from fomm.cli.argtypes import positive_float, positive_int
from fomm.errors import FommError


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``fomm serve`` to the CLI."""
    from fomm.cli.main import add_model_arguments

    p = subparsers.add_parser(
        "serve", help="web page and HTTP API: upload a photo and a clip, get the video",
        description="Serve the web page at / and the HTTP API under /v1 (docs at /docs with "
                    "--docs). The model is loaded once; jobs run one at a time per worker "
                    "from a bounded queue, kept in <data-dir>/jobs.sqlite3 across restarts. "
                    "Give --token (or FOMM_TOKEN) before listening beyond loopback.")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    safety = p.add_argument_group("access")
    safety.add_argument("--token", default=os.environ.get("FOMM_TOKEN"),
                        help="every API call needs 'Authorization: Bearer TOKEN' (default: the "
                             "FOMM_TOKEN environment variable; the page asks for it once)")
    safety.add_argument("--insecure", action="store_true",
                        help="allow a non-loopback --host without a token")
    safety.add_argument("--allowed-host", action="append", default=[], metavar="NAME",
                        help="a Host name the server answers to besides the bind address and "
                             "localhost (a DNS name, a proxy's); repeatable")
    safety.add_argument("--docs", action="store_true",
                        help="serve the API docs at /docs (their page loads scripts from a CDN)")
    add_model_arguments(p)
    run = add_run_arguments(p)
    run.add_argument("--workers", type=positive_int, default=1,
                     help="jobs run at once, sharing the one model (default 1)")
    run.add_argument("--max-queue", type=int, default=8,
                     help="jobs that may wait besides the running ones; more get 503 (default 8)")
    limits = p.add_argument_group("uploads and files")
    limits.add_argument("--data-dir", metavar="DIR",
                        help="server-owned folder for uploads and results (default: a temporary "
                             "folder, removed at exit); jobs.sqlite3 and jobs/ there keep the "
                             "jobs across restarts")
    limits.add_argument("--max-image-mb", type=positive_float, default=20)
    limits.add_argument("--max-video-mb", type=positive_float, default=500)
    limits.add_argument("--max-duration-s", type=positive_float, default=300,
                        help="longest driving video accepted, in seconds (default 300)")
    limits.add_argument("--max-resolution", type=positive_int, default=4096,
                        help="largest width or height of an upload, in pixels (default 4096)")
    limits.add_argument("--job-ttl-s", type=positive_float, default=3600,
                        help="finished jobs and their files are deleted after this (default 3600)")
    limits.add_argument("--shutdown-grace-s", type=float, default=30,
                        help="at shutdown, how long a running job may still take (default 30)")
    limits.add_argument("--header-timeout-s", type=positive_float, default=10,
                        help="a connection must send its request headers within this "
                             "(default 10; slower clients are cut off)")
    limits.add_argument("--upload-min-rate-kib", type=float, default=16, metavar="KIB_S",
                        help="an upload slower than this many KiB/s on average, after its "
                             "first 10 s, is cut with 408 (default 16; 0: no minimum)")
    limits.add_argument("--upload-deadline-s", type=positive_float, default=1800,
                        help="the longest an upload's body may take (default 1800)")
    limits.add_argument("--min-free-mb", type=float, default=512,
                        help="disk space kept free in --data-dir for results: an upload that "
                             "would leave less gets 507, and /healthz says degraded "
                             "(default 512)")
    live = p.add_argument_group("live page")
    live.add_argument("--live-photo-s", type=positive_float, default=25,
                      help="a live session must send its photo within this (default 25)")
    live.add_argument("--live-idle-s", type=positive_float, default=25,
                      help="a live session that sends nothing for this long is closed, "
                           "freeing the model for the next (default 25)")
    live.add_argument("--live-session-s", type=positive_float,
                      help="the longest a live session may last (default: no limit)")
    live.add_argument("--live-max-fps", type=positive_float, default=30,
                      help="messages a live session may send a second; a faster sender "
                           "is read no faster (default 30)")
    scale = p.add_argument_group("several machines")
    scale.add_argument("--broker", metavar="URL", default=os.environ.get("FOMM_BROKER"),
                       help="Redis URL (redis://HOST:PORT/DB): queue jobs there for 'fomm "
                            "worker' processes instead of running them here; no model is "
                            "loaded here, --workers is ignored (default: FOMM_BROKER)")
    scale.add_argument("--storage", metavar="s3://BUCKET/PREFIX",
                       help="with --broker: object storage the workers share (boto3; endpoint "
                            "and keys from AWS_* variables); default: <data-dir>/jobs, which "
                            "must then be a folder the workers see")
    scale.add_argument("--job-timeout-s", type=positive_float, default=3600,
                       help="with --broker: a job running longer fails (default 3600)")
    p.add_argument("--log-level", default="info",
                   choices=["critical", "error", "warning", "info", "debug"])
    p.set_defaults(func=cmd_serve)


def add_run_arguments(p: argparse.ArgumentParser) -> argparse._ArgumentGroup:
    """The "run" group shared by ``fomm serve`` and ``fomm worker``: device, precision, backend,
    batch."""
    run = p.add_argument_group("run")
    run.add_argument("--device", default="auto", help="auto (default), cpu, cuda, cuda:N or mps")
    run.add_argument("--precision", choices=["auto", "fp32", "fp16", "bf16"], default="auto",
                     help="as for fomm animate: auto (default) is bf16 islands on OpenVINO on a "
                          "CPU with native bf16 (AVX512-BF16/AMX) where a probe of the model "
                          "stays within 1/255 of fp32, else fp32; fp16/bf16 autocast on a GPU")
    run.add_argument("--backend", choices=["auto", "torch", "onnx", "openvino"],
                     help="as for fomm animate: where the networks run (default: $FOMM_BACKEND, "
                          "else auto)")
    run.add_argument("--batch-size", type=positive_int, default=8,
                     help="driving frames per network call (default 8)")
    return run


def cmd_serve(args: argparse.Namespace) -> None:
    try:
        import uvicorn

        from fomm.app.api import Settings, create_app
    except ImportError as err:
        raise FommError(f"fomm serve needs the web extras ({err.name} is missing): "
                        "pip install 'fomm[serve]'") from err
    from fomm.app.guard import LOOPBACK, check_token

    if args.max_queue < 0:
        raise FommError("--max-queue must be 0 or more")
    if args.upload_min_rate_kib < 0 or args.min_free_mb < 0:
        raise FommError("--upload-min-rate-kib and --min-free-mb must be 0 or more")
    if args.broker and not args.data_dir:
        raise FommError("--broker needs --data-dir: uploads are kept there (with the default "
                        "storage, a folder the workers see too)")
    if args.storage and not args.broker:
        raise FommError("--storage is for --broker (the embedded queue keeps files in "
                        "--data-dir)")
    if args.token:
        try:
            check_token(args.token)
        except ValueError as err:
            raise FommError(f"--token: {err}") from err
    elif args.host not in LOOPBACK and not args.insecure:
        raise FommError(f"--host {args.host} is reachable from other machines: give --token "
                        "(or FOMM_TOKEN), or --insecure to serve without one")
    settings = Settings(
        checkpoint=args.checkpoint, config=args.config, flavour=args.flavour, device=args.device,
        precision=args.precision, backend=args.backend, batch_size=args.batch_size,
        max_queue=args.max_queue,
        workers=args.workers, data_dir=args.data_dir, max_image_mb=args.max_image_mb,
        max_video_mb=args.max_video_mb, max_duration_s=args.max_duration_s,
        max_resolution=args.max_resolution, job_ttl_s=args.job_ttl_s,
        shutdown_grace_s=args.shutdown_grace_s, host=args.host,
        allowed_hosts=tuple(args.allowed_host), token=args.token or None, docs=args.docs,
        broker=args.broker or None, storage=args.storage, job_timeout_s=args.job_timeout_s,
        header_timeout_s=args.header_timeout_s, upload_min_rate_kib=args.upload_min_rate_kib,
        upload_deadline_s=args.upload_deadline_s, min_free_mb=args.min_free_mb,
        live_photo_s=args.live_photo_s, live_idle_s=args.live_idle_s,
        live_session_s=args.live_session_s, live_max_fps=args.live_max_fps)
    app = create_app(settings)
    if args.host not in LOOPBACK and not args.token:
        print(f"warning: listening on {args.host} without a token (--insecure)")
    docs = " (API docs at /docs)" if args.docs else ""
    print(f"fomm serve: http://{args.host}:{args.port}/{docs}", flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level,
                timeout_graceful_shutdown=max(5, int(args.shutdown_grace_s) + 5),
                **server_options(settings))
