"""The ``fomm worker`` subcommand: run the jobs of ``fomm serve --broker``."""

from __future__ import annotations

import argparse
import os

from fomm.app.worker import cmd_worker
from fomm.cli.argtypes import positive_float


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``fomm worker`` to the CLI."""
    from fomm.cli.main import add_model_arguments
    from fomm.cli.serve import add_run_arguments

    p = subparsers.add_parser(
        "worker", help="run the jobs of 'fomm serve --broker' (any machine that sees the broker)",
        description="Take animation jobs from the Redis broker that 'fomm serve --broker' feeds "
                    "and run them, one at a time, with one model loaded at start. Needs the "
                    "same storage as the API: the same --data-dir (a shared filesystem) or the "
                    "same --storage s3://BUCKET/PREFIX.")
    p.add_argument("--broker", required=not os.environ.get("FOMM_BROKER"), metavar="URL",
                   default=os.environ.get("FOMM_BROKER"),
                   help="Redis URL, redis://HOST:PORT/DB (default: FOMM_BROKER)")
    p.add_argument("--data-dir", required=True, metavar="DIR",
                   help="the API's --data-dir (jobs/ there holds the files) or, with "
                        "--storage s3://..., a local scratch folder")
    p.add_argument("--storage", metavar="s3://BUCKET/PREFIX",
                   help="object storage shared with the API (default: <data-dir>/jobs)")
    add_model_arguments(p)
    run = add_run_arguments(p)
    run.add_argument("--heartbeat-s", type=positive_float, default=10,
                     help="how often the worker says it is alive; a job whose worker is silent "
                          "for 3x this is given to another worker (default 10)")
    run.add_argument("--name", help="worker name in logs and metrics (default host:pid)")
    p.add_argument("--log-level", default="info",
                   choices=["critical", "error", "warning", "info", "debug"])
    p.set_defaults(func=cmd_worker)
