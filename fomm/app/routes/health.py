"""``/healthz`` (liveness of the broker and the storage) and ``/metrics`` (Prometheus)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from fomm import __version__
from fomm.app.guard import AUTHORIZED
from fomm.app.metrics import CONTENT_TYPE
from fomm.app.routes.deps import (
    AnimatorDep,
    IntakeDep,
    MetricsDep,
    QueueDep,
    SettingsDep,
    StorageDep,
    StoreDep,
)
from fomm.app.routes.schemas import Health
from fomm.app.uploads import MB

router = APIRouter(tags=["operations"])


@router.get("/healthz", response_model=Health, responses={503: {"model": Health}},
            summary="Liveness: broker and storage (details with the token)")
def healthz(request: Request, settings: SettingsDep, queue: QueueDep, intake: IntakeDep,
            storage: StorageDep, store: StoreDep, animator: AnimatorDep) -> JSONResponse:
    disk = intake.disk
    checks: dict[str, dict[str, Any]] = {}
    if settings.broker is not None:
        checks["broker"] = {"kind": "redis", "ok": queue.ping()}
        checks["storage"] = {"kind": storage.kind, "ok": storage.ping() and disk.ok()}
    else:
        checks["storage"] = {"kind": "directory", "ok": store.ping()
                             and intake.folder.is_dir() and disk.ok()}
    free = disk.free()
    checks["storage"]["free_mb"] = None if free is None else round(free / MB)
    checks["storage"]["min_free_mb"] = settings.min_free_mb
    ok = all(check["ok"] for check in checks.values())
    body: dict[str, Any] = {"status": "ok" if ok else "degraded"}
    if not request.scope.get(AUTHORIZED, True):  # no token given: up or not, nothing more
        body.update({name: {"ok": check["ok"]} for name, check in checks.items()})
        return JSONResponse(body, 200 if ok else 503)
    body.update({"version": __version__, **checks})
    body["queue"] = queue.stats() if ok or settings.broker is None else None
    if animator is not None:
        cfg = animator.config
        body["model"] = {"architecture": cfg.architecture, "image_size": cfg.image_size,
                         "num_kp": cfg.num_kp, "device": str(animator.device)}
    return JSONResponse(body, 200 if ok else 503)


@router.get("/metrics", response_class=Response,
            responses={200: {"content": {CONTENT_TYPE: {}}}}, summary="Prometheus metrics")
def get_metrics(metrics: MetricsDep) -> Response:
    return Response(metrics.render(), media_type=CONTENT_TYPE)
