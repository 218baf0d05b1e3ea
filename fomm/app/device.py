"""The on-device page at ``/device/``: :mod:`fomm.web`'s browser site, served by ``fomm serve``.

The page animates in the visitor's browser (onnxruntime-web), so it costs this server nothing but
the files; the server-side live page (``/static/live.html``) stays as the fallback for browsers
without WebAssembly. Every response carries the cross-origin isolation headers
(:data:`fomm.web.site.HEADERS`) that let the page run WASM on several threads.

The site is the folder in ``$FOMM_DEVICE_SITE`` (written by ``fomm export-web``) or, without it,
one built on the first request into the cache (``$FOMM_CACHE/web/<key>``, the key naming the
checkpoint, fomm's version and the page's files), which takes about a minute once.
"""

from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path

from fastapi import APIRouter, HTTPException
from fastapi.responses import FileResponse, RedirectResponse

from fomm.web.site import HEADERS, STATIC

SITE_ENV = "FOMM_DEVICE_SITE"
TYPES = {".mjs": "text/javascript", ".js": "text/javascript", ".wasm": "application/wasm",
         ".onnx": "application/octet-stream", ".json": "application/json",
         ".html": "text/html", ".css": "text/css", ".txt": "text/plain"}


class _Site:
    """The site's folder, built once on first use (thread-safe)."""

    def __init__(self, checkpoint: str | None, folder: Path | None) -> None:
        self.checkpoint, self.folder = checkpoint, folder
        self._lock = threading.Lock()

    def _key(self) -> str:
        from fomm import __version__
        from fomm.web import vendor

        digest = hashlib.sha256(f"{__version__} {vendor.VERSION} {self.checkpoint}".encode())
        if self.checkpoint is not None and Path(self.checkpoint).is_file():
            stat = Path(self.checkpoint).stat()
            digest.update(f"{stat.st_size} {stat.st_mtime_ns}".encode())
        for path in sorted(STATIC.rglob("*")):
            if path.is_file() and "node_modules" not in path.parts:
                digest.update(path.relative_to(STATIC).as_posix().encode())
                digest.update(path.read_bytes())
        return digest.hexdigest()[:16]

    def root(self) -> Path:
        with self._lock:
            if self.folder is None:
                from fomm.runtime.graphs import cache_folder

                folder = cache_folder("web") / self._key()
                if not (folder / "site.json").is_file():
                    from fomm.web import build_site

                    build_site(folder, checkpoint=self.checkpoint)
                self.folder = folder
            return self.folder


def device_router(checkpoint: str | None = None, site: str | Path | None = None) -> APIRouter:
    """Routes serving the on-device page and its files under ``/device/``.

    Args:
        checkpoint: the face model the page animates with (None: the bundled model).
        site: a folder written by ``fomm export-web``; default ``$FOMM_DEVICE_SITE``, else one
            built into the cache on the first request.
    """
    folder = site or os.environ.get(SITE_ENV) or None
    state = _Site(checkpoint, Path(folder) if folder else None)
    router = APIRouter()

    @router.get("/device", include_in_schema=False)
    def device_root() -> RedirectResponse:
        return RedirectResponse("/device/", status_code=308)

    @router.get("/device/{path:path}", include_in_schema=False)
    def device_file(path: str) -> FileResponse:
        root = state.root().resolve()
        target = (root / (path or "index.html")).resolve()
        if not target.is_relative_to(root) or not target.is_file():
            raise HTTPException(404, "no such file")
        return FileResponse(target, media_type=TYPES.get(target.suffix),
                            headers={**HEADERS, "Cache-Control": "no-cache"})

    return router
