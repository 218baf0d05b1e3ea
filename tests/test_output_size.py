"""Output size: PNG frames keep the photo's exact size; an .mp4 pads an odd side by one pixel."""

from __future__ import annotations

from media import astronaut, save, talking_clip
from PIL import Image

from fomm.config import AnimateOptions
from fomm.inference.pipeline import animate_file
from fomm.media.video import probe


def test_odd_sized_photo(tmp_path, tiny_ckpt) -> None:
    photo = save(tmp_path / "odd.png", astronaut()[:511, :509])  # 509×511
    opts = AnimateOptions(max_frames=1, progress=False, crop_driving="off")
    animate_file(photo, talking_clip(), tmp_path / "frames/", opts, checkpoint=tiny_ckpt)
    frame = Image.open(next((tmp_path / "frames").glob("*.png")))
    assert frame.size == (509, 511)  # exactly the photo's
    result = animate_file(photo, talking_clip(), tmp_path / "out.mp4", opts, checkpoint=tiny_ckpt)
    info = probe(tmp_path / "out.mp4")
    assert (info.width, info.height) == result.size == (510, 512)  # yuv420p: even sides
