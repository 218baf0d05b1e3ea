"""Cheap checks of a command's input files, run before torch or a model is loaded.

They read a few bytes of each file (standard library only), so a missing file, a wrong format or
a photo and a video given the wrong way round fail in milliseconds. The full decoders still check
everything else when the files are read for real.
"""

from __future__ import annotations

from pathlib import Path

from fomm.errors import InputError

# first bytes of the formats people pass (enough to tell a photo from a video)
_IMAGE_MAGIC = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"BM", b"II*\x00", b"MM\x00*", b"GIF8")
_VIDEO_EXTRA = (b"\x1a\x45\xdf\xa3", b"FLV", b"\x00\x00\x01\xba", b"OggS")  # mkv/webm, flv, mpg


def sniff(path: Path) -> str:
    """``"image"``, ``"video"``, ``"gif"`` (either) or ``"unknown"``, from the first bytes."""
    with open(path, "rb") as f:
        head = f.read(16)
    if head.startswith(b"GIF8"):
        return "gif"
    if head.startswith(_IMAGE_MAGIC) or (head[:4] == b"RIFF" and head[8:12] == b"WEBP"):
        return "image"
    if head[4:8] == b"ftyp":
        # HEIF/AVIF stills are ISO-BMFF too
        return "image" if head[8:12] in (b"heic", b"heix", b"avif", b"mif1") else "video"
    if head.startswith(_VIDEO_EXTRA) or (head[:4] == b"RIFF" and head[8:11] == b"AVI"):
        return "video"
    return "unknown"


def _check_exists(path: Path, what: str) -> None:
    if not path.exists():
        raise InputError(f"{path}: {what} not found")
    if path.is_file() and path.stat().st_size == 0:
        raise InputError(f"{path} is an empty file")


def check_animate_inputs(source: str | Path, driving: str | Path,
                         checkpoint: str | Path | None = None) -> None:
    """Fail fast on inputs ``fomm animate`` cannot use.

    Raises:
        InputError: a missing or empty file, a source that is a video or a folder, a driving
            input that is a still image (with a hint when the two look swapped).
        CheckpointError: a checkpoint that is neither a file nor a known name.
    """
    source, driving = Path(source), Path(driving)
    _check_exists(source, "source image")
    _check_exists(driving, "driving video")
    if source.is_dir():
        raise InputError(f"{source} is a folder; the source is one image (fomm animate PHOTO "
                         "VIDEO)")
    kind_source = sniff(source)
    kind_driving = "folder" if driving.is_dir() else sniff(driving)
    if kind_source == "video" and kind_driving == "image":
        raise InputError(f"{source} is a video and {driving} a photo: swapped? The photo comes "
                         "first: fomm animate PHOTO VIDEO")
    if kind_source == "video":
        raise InputError(f"{source} is a video, not an image; the source is one photo (fomm "
                         "animate PHOTO VIDEO)")
    if kind_driving == "image":
        raise InputError(f"{driving} is a still image, not a video; the driving input is a "
                         "video or a folder of frames (fomm animate PHOTO VIDEO)")
    if checkpoint is not None:
        _check_checkpoint(str(checkpoint))


def _check_checkpoint(checkpoint: str) -> None:
    from fomm.checkpoints.names import resolve

    resolve(checkpoint)  # raises with what to do for an unknown or undownloaded name
