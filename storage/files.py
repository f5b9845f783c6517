"""File storage that survives an ephemeral disk: one small interface, two places to keep files.

* :class:`LocalDirectoryStore` — a directory: development (embedded mode, under the data
  directory) and self-hosted volumes (``LAMPLIGHTER_FILES_URL=file:///srv/lamplighter-files``).
* :class:`S3Store` — an S3-compatible object store (``s3://bucket/prefix``), over boto3.

Both record the SHA-256 of what was put and check it on every get: a file that changed (or was
cut short) since it was written raises :class:`ChecksumMismatch` instead of being handed back.
Keys are ``/``-separated relative paths, checked by :func:`validate_key`: no ``..``, no hidden
segments, no absolute paths, so no key reaches outside the store's directory or prefix.

:func:`open_store` picks the store from the settings. With ``DATABASE_URL`` set (a deployment,
where a dyno's disk is erased by every restart) and no ``LAMPLIGHTER_FILES_URL``, it raises
:class:`NoDurableFileStore` rather than writing where the file would be lost; actors/files.py
turns that into a permanent failure of the job.
"""
from __future__ import annotations

import hashlib
import io
import os
import re
import tempfile
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import BinaryIO, Iterator, Protocol
from urllib.parse import urlsplit

from storage import settings as settings_module

CHUNK = 1024 * 1024
MAX_KEY_BYTES = 1024  # S3's limit on a key
_SEGMENT = re.compile(r"^[A-Za-z0-9_\-=+@,~!][A-Za-z0-9_.\-=+@,~!]{0,199}$")  # room for ".<name>.sha256"


class FileStoreError(Exception):
    """Base of the file store's errors; messages name the store and key, never a credential."""


class InvalidKey(FileStoreError, ValueError):
    """A key that is not a clean relative path (``..``, a leading ``/``, hidden segments...)."""


class FileMissing(FileStoreError, LookupError):
    """No file under this key."""


class ChecksumMismatch(FileStoreError):
    """The stored bytes do not match the SHA-256 recorded when they were put (or none was)."""


class FileStoreUnavailable(FileStoreError):
    """The store cannot be reached or answered with a transient error; trying later may work."""


class FileStoreMisconfigured(FileStoreError):
    """The store refuses us or does not exist (no bucket, access denied, no such directory):
    trying again will not help until an operator changes something."""


class NoDurableFileStore(FileStoreMisconfigured):
    """DATABASE_URL is set and LAMPLIGHTER_FILES_URL is not: there is nowhere to keep files
    that outlives the process's disk."""


@dataclass(frozen=True)
class StoredFile:
    key: str
    size: int
    sha256: str | None  # hex; None in listings (S3 would need one request per file for it)
    modified: datetime | None = None


class FileStore(Protocol):
    """What a job that persists files is given (as a port, like the domain's other ports)."""

    def put(self, key: str, data: bytes | BinaryIO) -> StoredFile: ...

    def get(self, key: str) -> bytes: ...

    def copy_to(self, key: str, destination: BinaryIO) -> StoredFile: ...

    def stat(self, key: str) -> StoredFile: ...

    def delete(self, key: str) -> None: ...

    def list(self, prefix: str = "") -> Iterator[StoredFile]: ...


def validate_key(key: str, *, prefix: bool = False) -> str:
    """``key`` if it is a clean relative path of safe segments; else InvalidKey. A ``prefix`` (for
    listing) may be empty, and may end with ``/``."""
    if not isinstance(key, str):
        raise InvalidKey(f"file key must be a string, not {type(key).__name__}")
    body = key[:-1] if prefix and key.endswith("/") else key
    if prefix and not body:
        return key
    if len(key.encode()) > MAX_KEY_BYTES:
        raise InvalidKey(f"file key longer than {MAX_KEY_BYTES} bytes")
    for segment in body.split("/"):
        if segment in ("", ".", ".."):
            raise InvalidKey(f"file key {key!r}: empty, '.' and '..' segments (and a leading '/') are not allowed")
        if not _SEGMENT.match(segment):
            raise InvalidKey(f"file key {key!r}: segments are letters, digits and _ - . = + @ , ~ ! "
                             "(not starting with '.'), up to 200 each")
    return key


class _Hashing:
    """Reads a source in chunks and keeps the SHA-256 and size of what it read."""

    def __init__(self, data: bytes | BinaryIO):
        self.source = io.BytesIO(data) if isinstance(data, (bytes, bytearray, memoryview)) else data
        self.sha256 = hashlib.sha256()
        self.size = 0

    def chunks(self) -> Iterator[bytes]:
        while chunk := self.source.read(CHUNK):
            self.sha256.update(chunk)
            self.size += len(chunk)
            yield chunk


def _verify(key: str, expected: str | None, actual: str) -> None:
    if expected is None:
        raise ChecksumMismatch(f"file {key!r} has no recorded sha256; not handed back unchecked")
    if expected != actual:
        raise ChecksumMismatch(f"file {key!r}: sha256 {actual} does not match the recorded {expected}")


class LocalDirectoryStore:
    """Files under ``root``; each file's SHA-256 in a hidden ``.<name>.sha256`` beside it (the
    ``sha256sum`` format, so ``sha256sum -c`` checks it too). A put writes both to temporary
    files, fsyncs, and renames them into place: a reader never sees half a file. A crash
    between the two renames leaves a pair that disagrees, which get reports as a mismatch."""

    def __init__(self, root: Path, *, create: bool = False):
        self.root = Path(root)
        self.create = create

    def __repr__(self) -> str:
        return f"LocalDirectoryStore({str(self.root)!r})"

    def _base(self) -> Path:
        if not self.root.is_dir():
            if not self.create:
                # A configured volume that is not mounted must not turn into a fresh directory
                # on the ephemeral disk beneath it.
                raise FileStoreMisconfigured(f"file store directory {self.root} does not exist (is the volume mounted?)")
            self.root.mkdir(parents=True, exist_ok=True)
        return self.root

    def _paths(self, key: str) -> tuple[Path, Path]:
        path = self._base().joinpath(*validate_key(key).split("/"))
        return path, path.with_name(f".{path.name}.sha256")

    def put(self, key: str, data: bytes | BinaryIO) -> StoredFile:
        path, checksum_path = self._paths(key)
        reading = _Hashing(data)
        temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
        temporary_sum = temporary.with_suffix(".sha256.tmp")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(temporary, "xb") as out:
                for chunk in reading.chunks():
                    out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
            digest = reading.sha256.hexdigest()
            with open(temporary_sum, "x") as out:
                out.write(f"{digest}  {path.name}\n")
                out.flush()
                os.fsync(out.fileno())
            os.replace(temporary_sum, checksum_path)
            os.replace(temporary, path)
            _fsync_directory(path.parent)
        except PermissionError as exc:
            raise FileStoreMisconfigured(f"cannot write {key!r} under {self.root}: permission denied") from exc
        except OSError as exc:
            raise FileStoreUnavailable(f"cannot write {key!r} under {self.root}: {exc.strerror or exc}") from exc
        finally:
            for leftover in (temporary, temporary_sum):
                leftover.unlink(missing_ok=True)
        return StoredFile(key, reading.size, digest, _mtime(path))

    def _recorded(self, key: str, path: Path, checksum_path: Path) -> str | None:
        if not path.is_file():
            raise FileMissing(f"no file {key!r} in {self.root}")
        try:
            return checksum_path.read_text().split()[0]
        except (FileNotFoundError, IndexError):
            return None

    def copy_to(self, key: str, destination: BinaryIO) -> StoredFile:
        path, checksum_path = self._paths(key)
        expected = self._recorded(key, path, checksum_path)
        try:
            with open(path, "rb") as source:
                reading = _Hashing(source)
                for chunk in reading.chunks():
                    destination.write(chunk)
        except FileNotFoundError:
            raise FileMissing(f"no file {key!r} in {self.root}") from None
        _verify(key, expected, reading.sha256.hexdigest())
        return StoredFile(key, reading.size, expected, _mtime(path))

    def get(self, key: str) -> bytes:
        buffer = io.BytesIO()
        self.copy_to(key, buffer)
        return buffer.getvalue()

    def stat(self, key: str) -> StoredFile:
        path, checksum_path = self._paths(key)
        expected = self._recorded(key, path, checksum_path)
        return StoredFile(key, path.stat().st_size, expected, _mtime(path))

    def delete(self, key: str) -> None:
        path, checksum_path = self._paths(key)
        path.unlink(missing_ok=True)
        checksum_path.unlink(missing_ok=True)
        parent = path.parent
        while parent != self.root and parent.is_dir() and not any(parent.iterdir()):
            parent.rmdir()
            parent = parent.parent

    def list(self, prefix: str = "") -> Iterator[StoredFile]:
        validate_key(prefix, prefix=True)
        root = self._base()
        # Walk only the directory the prefix names, then match the rest of it by name.
        start = root.joinpath(*prefix.split("/")[:-1]) if "/" in prefix else root
        if not start.is_dir():
            return
        found = []
        for directory, subdirectories, names in os.walk(start):
            subdirectories[:] = [d for d in subdirectories if not d.startswith(".")]
            base = Path(directory).relative_to(root)
            for name in names:
                key = "/".join((*base.parts, name))
                if not name.startswith(".") and key.startswith(prefix):
                    found.append(key)
        for key in sorted(found):
            path = root.joinpath(*key.split("/"))
            try:
                yield StoredFile(key, path.stat().st_size, None, _mtime(path))
            except FileNotFoundError:  # deleted while listing
                continue


def _mtime(path: Path) -> datetime:
    return datetime.fromtimestamp(path.stat().st_mtime, tz=timezone.utc)


def _fsync_directory(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# Error codes S3 (and compatible servers) answer that no retry will fix.
_REFUSALS = {"AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "NoSuchBucket", "AllAccessDisabled",
             "InvalidBucketName", "AuthorizationHeaderMalformed", "PermanentRedirect", "403", "301"}


class S3Store:
    """Objects in ``bucket`` under ``prefix``, the SHA-256 in each object's user metadata
    (``x-amz-meta-sha256``), computed here rather than by the server, so any S3-compatible
    server will do. Every request has the outbound timeouts; botocore's standard retry mode
    retries throttling and 5xx a few times, then the call raises FileStoreUnavailable."""

    METADATA_KEY = "sha256"

    def __init__(self, bucket: str, prefix: str = "", *, client=None, endpoint: str = "", region: str = "",
                 access_key_id: str = "", secret_access_key: str = "", addressing: str = "auto",
                 connect_timeout: float = 5.0, read_timeout: float = 30.0, max_attempts: int = 3):
        import boto3
        from botocore.config import Config

        self.bucket = bucket
        self.prefix = validate_key(prefix, prefix=True) if prefix else ""
        if self.prefix and not self.prefix.endswith("/"):
            self.prefix += "/"
        style = addressing if addressing != "auto" else ("path" if endpoint else "auto")
        config = Config(connect_timeout=connect_timeout, read_timeout=read_timeout,
                        retries={"mode": "standard", "max_attempts": max_attempts}, s3={"addressing_style": style},
                        # Our own SHA-256 checks the bytes end to end; botocore's newer default
                        # checksums are not understood by every S3-compatible server.
                        request_checksum_calculation="when_required", response_checksum_validation="when_required")
        self.client = client or boto3.session.Session().client(
            "s3", endpoint_url=endpoint or None, region_name=region or "us-east-1", config=config,
            aws_access_key_id=access_key_id or None, aws_secret_access_key=secret_access_key or None)

    def __repr__(self) -> str:
        return f"S3Store('s3://{self.bucket}/{self.prefix}')"

    def _name(self, key: str) -> str:
        return self.prefix + validate_key(key)

    def _failure(self, key: str, action: str, exc: Exception) -> FileStoreError:
        from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

        where = f"s3://{self.bucket}/{self.prefix}{key}"
        if isinstance(exc, ClientError):
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code in ("NoSuchKey", "404", "NotFound"):
                return FileMissing(f"no file {key!r} in s3://{self.bucket}/{self.prefix}")
            if code in _REFUSALS:
                return FileStoreMisconfigured(f"cannot {action} {where}: {code}")
            return FileStoreUnavailable(f"cannot {action} {where}: {code or 'error'}")
        if isinstance(exc, NoCredentialsError):
            return FileStoreMisconfigured(f"cannot {action} {where}: no S3 credentials "
                                          "(LAMPLIGHTER_FILES_S3_ACCESS_KEY_ID / _SECRET_ACCESS_KEY)")
        if isinstance(exc, BotoCoreError):
            return FileStoreUnavailable(f"cannot {action} {where}: {type(exc).__name__}")
        return FileStoreUnavailable(f"cannot {action} {where}: {type(exc).__name__}")

    def _call(self, key: str, action: str, method, **kwargs):
        from boto3.exceptions import Boto3Error
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return method(**kwargs)
        except (BotoCoreError, ClientError) as exc:
            raise self._failure(key, action, exc) from None
        except Boto3Error as exc:  # a managed transfer's wrapper (S3UploadFailedError) around the real error
            inner = exc.__cause__ or exc.__context__
            raise self._failure(key, action, inner if isinstance(inner, (BotoCoreError, ClientError)) else exc) \
                from None

    def put(self, key: str, data: bytes | BinaryIO) -> StoredFile:
        from boto3.s3.transfer import TransferConfig

        name = self._name(key)
        # The checksum goes in the metadata, which is sent before the body: read the source
        # once into a spool (memory up to 8 MiB, then a temporary file), hashing as it goes.
        reading = _Hashing(data)
        with tempfile.SpooledTemporaryFile(max_size=8 * CHUNK) as spool:
            for chunk in reading.chunks():
                spool.write(chunk)
            spool.seek(0)
            digest = reading.sha256.hexdigest()
            self._call(key, "put", self.client.upload_fileobj, Fileobj=spool, Bucket=self.bucket, Key=name,
                       ExtraArgs={"Metadata": {self.METADATA_KEY: digest}},
                       Config=TransferConfig(use_threads=False, multipart_threshold=64 * CHUNK,
                                             multipart_chunksize=64 * CHUNK))
        return StoredFile(key, reading.size, digest)

    def copy_to(self, key: str, destination: BinaryIO) -> StoredFile:
        answer = self._call(key, "get", self.client.get_object, Bucket=self.bucket, Key=self._name(key))
        expected = answer.get("Metadata", {}).get(self.METADATA_KEY)
        reading = _Hashing(answer["Body"])
        try:
            for chunk in reading.chunks():
                destination.write(chunk)
        except Exception as exc:  # the body is read from the network, through botocore
            raise self._failure(key, "read", exc) from None
        finally:
            answer["Body"].close()
        _verify(key, expected, reading.sha256.hexdigest())
        return StoredFile(key, reading.size, expected, answer.get("LastModified"))

    def get(self, key: str) -> bytes:
        buffer = io.BytesIO()
        self.copy_to(key, buffer)
        return buffer.getvalue()

    def stat(self, key: str) -> StoredFile:
        answer = self._call(key, "stat", self.client.head_object, Bucket=self.bucket, Key=self._name(key))
        return StoredFile(key, answer["ContentLength"], answer.get("Metadata", {}).get(self.METADATA_KEY),
                          answer.get("LastModified"))

    def delete(self, key: str) -> None:
        self._call(key, "delete", self.client.delete_object, Bucket=self.bucket, Key=self._name(key))

    def list(self, prefix: str = "") -> Iterator[StoredFile]:
        validate_key(prefix, prefix=True)
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=self.prefix + prefix)
        try:
            for page in pages:
                for item in page.get("Contents", ()):
                    yield StoredFile(item["Key"][len(self.prefix):], item["Size"], None, item.get("LastModified"))
        except Exception as exc:
            raise self._failure(prefix, "list", exc) from None


def open_store(current: settings_module.Settings | None = None) -> FileStore:
    """The store the settings name. Without LAMPLIGHTER_FILES_URL: a directory under the data
    directory when embedded; with DATABASE_URL set, NoDurableFileStore."""
    current = current or settings_module.get()
    if not current.files_url:
        if current.embedded:
            return LocalDirectoryStore(current.data_dir / "files", create=True)
        raise NoDurableFileStore(
            "no durable file store: LAMPLIGHTER_FILES_URL is not set, and with DATABASE_URL set this process's "
            "disk may be erased by the next restart (a Heroku dyno's is). Set LAMPLIGHTER_FILES_URL to "
            "s3://bucket/prefix (with LAMPLIGHTER_FILES_S3_* settings) or to file:///path on a persistent volume")
    parts = urlsplit(current.files_url)
    if parts.scheme == "file":
        return LocalDirectoryStore(Path(parts.path))
    return S3Store(parts.netloc, parts.path.strip("/"), endpoint=current.files_s3_endpoint,
                   region=current.files_s3_region, access_key_id=current.files_s3_access_key_id,
                   secret_access_key=current.files_s3_secret_access_key, addressing=current.files_s3_addressing,
                   connect_timeout=current.http_connect_timeout, read_timeout=current.http_read_timeout)
