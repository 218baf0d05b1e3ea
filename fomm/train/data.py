"""Frame datasets for training and evaluation: the original layouts, pair sampling, augmentation.

A dataset root holds ``train/`` and ``test/``; each video in them is a folder of frames, a video
file (.mp4, .mov, .gif, ...) or a .png/.jpg strip of frames concatenated horizontally (the
official ``vox-png`` layout).  Training items are two frames of one video (``source``,
``driving``), drawn from an RNG seeded by (seed, epoch, index), so a resumed run sees the same
items in the same order whatever the number of DataLoader workers.
"""

from __future__ import annotations

import csv
import logging
import math
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, NamedTuple

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Sampler

from fomm.config import AugmentationParams
from fomm.errors import ConfigError, FommError
from fomm.media import video as videos
from fomm.media.image import read_image, resize, to_tensor
from fomm.train.augment import colour_jitter, geometric
from fomm.train.regions import (
    balance_features,
    expression_features,
    expressive_pair,
    guide_points,
    guide_targets,
    load_landmarks,
    region_map,
)

log = logging.getLogger("fomm.train")

VIDEO_SUFFIXES = frozenset({".mp4", ".mov", ".gif", ".webm", ".mkv", ".avi", ".m4v"})
STRIP_SUFFIXES = frozenset({".png", ".jpg", ".jpeg"})
_MAX_TRIES = 10
_reported: set[str] = set()  # unreadable videos already reported by this process


def report_once(key: str, message: str) -> None:
    """Log a warning the first time ``key`` is seen in this process."""
    if key not in _reported:
        _reported.add(key)
        log.warning(message)


@dataclass(frozen=True)
class Video:
    """One video of a dataset and how it is stored."""

    path: Path
    kind: Literal["frames", "file", "strip"]
    frame_width: int | None = None  # strips only: width of one frame in the strip

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def identity(self) -> str:
        """VoxCeleb-style identity: the name up to the first '#' (``id10001#abc#001.mp4``)."""
        return self.name.split("#")[0]


class Pair(NamedTuple):
    """A training item; the DataLoader stacks it into a batch."""

    source: Tensor  # (3, H, W) float32 in [0, 1]; (B, 3, H, W) once batched
    driving: Tensor  # (3, H, W)
    name: str  # video name; a list of B names once batched
    # (1, H, W) eyes-and-mouth weight of the driving frame in [0, 1] (``regions=True``), else
    # an empty tensor; see fomm.train.regions
    weight: Tensor = torch.zeros(0)
    # (2, 6, 2) landmark-guidance targets of source and driving frame in [-1, 1], NaN where
    # unknown (``guides=True``), else an empty tensor; see fomm.train.regions.guide_targets
    guides: Tensor = torch.zeros(0)


def split_folder(root: str | Path, split: Literal["train", "test"]) -> Path:
    """``ROOT/<split>`` when it exists, else ``ROOT`` itself when it holds videos directly.

    Raises:
        FommError: the root does not exist or is not a folder.
    """
    root = Path(root)
    if not root.exists():
        raise FommError(f"{root}: dataset folder not found")
    if not root.is_dir():
        raise FommError(f"{root}: not a folder (a dataset is a folder with train/ and test/)")
    if (root / split).is_dir():
        return root / split
    if root.name in ("train", "test") or not (root / "train").exists():
        return root
    raise FommError(f"{root}: has train/ but no {split}/ folder")


def list_videos(folder: str | Path, frame_shape: Sequence[int] = (256, 256, 3)) -> list[Video]:
    """Every video in ``folder``, sorted by name; hidden and non-video files are ignored.

    Args:
        folder: a dataset split, e.g. ``ROOT/train``.
        frame_shape: (H, W, C) of the training frames; tells how a strip is cut.
    Raises:
        FommError: no videos at all, or a strip whose size fits neither ``frame_shape`` nor
            square frames (the message names the file and its size).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FommError(f"{folder}: dataset folder not found")
    found: list[Video] = []
    ignored: list[str] = []
    for path in sorted(folder.iterdir()):
        if path.name.startswith("."):
            continue
        suffix = path.suffix.lower()
        if path.is_dir():
            found.append(Video(path, "frames"))
        elif suffix in VIDEO_SUFFIXES:
            found.append(Video(path, "file"))
        elif suffix in STRIP_SUFFIXES:
            found.append(Video(path, "strip", _strip_frame_width(path, frame_shape)))
        else:
            ignored.append(path.name)
    if ignored:
        report_once(f"ignored:{folder}", f"{folder}: ignored {len(ignored)} file(s) that are not "
                    f"videos (e.g. {ignored[0]})")
    if not found:
        raise FommError(f"{folder}: no videos found (expected folders of frames, "
                        f"{'/'.join(sorted(VIDEO_SUFFIXES))} files or .png strips of frames)")
    return found


def _strip_frame_width(path: Path, frame_shape: Sequence[int]) -> int:
    try:
        with Image.open(path) as img:
            width, height = img.size
    except (OSError, SyntaxError, ValueError) as exc:
        raise FommError(f"{path}: not a readable image strip ({exc})") from None
    frame_h, frame_w = int(frame_shape[0]), int(frame_shape[1])
    if height == frame_h and width % frame_w == 0:
        return frame_w
    if width % height == 0:
        return height  # square frames at another size; resized to frame_shape when read
    raise FommError(f"{path}: a {width}x{height} strip cannot be cut into {frame_w}x{frame_h} "
                    "frames (frames are concatenated horizontally; check frame_shape)")


def count_frames(item: Video) -> int:
    """Number of frames of a video (exact; demuxes a file without decoding it)."""
    if item.kind == "strip":
        with Image.open(item.path) as img:
            return img.size[0] // int(item.frame_width or img.size[1])
    return videos.count_frames(item.path)


def read_frames(item: Video, indices: Sequence[int], size: tuple[int, int]) -> np.ndarray:
    """Some frames of a video, seeking rather than decoding everything when it can.

    Args:
        indices: 0-based frame numbers.
        size: (width, height) the frames are resized to when they differ.
    Returns:
        uint8 (N, H, W, 3).
    """
    if item.kind == "strip":
        strip = read_image(item.path)
        w = int(item.frame_width or strip.shape[0])
        frames = [strip[:, i * w:(i + 1) * w] for i in indices]
    else:
        frames = [videos.read_frame(item.path, int(i)) for i in indices]
    return np.stack([_fit(f, size) for f in frames])


def iter_video(item: Video, size: tuple[int, int]) -> Iterator[np.ndarray]:
    """Every frame in order, resized to ``size`` (width, height). Yields uint8 (H, W, 3)."""
    if item.kind == "strip":
        strip = read_image(item.path)
        w = int(item.frame_width or strip.shape[0])
        for i in range(strip.shape[1] // w):
            yield _fit(strip[:, i * w:(i + 1) * w], size)
        return
    for frame in videos.iter_frames(item.path):
        yield _fit(frame, size)


def video_fps(item: Video, default: float = 25.0) -> float:
    if item.kind != "file":
        return default
    try:
        return videos.probe(item.path).fps or default
    except FommError:
        return default


def _fit(frame: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    if (frame.shape[1], frame.shape[0]) == tuple(size):
        return np.ascontiguousarray(frame)
    return resize(np.ascontiguousarray(frame), size)


# --------------------------------------------------------------------------------------------
# datasets


def _check_crop(augmentation: AugmentationParams | None, frame_shape: Sequence[int]) -> None:
    """Every training frame must come out at ``frame_shape``: a resize needs a crop back to it."""
    if augmentation is None:
        return
    shape = (int(frame_shape[0]), int(frame_shape[1]))
    if augmentation.resize_ratio is not None and augmentation.crop_size is None:
        raise ConfigError("augmentation_params.resize_param needs crop_param.size "
                          f"(the frame shape, {list(shape)}) so that every frame has one size")
    if augmentation.crop_size is not None and tuple(augmentation.crop_size) != shape:
        raise ConfigError(f"augmentation_params.crop_param.size is "
                          f"{list(augmentation.crop_size)}, but frames are {list(shape)} "
                          "(dataset_params.frame_shape): use the same size")


class FramesDataset(Dataset):
    """Pairs of frames of one video; ``len = videos (or identities) x num_repeats``.

    Args:
        folder: a split folder (see :func:`split_folder`).
        frame_shape: (H, W, C); frames of another size are resized.
        id_sampling: one item per identity (name up to '#'), a random video of it each time.
        num_repeats: passes over the videos per epoch (the original ``DatasetRepeater``).
        augmentation: flips, resize and crop, pair motion, colour jitter; None for none.
        seed: base of the per-item RNG.
        regions: also return the driving frame's eyes-and-mouth weight map (``Pair.weight``),
            from each video's stored landmarks (:mod:`fomm.train.regions`).
        expressive_pairs: share of the pairs drawn as the one of several random pairs whose
            mouth and eyes differ most (each in units of its spread over the dataset), from the
            same landmarks.
        guides: also return landmark-guidance targets of both frames (``Pair.guides``), from
            the same landmarks, moved with the frames by the augmentations.
        eye_guides: what the two eye guidance points follow (:func:`guide_points`).
        cache_mb: video files and strips are decoded whole (resized) and kept in memory, first
            come first kept, until this budget (per process: each DataLoader worker has its
            own) is used; the others are read by seeking each time.  Seeking in H.264 decodes
            from the previous keyframe, so a small dataset is much faster cached.
    """

    def __init__(self, folder: str | Path, frame_shape: Sequence[int] = (256, 256, 3),
                 id_sampling: bool = False, num_repeats: int = 1,
                 augmentation: AugmentationParams | None = None, seed: int = 0,
                 cache_mb: float = 256, regions: bool = False,
                 expressive_pairs: float = 0.0, guides: bool = False,
                 eye_guides: str = "centres") -> None:
        self.folder = Path(folder)
        _check_crop(augmentation, frame_shape)
        self.videos = list_videos(self.folder, frame_shape)
        self.size = (int(frame_shape[1]), int(frame_shape[0]))  # (width, height)
        groups: OrderedDict[str, list[Video]] = OrderedDict()
        for item in self.videos:
            groups.setdefault(item.identity if id_sampling else item.name, []).append(item)
        self.groups = list(groups.values())
        self.num_repeats = max(1, int(num_repeats))
        self.augmentation = augmentation
        self.seed = seed
        self._counts: dict[Path, int] = {}
        self._bad: set[Path] = set()
        self._cache: dict[Path, np.ndarray] = {}  # (N, H, W, 3) uint8
        self._cache_left = int(cache_mb * 2**20)
        self.regions = regions
        self.expressive_pairs = expressive_pairs
        self.guides = guides
        self.eye_guides = eye_guides
        self._landmarks: dict[Path, np.ndarray] = {}
        self._expressions: dict[Path, np.ndarray] = {}
        if regions or guides or expressive_pairs > 0:  # fail now, not in a DataLoader worker
            for item in self.videos:
                points = load_landmarks(item, self._count(item))
                self._landmarks[item.path] = points
                self._expressions[item.path] = expression_features(points)
            balanced = balance_features(list(self._expressions.values()))
            self._expressions = dict(zip(self._expressions, balanced))

    def __len__(self) -> int:
        return len(self.groups) * self.num_repeats

    def __getitem__(self, key: int | tuple[int, int]) -> Pair:
        """Args: key: an index, or (epoch, index) as :class:`EpochSampler` yields them."""
        epoch, index = key if isinstance(key, tuple) else (0, key)
        rng = np.random.default_rng([self.seed, epoch, index])
        group = self.groups[index % len(self.groups)]
        last: Exception | None = None
        for _ in range(_MAX_TRIES):
            item = group[int(rng.integers(len(group)))] if len(group) > 1 else group[0]
            if item.path not in self._bad:
                try:
                    return self._pair(item, rng)
                except (FommError, OSError, IndexError, ValueError) as exc:
                    last = exc
                    self._bad.add(item.path)
                    report_once(str(item.path), f"skipping unreadable video {item.path}: {exc}")
            group = self.groups[int(rng.integers(len(self.groups)))]
        raise FommError(f"{self.folder}: found no readable video in {_MAX_TRIES} tries "
                        f"(last error: {last})")

    def _count(self, item: Video) -> int:
        if item.path not in self._counts:
            self._counts[item.path] = count_frames(item)
        return self._counts[item.path]

    def _pair(self, item: Video, rng: np.random.Generator) -> Pair:
        num_frames = self._count(item)
        if self.expressive_pairs > 0 and rng.random() < self.expressive_pairs:
            indices = expressive_pair(self._expressions[item.path], rng)
        else:
            indices = np.sort(rng.choice(num_frames, size=2, replace=True))
        frames = self._cached(item, num_frames)
        if frames is not None:
            frames = frames[indices]  # (2, H, W, 3) uint8
        else:
            frames = read_frames(item, indices.tolist(), self.size)
        if self.regions:  # a 4th channel, so that it goes through the same geometric changes
            maps = [region_map(p, self.size) for p in self._landmarks[item.path][indices]]
            frames = np.concatenate([frames, np.stack(maps)[..., None]], axis=-1)
        points = None
        if self.guides:
            points = guide_points(self._landmarks[item.path][indices], self.size,
                                  self.eye_guides)
        if self.augmentation is not None:
            frames, points = geometric(frames, points, self.augmentation, rng)
        guides = torch.zeros(0)
        if points is not None:
            size = (frames.shape[2], frames.shape[1])
            guides = torch.from_numpy(guide_targets(points, size))
        weight = torch.zeros(0)
        if self.regions:
            weight = torch.from_numpy(frames[-1, :, :, 3] / np.float32(255)).unsqueeze(0)
            frames = frames[..., :3]
        tensors = to_tensor(np.ascontiguousarray(frames))  # (2, 3, H, W)
        if self.augmentation is not None:
            tensors = colour_jitter(tensors, self.augmentation, rng)
        return Pair(tensors[0], tensors[1], item.name, weight, guides)

    def _cached(self, item: Video, num_frames: int) -> np.ndarray | None:
        if item.path in self._cache:
            return self._cache[item.path]
        nbytes = num_frames * self.size[0] * self.size[1] * 3
        if item.kind == "frames" or nbytes > self._cache_left:
            return None
        frames = np.stack(list(iter_video(item, self.size)))
        if len(frames) != num_frames:
            raise FommError(f"{item.path}: decoded {len(frames)} frames, expected {num_frames}")
        self._cache[item.path] = frames
        self._cache_left -= frames.nbytes
        return frames


class EpochSampler(Sampler[tuple[int, int]]):
    """Shuffled (epoch, index) keys for one rank, reproducible from (seed, epoch), resumable.

    Like ``DistributedSampler`` (padding by repetition so every rank gets ``ceil(n / world)``
    indices), plus ``skip``: the number of this rank's indices already consumed.  The epoch
    travels with each index, so persistent DataLoader workers need no notification.
    """

    def __init__(self, length: int, rank: int = 0, world_size: int = 1, seed: int = 0,
                 shuffle: bool = True) -> None:
        self.length, self.rank, self.world_size = length, rank, world_size
        self.seed, self.shuffle = seed, shuffle
        self.epoch, self.skip = 0, 0
        self.per_rank = math.ceil(length / world_size)

    def set_epoch(self, epoch: int, skip: int = 0) -> None:
        self.epoch, self.skip = epoch, skip

    def __iter__(self) -> Iterator[tuple[int, int]]:
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed + self.epoch)
            order = torch.randperm(self.length, generator=g).tolist()
        else:
            order = list(range(self.length))
        total = self.per_rank * self.world_size
        order = (order * math.ceil(total / self.length))[:total]
        mine = order[self.rank:total:self.world_size][self.skip:]
        return iter([(self.epoch, i) for i in mine])

    def __len__(self) -> int:
        return max(0, self.per_rank - self.skip)


def make_loader(dataset: FramesDataset, batch_size: int, sampler: EpochSampler,
                workers: int = 2, pin_memory: bool = False) -> DataLoader:
    """Batches of :class:`Pair` with the last incomplete batch dropped (as the original)."""
    if sampler.per_rank < batch_size:
        raise FommError(f"{dataset.folder}: {len(dataset)} items per epoch "
                        f"({len(dataset.groups)} videos x {dataset.num_repeats} repeats) is fewer "
                        f"than the batch size {batch_size} per process; add videos, raise "
                        "num_repeats or lower the batch size")
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=workers,
                      drop_last=True, pin_memory=pin_memory, persistent_workers=workers > 0,
                      worker_init_fn=_ignore_signals if workers > 0 else None,
                      generator=torch.Generator())  # not the global RNG: resumes stay exact


def _ignore_signals(worker_id: int) -> None:
    """Workers leave Ctrl-C / SIGTERM to the main process, which finishes its step and saves."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def read_pairs(path: str | Path, names: Sequence[str]) -> list[tuple[str, str]]:
    """The (source, driving) pairs of a ``pairs_list`` CSV whose videos are both in ``names``.

    Raises:
        FommError: the file is missing or lacks a ``source`` or ``driving`` column.
    """
    path = Path(path)
    if not path.is_file():
        raise FommError(f"{path}: pairs_list file not found")
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        columns = set(reader.fieldnames or ())
        for column in ("source", "driving"):
            if column not in columns:
                raise FommError(f"{path}: no '{column}' column (found: "
                                f"{', '.join(sorted(columns)) or 'nothing'})")
        known = set(names)
        return [(row["source"], row["driving"]) for row in reader
                if row["source"] in known and row["driving"] in known]
