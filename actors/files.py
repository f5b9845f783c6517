"""The file store as jobs use it: storage/files.py's errors spoken in the outcome vocabulary.

An actor that persists files (reports, archives, backups, documents, federation files) takes
its store from :func:`job_files` and passes it to the domain as a port:

    files = job_files()        # PermanentFailure at once when there is no durable store
    return reports.daily(files, ...)

* no durable store (DATABASE_URL set, LAMPLIGHTER_FILES_URL not), access denied, no such
  bucket or directory, an invalid key -> PermanentFailure: retrying cannot help until an
  operator changes something, and nothing is written to a disk a restart erases;
* the store unreachable or answering a transient error -> RetryLater (the actor's policy);
* a checksum mismatch is left as it is: a failure retried per the actor's policy;
* FileMissing is left to the domain, which may expect it.
"""
from __future__ import annotations

import functools
from typing import BinaryIO, Iterator

from domain.outcomes import PermanentFailure, RetryLater
from storage import files
from storage import settings as settings_module


def _outcomes(method):
    @functools.wraps(method)
    def call(self, *args, **kwargs):
        try:
            return method(self, *args, **kwargs)
        except (files.FileStoreMisconfigured, files.InvalidKey) as exc:
            raise PermanentFailure(str(exc)) from None
        except files.FileStoreUnavailable as exc:
            raise RetryLater(str(exc)) from None
    return call


class JobFiles:
    """A :class:`storage.files.FileStore` whose errors are job outcomes."""

    def __init__(self, store: files.FileStore):
        self.store = store

    def __repr__(self) -> str:
        return f"JobFiles({self.store!r})"

    @_outcomes
    def put(self, key: str, data: bytes | BinaryIO) -> files.StoredFile:
        return self.store.put(key, data)

    @_outcomes
    def get(self, key: str) -> bytes:
        return self.store.get(key)

    @_outcomes
    def copy_to(self, key: str, destination: BinaryIO) -> files.StoredFile:
        return self.store.copy_to(key, destination)

    @_outcomes
    def stat(self, key: str) -> files.StoredFile:
        return self.store.stat(key)

    @_outcomes
    def delete(self, key: str) -> None:
        self.store.delete(key)

    @_outcomes
    def list(self, prefix: str = "") -> Iterator[files.StoredFile]:
        # Materialized here, so that a failure half-way shows up as an outcome in this call.
        return iter(list(self.store.list(prefix)))


def job_files(current: settings_module.Settings | None = None) -> JobFiles:
    """The configured store for a job that must persist files; PermanentFailure when there is
    none that outlives this process's disk."""
    try:
        return JobFiles(files.open_store(current or settings_module.get()))
    except files.FileStoreError as exc:
        raise PermanentFailure(str(exc)) from None
