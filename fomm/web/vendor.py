"""onnxruntime-web, the runtime the browser page runs its networks on: a pinned npm release.

The few files the page needs (the WASM SIMD + threads build, and the WebGPU build that pages load
only where the browser has WebGPU) are taken from the npm registry's tarball of one pinned
version, checked against the registry's sha512 integrity, and kept in ``fomm/web/vendor/`` (not
in git: about 45 MB). ``scripts/fetch_onnxruntime_web.sh`` (``python -m fomm.web.vendor``) fetches
them once, at install time; :func:`vendored_files` checks each file's sha256 when a site is built
and never downloads. Licence: MIT, Copyright (c) Microsoft Corporation
(``fomm/web/vendor/LICENSE-onnxruntime-web.txt``, copied into every site).
"""

from __future__ import annotations

import base64
import hashlib
import io
import sys
import tarfile
import urllib.request
from pathlib import Path

from fomm.errors import FommError

VERSION = "1.31.1"
TARBALL = f"https://registry.npmjs.org/onnxruntime-web/-/onnxruntime-web-{VERSION}.tgz"
# the registry's dist.integrity for that tarball (`npm view onnxruntime-web@VERSION dist`)
INTEGRITY = ("sha512-5GeH+bWQ+HxM10z7erGlsWqryrwMbSvm/1tkIsKTT48g0fI19VXVVC435t4t7VsPdSQeS7"
             "NmuZPXrQ73k82URw==")
VENDOR = Path(__file__).with_name("vendor") / "onnxruntime-web"
LICENCE = Path(__file__).with_name("vendor") / "LICENSE-onnxruntime-web.txt"
# dist/ file → sha256; "wasm": what every page loads, "webgpu": only where WebGPU is there
FILES = {
    "wasm": {
        "ort.wasm.min.mjs":
            "c21d9c326d453a4a61398270c804d5979e118540597cb0c07f7b3d64e6098234",
        "ort-wasm-simd-threaded.mjs":
            "30ed0b5cd1182ede931fea448afb567d4dc705ec957af09f108a2be5f770dac3",
        "ort-wasm-simd-threaded.wasm":
            "4b884c203b0fa48d057be3332c65513ff85aa3c5bddd6946acc0fab7ecda001d",
    },
    "webgpu": {
        "ort.webgpu.min.mjs":
            "329cd956772397a1aedd668e911195d39afefb182f6fc14aafa4f08ac8d8f379",
        "ort-wasm-simd-threaded.asyncify.mjs":
            "59cf781530e1a16df2a291d78798e3ec1152467edaec402d6f9599d85047c302",
        "ort-wasm-simd-threaded.asyncify.wasm":
            "ca319e9539cd0f1e291cf56074760121eaf39650f5dbf84b6e52c07f4b2944ec",
    },
}
FETCH_HINT = "bash scripts/fetch_onnxruntime_web.sh (python -m fomm.web.vendor)"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def vendored_files(webgpu: bool = True, folder: Path = VENDOR) -> list[Path]:
    """The onnxruntime-web files a site carries, each checked against its pinned sha256.

    Args:
        webgpu: include the WebGPU build (about 29 MB more, loaded only by WebGPU browsers).
        folder: where :func:`fetch` put them.
    Raises:
        FommError: a file is missing or differs from the pinned release (naming the fetch
            command).
    """
    groups = ["wasm", "webgpu"] if webgpu else ["wasm"]
    paths = []
    for group in groups:
        for name, expected in FILES[group].items():
            path = folder / name
            if not path.is_file():
                raise FommError(f"onnxruntime-web {VERSION} is not installed ({path} is "
                                f"missing): run {FETCH_HINT}")
            if _sha256(path) != expected:
                raise FommError(f"{path} differs from onnxruntime-web {VERSION}: run "
                                f"{FETCH_HINT} again")
            paths.append(path)
    return paths


def fetch(folder: Path = VENDOR, url: str = TARBALL) -> list[Path]:
    """Download the pinned onnxruntime-web tarball from the npm registry, check its integrity
    and write the files of :data:`FILES` to ``folder``; files already there and intact are kept.

    Raises:
        FommError: the tarball's sha512 or a file's sha256 differs from the pinned one.
    """
    try:
        return vendored_files(True, folder)
    except FommError:
        pass
    with urllib.request.urlopen(url, timeout=120) as response:  # noqa: S310 (a fixed https URL)
        data = response.read()
    algorithm, _, expected = INTEGRITY.partition("-")
    got = base64.b64encode(hashlib.new(algorithm, data).digest()).decode()
    if got != expected:
        raise FommError(f"{url}: integrity {algorithm}-{got} differs from the pinned {INTEGRITY}")
    folder.mkdir(parents=True, exist_ok=True)
    wanted = {name for group in FILES.values() for name in group}
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        for member in tar.getmembers():
            name = member.name.removeprefix("package/dist/")
            if name in wanted and member.isfile():
                extracted = tar.extractfile(member)
                assert extracted is not None
                (folder / name).write_bytes(extracted.read())
    return vendored_files(True, folder)


def main() -> None:
    """``python -m fomm.web.vendor``: fetch onnxruntime-web (see :func:`fetch`)."""
    try:
        paths = fetch()
    except FommError as err:
        sys.exit(f"fetch_onnxruntime_web: {err}")
    size = sum(p.stat().st_size for p in paths) / 1e6
    print(f"onnxruntime-web {VERSION}: {len(paths)} files, {size:.1f} MB in {VENDOR}")


if __name__ == "__main__":
    main()
