"""A local static server for a built site, with (or without) the cross-origin isolation headers.

For trying a site on this machine, tests and benchmarks; any static host serves the site as well
(see :data:`fomm.web.site.HEADERS`).
"""

from __future__ import annotations

import contextlib
import functools
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from fomm.web.site import HEADERS

TYPES = {".mjs": "text/javascript", ".js": "text/javascript", ".wasm": "application/wasm",
         ".onnx": "application/octet-stream", ".json": "application/json"}


class SiteHandler(SimpleHTTPRequestHandler):
    """Static files with the isolation headers (``isolated``) and no request logging."""

    isolated = True
    extensions_map = {**SimpleHTTPRequestHandler.extensions_map, **TYPES}

    def end_headers(self) -> None:
        if self.isolated:
            for name, value in HEADERS.items():
                self.send_header(name, value)
        self.send_header("Cache-Control", "no-cache")
        super().end_headers()

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass


@contextlib.contextmanager
def serve_site(folder: str | Path, host: str = "127.0.0.1", port: int = 0,
               isolated: bool = True) -> Iterator[str]:
    """Serve ``folder`` on a background thread; yields its URL (``http://host:port/``)."""
    handler = type("Handler", (SiteHandler,), {"isolated": isolated})
    server = ThreadingHTTPServer((host, port), functools.partial(handler, directory=str(folder)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://{host}:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def main() -> None:
    """``python -m fomm.web.serve DIR [--port 8000] [--host 127.0.0.1]``: try a built site."""
    import argparse
    import time

    parser = argparse.ArgumentParser(prog="python -m fomm.web.serve", description=main.__doc__)
    parser.add_argument("folder", help="a site written by fomm export-web")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args()
    with serve_site(args.folder, args.host, args.port) as url:
        print(f"serving {args.folder} at {url} with the cross-origin isolation headers "
              "(Ctrl-C stops)")
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
