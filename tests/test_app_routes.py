"""The service's structure: form fields derived from AnimateOptions, response models in the
OpenAPI schema, and job types that the worker takes without the HTTP layer."""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

import pytest

pytest.importorskip("fastapi", reason="fomm serve needs the web extras: pip install 'fomm[serve]'")

from fastapi.testclient import TestClient  # noqa: E402
from tiny import tiny_models  # noqa: E402

from fomm.app.api import Settings, create_app  # noqa: E402
from fomm.app.fields import (  # noqa: E402
    COMMAND_LINE_OPTIONS,
    FIELDS,
    SERVER_OPTIONS,
    form_fields,
    parse_field,
)
from fomm.app.uploads import UploadError  # noqa: E402
from fomm.config import EXPRESSION_RANGES, AnimateOptions  # noqa: E402
from fomm.inference.animator import Animator  # noqa: E402

APP = Path(__file__).resolve().parents[1] / "fomm" / "app"


@pytest.fixture(scope="module")
def spec(tmp_path_factory) -> dict:
    app = create_app(Settings(data_dir=str(tmp_path_factory.mktemp("data"))),
                     animator=Animator(*tiny_models(image_size=64), device="cpu"))
    with TestClient(app, base_url="http://localhost") as client:
        return client.get("/openapi.json").json()


def test_every_option_is_a_form_field_or_decided_elsewhere() -> None:
    names = [f.name for f in dataclasses.fields(AnimateOptions)]
    assert sorted(FIELDS) == sorted(set(names) - set(SERVER_OPTIONS) - set(COMMAND_LINE_OPTIONS))
    defaults = AnimateOptions()
    for name, field in FIELDS.items():
        assert field.default == getattr(defaults, name), name
    for name, bounds in EXPRESSION_RANGES.items():
        assert FIELDS[name].kind == "number" and FIELDS[name].bounds == bounds


def test_a_new_option_appears_in_the_form_without_being_named() -> None:
    @dataclasses.dataclass(frozen=True)
    class Newer(AnimateOptions):
        stabilise: bool = False

    fields = form_fields(Newer)
    assert fields["stabilise"].kind == "boolean" and fields["stabilise"].default is False

    @dataclasses.dataclass(frozen=True)
    class Unknown(AnimateOptions):
        style: str = "plain"

    with pytest.raises(TypeError, match="AnimateOptions.style: no form field"):
        form_fields(Unknown)


@pytest.mark.parametrize(("key", "text", "value"), [
    ("relative", "off", False), ("best_frame", "", None), ("face_index", "2", 2),
    ("crop_driving", "ON", "on"), ("eye_offset", "-0.5", -0.5),
])  # fmt: skip
def test_fields_parse_by_kind(key, text, value) -> None:
    assert parse_field(key, text) == value


def test_the_form_schema_and_response_models_are_in_openapi(spec) -> None:
    paths = spec["paths"]
    form = paths["/v1/animations"]["post"]["requestBody"]["content"]["multipart/form-data"]
    properties = form["schema"]["properties"]
    assert set(properties) == {"source", "driving", *FIELDS}
    assert properties["expression_scale"] == {
        "type": "number", "minimum": 0.0, "maximum": 2.0, "default": 1.0,
        "description": "strength of the driver's expression"}
    assert properties["crop_driving"]["enum"] == ["auto", "on", "off"]
    preview = paths["/v1/preview"]["post"]["requestBody"]["content"]["multipart/form-data"]
    assert {"driving_frame", "reference_frame", *FIELDS} <= set(preview["schema"]["properties"])

    def body(path: str, method: str, status: str) -> str:
        return paths[path][method]["responses"][status]["content"]["application/json"][
            "schema"]["$ref"].rsplit("/", 1)[1]

    assert body("/v1/animations", "post", "202") == "Queued"
    assert body("/v1/animations", "post", "503") == "ErrorBody"
    assert body("/v1/animations/{job_id}", "get", "200") == "Animation"
    assert body("/v1/animations/{job_id}", "delete", "200") == "Deleted"
    assert body("/healthz", "get", "200") == "Health"
    state = spec["components"]["schemas"]["Animation"]["properties"]
    assert {"id", "status", "progress", "result", "status_url", "result_url"} <= set(state)


def test_a_value_out_of_range_names_the_field() -> None:
    with pytest.raises(UploadError, match="mouth_offset must be between -1 and 1"):
        parse_field("mouth_offset", "1.5")


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return names


def test_the_worker_and_the_job_types_do_not_import_the_http_layer() -> None:
    for module in ("worker.py", "animation.py", "jobs.py", "fields.py", "settings.py"):
        imported = _imports(APP / module)
        assert not {name for name in imported
                    if name.startswith(("fomm.app.api", "fomm.app.routes", "fastapi"))}, module
