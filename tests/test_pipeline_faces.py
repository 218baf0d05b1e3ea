"""Faces end to end: crop, animate, paste back at full resolution; multi-person; driving framing."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from media import astronaut, group_photo, save, talking_clip, talking_clip_with_audio, wide_clip
from PIL import Image

from fomm.config import AnimateOptions
from fomm.faces.crop import square_box
from fomm.faces.detect import detect_faces
from fomm.inference.pipeline import animate_file
from fomm.media.image import read_image

ROOT = Path(__file__).resolve().parents[1]


def _frames(folder: Path) -> np.ndarray:
    return np.stack([np.asarray(Image.open(p)) for p in sorted(folder.glob("*.png"))])


def test_high_res_portrait_pasted_back(tmp_path, tiny_ckpt):
    big = cv2.resize(astronaut(), (1024, 1024), interpolation=cv2.INTER_CUBIC)
    source_path = save(tmp_path / "portrait.png", big)  # a high-resolution portrait
    source = read_image(source_path)
    out = tmp_path / "frames/"
    result = animate_file(source_path, wide_clip(tmp_path / "raw.mp4", n_frames=6), out,
                          AnimateOptions(crop_driving="auto", max_frames=6, progress=False),
                          checkpoint=tiny_ckpt)
    frames = _frames(out)  # lossless PNGs: exact pixels
    assert result.faces == 1 and frames.shape == (6, *source.shape)
    box = square_box(detect_faces(source)[0], source.shape)
    x0, y0, x1, y1 = (int(round(v)) for v in box)
    # pixels far from the face are exactly the source's
    far = np.ones(source.shape[:2], bool)
    far[max(0, y0 - 8):y1 + 8, max(0, x0 - 8):x1 + 8] = False
    assert np.array_equal(frames[:, far], np.broadcast_to(source[far], frames[:, far].shape))
    # the face region changes over time (a still video would give exactly 0)
    face = frames[:, y0 + 40:y1 - 40, x0 + 40:x1 - 40].astype(float)
    assert all(np.abs(face[t + 1] - face[t]).mean() > 0.05 for t in range(len(face) - 1))


def test_multi_person_group_image(tmp_path, tiny_ckpt):
    group = save(tmp_path / "group.png", group_photo())
    source = read_image(group)
    faces = detect_faces(source)
    out = tmp_path / "frames/"
    result = animate_file(group, talking_clip(), out,
                          AnimateOptions(multi_person=True, max_frames=3, progress=False),
                          checkpoint=tiny_ckpt)
    frames = _frames(out)
    assert result.faces == len(faces) == 5
    assert frames.shape[1:] == source.shape
    for face in faces:  # every face was replaced by the animation
        x0, y0, x1, y1 = (int(v) for v in face.box)
        region = frames[0, y0:y1, x0:x1].astype(float)
        assert np.abs(region - source[y0:y1, x0:x1]).mean() > 3


def test_face_index_out_of_range(tmp_path, tiny_ckpt):
    from fomm.errors import FommError

    with pytest.raises(FommError, match="out of range"):
        animate_file(save(tmp_path / "photo.png", astronaut()), talking_clip(),
                     tmp_path / "o.mp4", AnimateOptions(face_index=3, progress=False),
                     checkpoint=tiny_ckpt)
    assert not (tmp_path / "o.mp4").exists()


def test_seed_command_face_flags(tmp_path, tiny_ckpt):
    cmd = [sys.executable, str(ROOT / "tools" / "first-order-demo.py"),
           "--driving_video", str(talking_clip_with_audio(tmp_path / "talk.mp4", n_frames=8)),
           "--source_image", str(save(tmp_path / "group.png", group_photo())),
           "--relative", "--adapt_scale", "--multi_person", "--ratio", "0.3",
           "--face_detector", "sfd", "--find_best_frame", "--weight_path", str(tiny_ckpt),
           "--max_frames", "4"]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "MTCNN" in proc.stderr and "--crop-margin" in proc.stderr
    from fomm.media.video import probe

    info = probe(tmp_path / "output" / "result.mp4")
    assert info.num_frames == 4 and info.has_audio
