"""``/v1/examples``: the built-in example inputs, for the page's "try it" button."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import FileResponse
from starlette.exceptions import HTTPException

from fomm.app.routes.deps import ExamplesDep
from fomm.app.routes.schemas import Examples, errors

router = APIRouter(prefix="/v1/examples", tags=["examples"], responses=errors(404))
FILES = ("source.png", "driving.mp4")


@router.get("", response_model=Examples,
            summary="URLs of built-in example inputs (404 when none)")
def list_examples(examples: ExamplesDep) -> dict[str, str]:
    if examples.paths() is None:
        raise HTTPException(404, "this install has no built-in example inputs")
    source, driving = (f"{router.prefix}/{name}" for name in FILES)
    return {"source_url": source, "driving_url": driving}


@router.get("/{name}", response_class=FileResponse, summary="A built-in example input")
def get_example(name: str, examples: ExamplesDep) -> FileResponse:
    paths = examples.paths()
    if paths is None or name not in FILES:
        raise HTTPException(404, f"no example '{name}'")
    return FileResponse(paths[FILES.index(name)])
