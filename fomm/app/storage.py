"""Where a broker's job files live: a folder every process sees, or S3-compatible object storage.

With ``fomm serve --broker``, the API process that takes an upload and the worker that animates
it may run on different machines, so uploads and results go through a :class:`Storage` both
see. Keys are ``<job id>/<name>`` (``<id>/source.upload``, ``<id>/result-<attempt>.mp4``).

- :class:`DirectoryStorage` (the default): ``<data-dir>/jobs/<key>``, on a shared filesystem
  (NFS, CephFS, a cloud file share) when the processes run on several machines. Files are used
  in place: nothing is copied.
- :class:`S3Storage` (``--storage s3://bucket/prefix``, needs ``boto3``): objects under the
  prefix; the endpoint and credentials come from boto3's usual sources (``AWS_ENDPOINT_URL``
  for MinIO or another S3-compatible server, ``AWS_ACCESS_KEY_ID``, ...). Workers download the
  inputs to a scratch folder and upload the result; the API streams results to clients.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

from fomm.errors import FommError

CHUNK = 1 << 20


class Storage:
    """The operations the broker's API and workers need; keys are ``<job id>/<name>``."""

    kind = "storage"

    def put(self, key: str, path: Path) -> None:
        """Store the local file ``path`` as ``key`` (the file may be moved away)."""
        raise NotImplementedError

    def fetch(self, key: str, scratch: Path) -> Path:
        """A local path holding ``key``'s bytes: in place, or downloaded into ``scratch``."""
        raise NotImplementedError

    def local(self, key: str) -> Path | None:
        """The file of ``key`` if it is a local file (directory storage), else None."""
        return None

    def size(self, key: str) -> int | None:
        """Bytes of ``key``, or None when it does not exist."""
        raise NotImplementedError

    def stream(self, key: str) -> Iterator[bytes]:
        """``key``'s bytes in chunks."""
        raise NotImplementedError

    def remove(self, key: str) -> None:
        """Remove one file (no error if it is not there)."""
        raise NotImplementedError

    def delete(self, job_id: str) -> None:
        """Remove every file of one job (no error if there is none)."""
        raise NotImplementedError

    def keep_only(self, key: str) -> None:
        """Remove every file of ``key``'s job but ``key`` (inputs, a dead run's leftovers)."""
        raise NotImplementedError

    def ping(self) -> bool:
        """True when the storage answers (for /healthz)."""
        raise NotImplementedError


def _check_key(key: str) -> str:
    parts = key.split("/")
    if len(parts) != 2 or any(p in ("", ".", "..") for p in parts):
        raise ValueError(f"bad storage key {key!r}")
    return key


class DirectoryStorage(Storage):
    """Files under ``root`` (``<data-dir>/jobs``), shared by every process that mounts it."""

    kind = "directory"

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def path(self, key: str) -> Path:
        return self.root / _check_key(key)

    def put(self, key: str, path: Path) -> None:
        target = self.path(key)
        if Path(path).resolve() == target.resolve():
            return
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(f".{target.name}.partial")
        shutil.move(str(path), partial)  # a copy across filesystems, then one rename
        os.replace(partial, target)

    def fetch(self, key: str, scratch: Path) -> Path:
        path = self.path(key)
        if not path.is_file():
            raise FileNotFoundError(f"storage has no {key}")
        return path

    def local(self, key: str) -> Path | None:
        return self.path(key)

    def size(self, key: str) -> int | None:
        try:
            return self.path(key).stat().st_size
        except FileNotFoundError:
            return None

    def stream(self, key: str) -> Iterator[bytes]:
        with open(self.path(key), "rb") as f:
            while chunk := f.read(CHUNK):
                yield chunk

    def remove(self, key: str) -> None:
        self.path(key).unlink(missing_ok=True)

    def delete(self, job_id: str) -> None:
        _check_key(f"{job_id}/x")
        shutil.rmtree(self.root / job_id, ignore_errors=True)

    def keep_only(self, key: str) -> None:
        keep = self.path(key)
        for path in keep.parent.iterdir():
            if path != keep:
                shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)

    def ping(self) -> bool:
        return self.root.is_dir() and os.access(self.root, os.W_OK)


class S3Storage(Storage):
    """Objects ``<prefix>/<key>`` in ``bucket`` (boto3; any S3-compatible server).

    Args:
        url: ``s3://bucket`` or ``s3://bucket/prefix``.
        client: a boto3 S3 client (default: ``boto3.client("s3")`` from the environment).
    """

    kind = "s3"

    def __init__(self, url: str, client=None) -> None:
        parts = urlsplit(url)
        if parts.scheme != "s3" or not parts.netloc:
            raise FommError(f"--storage {url}: expected s3://BUCKET or s3://BUCKET/PREFIX")
        self.bucket, self.prefix = parts.netloc, parts.path.strip("/")
        if client is None:
            try:
                import boto3
            except ImportError as err:
                raise FommError("--storage s3://... needs boto3: pip install 'fomm[redis]'") \
                    from err
            client = boto3.client("s3")
        self.client = client

    def _name(self, key: str) -> str:
        key = _check_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def put(self, key: str, path: Path) -> None:
        self.client.upload_file(str(path), self.bucket, self._name(key))

    def fetch(self, key: str, scratch: Path) -> Path:
        scratch.mkdir(parents=True, exist_ok=True)
        target = scratch / key.split("/")[1]
        self.client.download_file(self.bucket, self._name(key), str(target))
        return target

    def size(self, key: str) -> int | None:
        from botocore.exceptions import ClientError

        try:
            return self.client.head_object(Bucket=self.bucket, Key=self._name(key))[
                "ContentLength"]
        except ClientError as err:
            if err.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return None
            raise

    def stream(self, key: str) -> Iterator[bytes]:
        body = self.client.get_object(Bucket=self.bucket, Key=self._name(key))["Body"]
        with contextlib.closing(body):
            yield from body.iter_chunks(CHUNK)

    def remove(self, key: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=self._name(key))

    def delete(self, job_id: str) -> None:
        prefix = self._name(f"{job_id}/x")[:-1]
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket,
                                                                      Prefix=prefix)
        for page in pages:
            keys = [{"Key": item["Key"]} for item in page.get("Contents", [])]
            if keys:
                self.client.delete_objects(Bucket=self.bucket, Delete={"Objects": keys})

    def keep_only(self, key: str) -> None:
        keep = self._name(key)
        prefix = keep.rsplit("/", 1)[0] + "/"
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket,
                                                                      Prefix=prefix)
        for page in pages:
            keys = [{"Key": item["Key"]} for item in page.get("Contents", [])
                    if item["Key"] != keep]
            if keys:
                self.client.delete_objects(Bucket=self.bucket, Delete={"Objects": keys})

    def ping(self) -> bool:
        try:
            self.client.head_bucket(Bucket=self.bucket)
            return True
        except Exception:  # any failure (network, auth, no bucket) is "not ok" for /healthz
            return False


def open_storage(spec: str | None, data_dir: str | Path) -> Storage:
    """``--storage`` → a Storage: None or a path → directory (default ``<data-dir>/jobs``)."""
    if spec and spec.startswith("s3://"):
        return S3Storage(spec)
    if spec and "://" in spec:
        raise FommError(f"--storage {spec}: give a folder or s3://BUCKET/PREFIX")
    return DirectoryStorage(spec or Path(data_dir) / "jobs")


class DiskSpace:
    """Free space on the filesystem of a folder, against a margin kept for results.

    An upload is accepted only when its size and the margin fit in the free space (else
    :meth:`check` raises a ``507``), and the storage reads as degraded (``/healthz``) while less
    than the margin is free.

    Args:
        folder: a folder on the filesystem that receives uploads and results.
        margin_bytes: what must stay free besides an incoming upload (room for its result).
    """

    def __init__(self, folder: str | Path, margin_bytes: int) -> None:
        self.folder, self.margin = Path(folder), max(0, int(margin_bytes))

    def free(self) -> int | None:
        """Bytes free to this process, or None when the folder cannot be measured."""
        try:
            return shutil.disk_usage(self.folder).free
        except OSError:
            return None

    def ok(self) -> bool:
        """At least the margin is free (or the folder cannot be measured)."""
        free = self.free()
        return free is None or free >= self.margin

    def check(self, incoming: int = 0) -> None:
        """Raise ``UploadError(507)`` unless ``incoming`` bytes and the margin fit."""
        from fomm.app.uploads import MB, UploadError

        free = self.free()
        if free is not None and free < incoming + self.margin:
            raise UploadError(507, "insufficient_storage",
                              f"the server is short of disk space ({free / MB:.0f} MB free, "
                              f"{(incoming + self.margin) / MB:.0f} MB needed for this upload "
                              "and its result); try again later")
