"""Image files ⇄ RGB uint8 (H, W, 3), and frames ⇄ tensors: the one place for layout and range."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

from fomm.errors import InputError
from fomm.media.fileio import atomic_output

if TYPE_CHECKING:
    import torch

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff"})

# Errors Pillow raises for a file it cannot parse (SyntaxError comes from some plugins' parsers).
_PIL_ERRORS = (
    UnidentifiedImageError,
    OSError,
    SyntaxError,
    ValueError,
    Image.DecompressionBombError,
)

# Suffix → (Pillow format, save options). PNG and WebP are lossless; JPEG is quality 95.
_SAVE_FORMATS: dict[str, tuple[str, dict]] = {
    ".png": ("PNG", {"compress_level": 6}),
    ".jpg": ("JPEG", {"quality": 95, "subsampling": 0}),
    ".jpeg": ("JPEG", {"quality": 95, "subsampling": 0}),
    ".webp": ("WEBP", {"lossless": True}),
    ".bmp": ("BMP", {}),
    ".tif": ("TIFF", {"compression": "tiff_lzw"}),
    ".tiff": ("TIFF", {"compression": "tiff_lzw"}),
}


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read an image file as RGB uint8, whatever its mode, bit depth or EXIF orientation.

    Grayscale and palette images are expanded to RGB. Alpha (RGBA, LA, transparent palettes) is
    composited onto black, so fully transparent pixels become black whatever colour they stored.
    16-bit images are scaled with ``round(v / 257)``, so 65535 → 255 exactly. The EXIF orientation
    tag is applied (as ``PIL.ImageOps.exif_transpose`` would). A GIF gives its first frame.

    Args:
        path: a png, jpg, webp, bmp, gif or tiff file.

    Returns:
        uint8 array (H, W, 3), RGB.

    Raises:
        InputError: the file is missing, a folder, empty, not an image, corrupt, or has no pixels.
    """
    path = Path(path)
    _check_file(path, "image")
    try:
        with Image.open(path) as img:
            deep = _is_16bit_colour(img)  # before load(), which clears img.tile
            img.load()
            orientation = _exif_orientation(img)
            rgb = _read_16bit_colour(path) if deep else None
            rgb = _pil_to_rgb(img) if rgb is None else rgb
    except InputError:
        raise
    except _PIL_ERRORS as err:
        raise InputError(f"{path} is not a readable image ({_one_line(err)})") from err
    if rgb.shape[0] == 0 or rgb.shape[1] == 0:
        raise InputError(f"{path} has no pixels ({rgb.shape[1]}x{rgb.shape[0]})")
    return np.ascontiguousarray(apply_orientation(rgb, orientation))


def write_image(path: str | os.PathLike, frame: np.ndarray) -> None:
    """Write an RGB uint8 frame atomically (temp file in the same folder, then ``os.replace``).

    The format follows the suffix: .png (lossless), .webp (lossless), .jpg/.jpeg (quality 95),
    .bmp, .tif/.tiff. Parent folders are created.

    Args:
        path: destination file.
        frame: uint8 array (H, W, 3), RGB.

    Raises:
        InputError: the suffix is not a supported image format.
    """
    path = Path(path)
    fmt = _SAVE_FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise InputError(f"{path}: unsupported image format {path.suffix!r} (use .png or .jpg)")
    check_frame(frame)
    with atomic_output(path) as tmp, open(tmp, "wb") as f:
        Image.fromarray(frame, "RGB").save(f, format=fmt[0], **fmt[1])


def resize(frame: np.ndarray, size: tuple[int, int] | int) -> np.ndarray:
    """Resize a frame with area averaging when shrinking and bicubic interpolation otherwise.

    Args:
        frame: uint8 array (H, W, C).
        size: (width, height), or one int for a square (size, size).

    Returns:
        uint8 array (height, width, C).
    """
    w, h = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
    if w <= 0 or h <= 0:
        raise ValueError(f"resize: size must be positive, got {w}x{h}")
    src_h, src_w = frame.shape[:2]
    if (w, h) == (src_w, src_h):
        return frame.copy()
    # INTER_AREA is the alias-free choice for shrinking; it degrades to nearest-ish when enlarging.
    interp = cv2.INTER_AREA if w <= src_w and h <= src_h else cv2.INTER_CUBIC
    out = cv2.resize(frame, (w, h), interpolation=interp)
    return out[..., None] if out.ndim == 2 and frame.ndim == 3 else out


def similarity_matrix(size: tuple[int, int], degrees: float, scale: float,
                      shift: tuple[float, float] = (0.0, 0.0)) -> np.ndarray:
    """The (2, 3) pixel map of :func:`similarity_warp`: ``matrix @ (x, y, 1)`` is where the
    pixel (x, y) of a (width, height) ``size`` frame lands."""
    w, h = size
    matrix = cv2.getRotationMatrix2D(((w - 1) / 2, (h - 1) / 2), degrees, scale)
    matrix[:, 2] += shift
    return matrix


def similarity_warp(frame: np.ndarray, degrees: float, scale: float,
                    shift: tuple[float, float] = (0.0, 0.0)) -> np.ndarray:
    """Rotate (counter-clockwise on screen) and zoom about the centre, then shift; borders reflect.

    Args:
        frame: uint8 array (H, W, C).
        shift: (dx, dy) in pixels.
    Returns:
        uint8 array (H, W, C).
    """
    h, w = frame.shape[:2]
    matrix = similarity_matrix((w, h), degrees, scale, shift)
    out = cv2.warpAffine(frame, matrix, (w, h), flags=cv2.INTER_LINEAR,
                         borderMode=cv2.BORDER_REFLECT_101)
    return out[..., None] if out.ndim == 2 and frame.ndim == 3 else out


def center_crop_square(frame: np.ndarray) -> np.ndarray:
    """Crop the largest centred square.

    Args:
        frame: array (H, W, ...).

    Returns:
        view (S, S, ...) with S = min(H, W).
    """
    h, w = frame.shape[:2]
    s = min(h, w)
    top, left = (h - s) // 2, (w - s) // 2
    return frame[top : top + s, left : left + s]


def even_size(width: int, height: int) -> tuple[int, int]:
    """Round a size up to even numbers (what yuv420p H.264 needs).

    Args:
        width: width in pixels.
        height: height in pixels.

    Returns:
        (width, height), each rounded up to the next even number.
    """
    return width + width % 2, height + height % 2


def pad_to_even(frame: np.ndarray) -> np.ndarray:
    """Pad an odd width or height by one pixel, repeating the last column or row.

    Args:
        frame: array (H, W, C).

    Returns:
        the same array when both sides are even, else a padded copy (H', W', C) with even sides.
    """
    h, w = frame.shape[:2]
    if h % 2 == 0 and w % 2 == 0:
        return frame
    pad = [(0, h % 2), (0, w % 2)] + [(0, 0)] * (frame.ndim - 2)
    return np.pad(frame, pad, mode="edge")


def to_tensor(
    frames: np.ndarray | Sequence[np.ndarray], device: torch.device | str | None = None
) -> torch.Tensor:
    """Convert uint8 RGB frames to a float32 batch in [0, 1] (value = float32(u8) / 255, exactly).

    Args:
        frames: one frame (H, W, 3), a batch (B, H, W, 3), or a list of (H, W, 3); uint8.
        device: where to put the result; the uint8 data is moved first, then converted there.

    Returns:
        float32 tensor (B, 3, H, W) in [0, 1], contiguous.
    """
    import torch  # here, not at the top: video.py and the file tools run without torch

    if isinstance(frames, np.ndarray):
        batch = frames[None] if frames.ndim == 3 else frames
    else:
        batch = np.stack(list(frames)) if len(frames) else np.empty((0, 0, 0, 3), np.uint8)
    if batch.dtype != np.uint8 or batch.ndim != 4 or batch.shape[-1] != 3:
        raise ValueError(
            f"to_tensor: expected uint8 (H, W, 3) or (B, H, W, 3), got {batch.dtype} {batch.shape}"
        )
    t = torch.from_numpy(np.ascontiguousarray(batch))  # (B, H, W, 3) uint8
    if device is not None:
        t = t.to(device)
    return t.permute(0, 3, 1, 2).to(torch.float32).div_(255.0).contiguous()  # (B, 3, H, W)


def to_frames(tensor: torch.Tensor) -> np.ndarray:
    """Convert a float batch in [0, 1] to uint8 RGB frames.

    Values are clamped to [0, 1] and rounded, ``round(x * 255)`` (half to even), so
    ``to_frames(to_tensor(f))`` gives ``f`` back exactly. PaddleGAN truncates (``x * 255`` cast to
    uint8) instead, which is darker by half a level on average. NaN becomes 0.

    Args:
        tensor: float tensor (B, 3, H, W) or (3, H, W), on any device, any float dtype.

    Returns:
        uint8 array (B, H, W, 3), RGB, on the CPU.
    """
    import torch

    if tensor.ndim == 3:
        tensor = tensor[None]
    if tensor.ndim != 4 or tensor.shape[1] != 3:
        raise ValueError(f"to_frames: expected (B, 3, H, W), got {tuple(tensor.shape)}")
    x = torch.nan_to_num(tensor.detach().to(torch.float32), nan=0.0)
    u8 = x.clamp_(0.0, 1.0).mul_(255.0).round_().to(torch.uint8)  # on-device, then a small copy
    return u8.permute(0, 2, 3, 1).contiguous().cpu().numpy()  # (B, H, W, 3)


def check_frame(frame: np.ndarray, who: str = "frame") -> None:
    """Raise ValueError unless ``frame`` is a non-empty uint8 numpy array (H, W, 3).

    Args:
        frame: the value to check.
        who: what to name in the message (e.g. "VideoWriter: frame 3").
    """
    if not isinstance(frame, np.ndarray):
        raise ValueError(f"{who}: expected a uint8 (H, W, 3) numpy array, got {type(frame)}")
    if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3 or 0 in frame.shape:
        raise ValueError(
            f"{who}: expected a uint8 (H, W, 3) array, got {frame.dtype} {frame.shape}"
        )


def apply_orientation(frame: np.ndarray, orientation: int) -> np.ndarray:
    """Apply an EXIF orientation (1-8) to an (H, W, C) array, as ``ImageOps.exif_transpose`` does.

    Args:
        frame: array (H, W, C).
        orientation: EXIF tag 0x0112; values outside 2-8 leave the frame as it is.

    Returns:
        a view of ``frame`` in display orientation.
    """
    ops = {
        2: lambda a: a[:, ::-1],
        3: lambda a: a[::-1, ::-1],
        4: lambda a: a[::-1],
        5: lambda a: a.swapaxes(0, 1),
        6: lambda a: np.rot90(a, -1),
        7: lambda a: a[::-1, ::-1].swapaxes(0, 1),
        8: lambda a: np.rot90(a, 1),
    }
    op = ops.get(orientation)
    return frame if op is None else op(frame)


def _check_file(path: Path, kind: str) -> None:
    if not path.exists():
        raise InputError(f"{path}: no such file")
    if path.is_dir():
        raise InputError(f"{path} is a folder, not an {kind} file")
    if path.stat().st_size == 0:
        raise InputError(f"{path} is an empty file")


def _one_line(err: BaseException) -> str:
    return " ".join(str(err).split()) or type(err).__name__


def _exif_orientation(img: Image.Image) -> int:
    try:
        return int(img.getexif().get(0x0112, 1))
    except (OSError, ValueError, SyntaxError, KeyError, TypeError):
        return 1  # broken EXIF: show the pixels as stored


def _is_16bit_colour(img: Image.Image) -> bool:
    # Pillow reduces 16-bit RGB(A) to 8 bits by truncation (v >> 8); OpenCV gives the real samples.
    if img.mode not in ("RGB", "RGBA") or not img.tile:
        return False
    args = img.tile[0].args
    rawmode = args[0] if isinstance(args, tuple) else args
    return isinstance(rawmode, str) and ";16" in rawmode


def _read_16bit_colour(path: Path) -> np.ndarray | None:
    # imdecode, not imread: imread cannot open non-ASCII paths on Windows. No EXIF applied here.
    data = cv2.imdecode(np.fromfile(path, np.uint8), cv2.IMREAD_UNCHANGED)
    if data is None or data.dtype != np.uint16 or data.ndim != 3 or data.shape[2] not in (3, 4):
        return None  # OpenCV cannot read it: keep Pillow's 8-bit reduction
    out = np.empty((*data.shape[:2], 3), np.uint8)
    for top in range(0, data.shape[0], _STRIPE_ROWS):  # bounded float64 temporaries, not H×W×3
        stripe = data[top:top + _STRIPE_ROWS]
        rgb = stripe[..., 2::-1].astype(np.float64)  # BGR(A) → RGB
        if data.shape[2] == 4:
            rgb *= stripe[..., 3:4] / 65535.0  # composite onto black
        out[top:top + _STRIPE_ROWS] = np.rint(rgb / 257.0)
    return out


_STRIPE_ROWS = 64  # rows of a 16-bit image converted at once (4096 wide: 6 MB of float64)


def _pil_to_rgb(img: Image.Image) -> np.ndarray:
    mode = img.mode
    if mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    elif mode == "PA":
        img = img.convert("RGBA")
    elif mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        # 16-bit grayscale (Pillow reads 16-bit PNG as I;16 or I): scale 0..65535 → 0..255.
        grey = np.asarray(img).astype(np.float64)
        return np.repeat(np.rint(np.clip(grey, 0, 65535) / 257.0).astype(np.uint8)[..., None], 3, 2)
    elif mode == "F":
        grey = np.asarray(img, dtype=np.float64)
        scale = 255.0 if grey.size and np.nanmax(grey) <= 1.0 else 1.0  # [0, 1] floats or 0..255
        grey = np.rint(np.clip(np.nan_to_num(grey) * scale, 0, 255)).astype(np.uint8)
        return np.repeat(grey[..., None], 3, 2)
    elif mode in ("La", "RGBa"):
        img = img.convert("RGBA")  # un-premultiply so the composite below is uniform
    if img.mode in ("RGBA", "LA"):
        rgba = np.asarray(img.convert("RGBA"), dtype=np.uint16)
        rgb = (rgba[..., :3] * rgba[..., 3:4] + 127) // 255  # composite onto black, rounded
        return rgb.astype(np.uint8)
    return np.asarray(img.convert("RGB"), dtype=np.uint8)
