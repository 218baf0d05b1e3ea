"""The expression settings on the web service: the animate form's fields, the one-frame preview
endpoint and the live socket's expression messages (in-process client, tiny model)."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image
from tiny import tiny_models

pytest.importorskip("fastapi", reason="fomm serve needs the web extras: pip install 'fomm[serve]'")

from fastapi.testclient import TestClient  # noqa: E402

from fomm.app.api import Settings, create_app, parse_options  # noqa: E402
from fomm.app.live import decode_image, encode_jpeg  # noqa: E402
from fomm.app.uploads import UploadError  # noqa: E402
from fomm.inference.animator import Animator  # noqa: E402

FIELDS = {"expression": "false", "animation_region": "lips", "expression_scale": "1.5",
          "eye_offset": "-0.5", "mouth_offset": "1", "smile_offset": "0.25"}


def _mesh_available() -> bool:
    from fomm.faces import mesh

    return mesh.available()


needs_mesh = pytest.mark.skipif(not _mesh_available(), reason="no face-mesh model installed")


def png(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


def portrait() -> np.ndarray:
    from skimage import data

    return np.ascontiguousarray(data.astronaut()[:320, 96:416])  # 320×320, one face


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    animator = Animator(*tiny_models(image_size=64), device="cpu")
    app = create_app(Settings(data_dir=str(tmp_path_factory.mktemp("serve"))), animator=animator)
    with TestClient(app, base_url="http://localhost") as client:  # a Host the server answers
        yield client


def test_the_form_takes_the_expression_fields():
    settings = Settings()
    default = parse_options({}, settings)
    assert (default.expression, default.animation_region, default.expression_scale) == (
        True, "all", 1.0)
    opts = parse_options(FIELDS, settings)
    assert (opts.expression, opts.animation_region, opts.expression_scale) == (False, "lips", 1.5)
    assert (opts.eye_offset, opts.mouth_offset, opts.smile_offset) == (-0.5, 1.0, 0.25)


@pytest.mark.parametrize(("fields", "status", "message"), [
    ({"expression_scale": "2.5"}, 422, "expression_scale must be between 0 and 2, got 2.5"),
    ({"eye_offset": "-3"}, 422, "eye_offset must be between -1 and 1, got -3"),
    ({"smile_offset": "nan"}, 422, "smile_offset must be between -1 and 1, got nan"),
    ({"animation_region": "nose"}, 422, "animation_region must be one of all, pose, expression"),
    ({"mouth_offset": "wide"}, 400, "mouth_offset must be a number"),
    ({"expression": "perhaps"}, 400, "expression must be true or false"),
])  # fmt: skip
def test_bad_expression_fields_are_refused_with_a_clear_message(client, fields, status, message):
    with pytest.raises(UploadError) as err:
        parse_options(fields, Settings())
    assert (err.value.status, err.value.code) == (status, "invalid_option")
    assert message in err.value.message
    files = {"source": ("p.png", png(portrait())), "driving": ("d.png", png(portrait()))}
    r = client.post("/v1/animations", files=files, data=fields)
    assert r.status_code == status and message in r.json()["error"]["message"]
    assert client.get("/metrics").status_code == 200  # the server goes on


def test_an_animation_with_expression_fields_is_queued(client, tmp_path):
    from conftest import write_clip

    clip = write_clip(tmp_path / "clip.mp4", frames=[portrait()[::4, ::4]] * 3, fps=10)
    files = {"source": ("p.png", png(portrait())), "driving": ("d.mp4", clip.read_bytes())}
    r = client.post("/v1/animations", files=files, data={**FIELDS, "crop": "false"})
    assert r.status_code == 202, r.text
    client.delete(r.json()["status_url"])


def _preview(client, **parts) -> tuple[int, dict | np.ndarray]:
    files = {name: (f"{name}.png", png(image)) for name, image in parts.items()
             if isinstance(image, np.ndarray)}
    data = {name: value for name, value in parts.items() if isinstance(value, str)}
    r = client.post("/v1/preview", files=files, data=data)
    if r.status_code != 200:
        return r.status_code, r.json()
    assert r.headers["content-type"] == "image/jpeg"
    return 200, decode_image(r.content)


def test_preview_of_the_photo_alone_and_with_a_driving_frame(client):
    photo = portrait()
    status, still = _preview(client, source=photo, expression="false")
    assert status == 200 and still.shape == photo.shape
    assert np.abs(still.astype(float) - photo).mean() < 4  # the photo (through JPEG)
    driving = np.ascontiguousarray(photo[:, ::-1])  # the face, mirrored: another pose
    status, moved = _preview(client, source=photo, driving_frame=driving, reference_frame=photo,
                             expression="false")
    assert status == 200 and moved.shape == photo.shape
    assert np.abs(moved.astype(float) - still).mean() > 1  # the motion model moved the face
    status, again = _preview(client, source=photo, driving_frame=driving, reference_frame=photo,
                             expression="false")
    np.testing.assert_array_equal(again, moved)  # cached preparation, same frame


def test_preview_errors(client):
    status, body = _preview(client, source=np.full((200, 200, 3), 120, np.uint8))
    assert status == 422 and body["error"]["code"] == "cannot_preview"
    assert "no face found in the source image" in body["error"]["message"]
    status, body = _preview(client, source=portrait(), expression_scale="9")
    assert status == 422 and "expression_scale must be between 0 and 2" in body["error"]["message"]
    r = client.post("/v1/preview", files={"driving_frame": ("d.png", png(portrait()))})
    assert r.status_code == 400 and r.json()["error"]["code"] == "missing_file"
    status, body = _preview(client, source=portrait(),
                            driving_frame=np.full((120, 120, 3), 30, np.uint8))
    assert status == 422 and "no face found in the driving frame" in body["error"]["message"]


@needs_mesh
def test_preview_sliders_change_the_face_only(client):
    photo = portrait()
    status, plain = _preview(client, source=photo, animation_region="expression")
    assert status == 200
    status, wide = _preview(client, source=photo, animation_region="expression",
                            mouth_offset="1", eye_offset="1")
    assert status == 200
    change = np.abs(wide.astype(float) - plain).mean(axis=2)
    assert change.max() > 30  # the mouth and eyes opened
    rows, cols = np.nonzero(change > 30)
    # the change stays inside the face (astronaut's face box ≈ x 86..172, y 60..174 here)
    assert 60 <= cols.min() <= cols.max() <= 200 and 50 <= rows.min() <= rows.max() <= 200


def camera_frames(n: int) -> list[np.ndarray]:
    from skimage import data

    face = data.astronaut()[0:300, 100:400][::2, ::2]  # 150×150
    frames = []
    for i in range(n):
        frame = np.full((240, 320, 3), 80, np.uint8)
        frame[45:195, 60 + 8 * i : 210 + 8 * i] = face
        frames.append(frame)
    return frames


@needs_mesh
def test_live_socket_changes_the_expression_settings(client):
    from skimage import data

    with client.websocket_connect("/v1/live") as ws:
        ws.send_bytes(encode_jpeg(data.astronaut()[:256, 128:384]))
        assert ws.receive_json()["type"] == "ready"
        ws.receive_bytes()
        frames = camera_frames(4)
        ws.send_bytes(encode_jpeg(frames[0]))
        info = ws.receive_json()
        assert info["expression"]["animation_region"] == "all"  # on by default
        ws.receive_bytes()
        ws.send_text('{"type": "expression", "animation_region": "eyes", "expression_scale": 1.5,'
                     ' "smile_offset": -0.5}')
        ws.send_bytes(encode_jpeg(frames[1]))
        info = ws.receive_json()
        assert info["expression"] == {"animation_region": "eyes", "expression_scale": 1.5,
                                      "eye_offset": 0.0, "mouth_offset": 0.0,
                                      "smile_offset": -0.5}
        ws.receive_bytes()
        ws.send_text('{"type": "expression", "expression_scale": 7}')
        ws.send_bytes(encode_jpeg(frames[2]))
        notice = ws.receive_json()
        assert notice["type"] == "notice"
        assert "expression_scale must be between 0 and 2, got 7" in notice["message"]
        info = ws.receive_json()
        assert info["type"] == "frame" and info["expression"]["expression_scale"] == 1.5
        ws.receive_bytes()
        ws.send_text('{"type": "expression", "expression": false}')
        ws.send_bytes(encode_jpeg(frames[3]))
        info = ws.receive_json()
        assert info["expression"] is None
        ws.receive_bytes()
