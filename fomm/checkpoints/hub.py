"""Official weights by name: the list, where each comes from, and a cached, resumable download.

Nothing here runs unless asked (``fomm weights download NAME``); ``-c NAME`` then finds the file
in the per-user cache (:func:`fomm.checkpoints.resolve`). Downloads go to ``NAME.part`` beside
the final file (resumed with an HTTP ``Range`` request after an interruption), are checked by a
recorded SHA-256 when there is one and by loading them strictly, and only then renamed into
place.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from fomm.errors import CheckpointError, FommError

PADDLE_URL = "https://paddlegan.bj.bcebos.com/applications/first_order_model/"
ORIGINAL_LINKS = ("Google Drive https://drive.google.com/open?id=1PyQJmkdCsAkOYwUyaj_l-l0as-iLDgeH"
                  " or Yandex Disk https://yadi.sk/d/lEw8uRm140L_eQ")
CHUNK = 1 << 20


@dataclass(frozen=True)
class Weights:
    """One named checkpoint: where it comes from and how fomm loads it."""

    name: str
    origin: str
    animates: str
    licence: str
    config: str                # preset that fits it (passed to the strict load check)
    url: str | None = None     # None: no direct link (see ``where``)
    sha256: str | None = None  # recorded once known; checked after each download
    where: str = ""            # how to get it by hand


_PADDLE_LICENCE = "PaddleGAN (Apache-2.0 code); trained on VoxCeleb"
_ORIGINAL_LICENCE = "first-order-model (MIT code); trained on its dataset"
WEIGHTS: dict[str, Weights] = {w.name: w for w in [
    Weights("vox-cpk.pdparams", "PaddleGAN", "faces (VoxCeleb), 256²", _PADDLE_LICENCE,
            "paddle-vox-256", PADDLE_URL + "vox-cpk.pdparams"),
    Weights("vox-mobile.pdparams", "PaddleGAN", "faces (VoxCeleb), 256², mobile", _PADDLE_LICENCE,
            "paddle-vox-mobile-256", PADDLE_URL + "vox-mobile.pdparams"),
    Weights("vox-cpk-512.pdparams", "PaddleGAN", "faces (VoxCeleb), 512²", _PADDLE_LICENCE,
            "paddle-vox-512", PADDLE_URL + "vox-cpk-512.pdparams"),
    *(Weights(name, "first-order-model", what, _ORIGINAL_LICENCE, config, where=ORIGINAL_LINKS)
      for name, what, config in [
          ("vox-cpk.pth.tar", "faces (VoxCeleb), 256²", "vox-256"),
          ("vox-adv-cpk.pth.tar", "faces (VoxCeleb, adversarial), 256²", "vox-adv-256"),
          ("taichi-cpk.pth.tar", "bodies (Tai-Chi), 256², --no-crop", "taichi-256"),
          ("taichi-adv-cpk.pth.tar", "bodies (Tai-Chi, adversarial), 256²", "taichi-adv-256"),
          ("mgif-cpk.pth.tar", "cartoon animals (MGif), 256², --no-crop", "mgif-256"),
          ("bair-cpk.pth.tar", "robot arm (BAIR), 256², --no-crop", "bair-256"),
          ("fashion.pth.tar", "fashion models, 256², --no-crop", "fashion-256"),
          ("nemo-cpk.pth.tar", "smiles (Nemo), 256², --no-crop", "nemo-256"),
      ])]}


def cache_dir() -> Path:
    """Where downloaded weights live: ``$FOMM_CACHE`` or the per-user cache (platformdirs)."""
    if os.environ.get("FOMM_CACHE"):
        return Path(os.environ["FOMM_CACHE"])
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("fomm")) / "weights"


def cached_path(name: str) -> Path | None:
    """The downloaded file for ``name``, or None."""
    path = cache_dir() / name
    return path if path.is_file() else None


def how_to_get(name: str) -> str:
    """One sentence saying how to obtain the named weights (for "not found" errors)."""
    w = WEIGHTS.get(Path(name).name)
    if w is None:
        return ("official checkpoints: `fomm weights list`; PaddleGAN's download with "
                "`fomm weights download NAME`; the original's .pth.tar files are at "
                f"{ORIGINAL_LINKS}")
    if w.url:
        return f"download it with `fomm weights download {w.name}`, then pass -c {w.name}"
    return (f"{w.name} has no direct link: get it from {w.where} (the original authors' "
            f"folder), then pass -c PATH/{w.name}")


def sha256_of(path: Path) -> str:
    """Hex SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def _open(url: str, start: int, timeout: float):
    request = urllib.request.Request(url, headers={"User-Agent": "fomm"})
    if start:
        request.add_header("Range", f"bytes={start}-")
    try:
        return urllib.request.urlopen(request, timeout=timeout)  # noqa: S310 (https/http only)
    except urllib.error.HTTPError as err:
        if err.code == 416 and start:  # the part file is already complete
            return None
        raise FommError(f"cannot download {url}: HTTP {err.code} {err.reason}") from err
    except (TimeoutError, OSError, http.client.HTTPException) as err:  # URLError is an OSError
        reason = getattr(err, "reason", err)
        raise FommError(f"cannot download {url}: {reason} (no network? download it by hand "
                        "and pass -c PATH)") from err


def _fetch(url: str, part: Path, timeout: float, progress: bool) -> None:
    """Append ``url``'s bytes to ``part`` from where it stops (HTTP Range), with a progress bar."""
    from tqdm import tqdm

    start = part.stat().st_size if part.exists() else 0
    response = _open(url, start, timeout)
    if response is None:
        return
    with response:
        if start and response.status != 206:  # the server ignored Range: start again
            start = 0
        length = response.headers.get("Content-Length")
        total = start + int(length) if length is not None else None
        with open(part, "ab" if start else "wb") as f, tqdm(
                total=total, initial=start, unit="B", unit_scale=True, unit_divisor=1024,
                desc=part.name.removesuffix(".part"), disable=not progress) as bar:
            try:
                for block in iter(lambda: response.read(CHUNK), b""):
                    f.write(block)
                    bar.update(len(block))
            except (TimeoutError, OSError, http.client.HTTPException) as err:
                raise FommError(f"download of {url} interrupted after {f.tell():,} bytes "
                                f"({err}); run the same command again to resume") from err
    if total is not None and part.stat().st_size != total:
        raise FommError(f"download of {url} stopped at {part.stat().st_size:,} of {total:,} "
                        "bytes; run the same command again to resume")


def _verify(part: Path, w: Weights) -> None:
    """Recorded SHA-256 (when known), then a strict load; a bad file is deleted."""
    if w.sha256 is not None and sha256_of(part) != w.sha256:
        part.unlink()
        raise CheckpointError(f"{w.name}: downloaded file does not match its recorded SHA-256; "
                              "removed it, try again")
    from fomm.checkpoints.formats import load_checkpoint

    try:
        load_checkpoint(part, config=w.config)
    except FommError as err:
        part.unlink()
        raise CheckpointError(f"{w.name}: the downloaded file is not a valid checkpoint ({err}); "
                              "removed it, try again") from err


def download(name: str, *, folder: Path | None = None, url: str | None = None,
             progress: bool = True, timeout: float = 30.0, force: bool = False) -> Path:
    """Download the named weights into the cache (or ``folder``) and return the file's path.

    Args:
        name: a name from :data:`WEIGHTS` with a URL.
        url: another address for the same file (a mirror; the tests' local server).
        force: download again even if the file is cached.
    Raises:
        FommError: unknown name, no direct link, network errors (the partial file is kept, the
            next call resumes it), or a file that fails verification (deleted).
    """
    w = WEIGHTS.get(name)
    if w is None:
        raise FommError(f"unknown weights '{name}'; known: {', '.join(WEIGHTS)}")
    if w.url is None and url is None:
        raise FommError(how_to_get(name))
    folder = folder or cache_dir()
    final = folder / name
    if final.is_file() and not force:
        return final
    folder.mkdir(parents=True, exist_ok=True)
    part = folder / f"{name}.part"
    _fetch(url or w.url, part, timeout, progress)
    _verify(part, w)
    os.replace(part, final)
    return final


def table() -> list[tuple[str, str, str, str, str]]:
    """Rows (name, origin, size or state, licence, what it animates) for ``fomm weights list``."""
    rows = []
    for w in WEIGHTS.values():
        cached = cached_path(w.name)
        if cached is not None:
            state = f"{cached.stat().st_size / 2**20:.0f} MiB, cached"
        else:
            state = "downloadable" if w.url else "by hand"
        rows.append((w.name, w.origin, state, w.licence, w.animates))
    return rows
