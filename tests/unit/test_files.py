"""File storage (storage/files.py, actors/files.py): the same behaviour from a local directory
and from a real S3-compatible server on 127.0.0.1 (tests/s3_server.py), checksums that catch
changed bytes, keys that cannot leave the store, and the rule that a deployment without a
durable store fails instead of writing to a disk a restart erases."""
from __future__ import annotations

import hashlib
import io
import os
import socket
import tempfile

import pytest

from actors.files import JobFiles, job_files
from domain.outcomes import PermanentFailure, RetryLater
from storage import files
from storage.settings import SettingsError, load
from tests.s3_server import ACCESS_KEY_ID, REGION, SECRET_ACCESS_KEY


def s3_store(s3_server, bucket, prefix="tenant-7/files", **kwargs) -> files.S3Store:
    return files.S3Store(bucket, prefix, endpoint=s3_server.endpoint, region=REGION, access_key_id=ACCESS_KEY_ID,
                         secret_access_key=SECRET_ACCESS_KEY, **kwargs)


@pytest.fixture(params=["local", "s3"])
def store(request, tmp_path):
    if request.param == "local":
        return files.LocalDirectoryStore(tmp_path / "files", create=True)
    server = request.getfixturevalue("s3_server")
    return s3_store(server, request.getfixturevalue("s3_bucket"))


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# ---- the interface, on both stores ----------------------------------------------------------------

def test_put_get_stat_list_delete(store):
    report = b"tenant,jobs\n7,1200\n"
    stored = store.put("reports/2026/12/daily.csv", report)
    assert (stored.key, stored.size, stored.sha256) == ("reports/2026/12/daily.csv", len(report), sha256(report))
    store.put("reports/2026/12/weekly.csv", io.BytesIO(b"weekly"))
    store.put("archives/audit-2026-11.jsonl", b"{}\n")
    assert store.get("reports/2026/12/daily.csv") == report
    stat = store.stat("reports/2026/12/weekly.csv")
    assert (stat.size, stat.sha256) == (6, sha256(b"weekly")) and stat.modified is not None
    assert [(f.key, f.size) for f in store.list("reports/")] == [("reports/2026/12/daily.csv", len(report)),
                                                                 ("reports/2026/12/weekly.csv", 6)]
    assert [f.key for f in store.list("rep")] == ["reports/2026/12/daily.csv", "reports/2026/12/weekly.csv"]
    assert [f.key for f in store.list()] == ["archives/audit-2026-11.jsonl", "reports/2026/12/daily.csv",
                                             "reports/2026/12/weekly.csv"]
    store.delete("reports/2026/12/daily.csv")
    store.delete("reports/2026/12/daily.csv")  # deleting what is gone is fine
    with pytest.raises(files.FileMissing, match="daily.csv"):
        store.get("reports/2026/12/daily.csv")
    with pytest.raises(files.FileMissing):
        store.stat("reports/2026/12/daily.csv")
    assert [f.key for f in store.list("reports/")] == ["reports/2026/12/weekly.csv"]


def test_a_put_replaces_the_file_and_its_checksum(store):
    store.put("federation/jwks.json", b'{"keys": []}')
    store.put("federation/jwks.json", b'{"keys": [1]}')
    assert store.get("federation/jwks.json") == b'{"keys": [1]}'
    assert store.stat("federation/jwks.json").sha256 == sha256(b'{"keys": [1]}')


def test_a_large_file_streams_in_and_out(store):
    data = os.urandom(9 * 1024 * 1024 + 17)  # past the 8 MiB spool: S3's put goes through a temporary file
    with tempfile.TemporaryFile() as source:
        source.write(data)
        source.seek(0)
        stored = store.put("backups/2026-12-06.dump", source)
    assert stored.size == len(data) and stored.sha256 == sha256(data)
    with tempfile.TemporaryFile() as copy:
        assert store.copy_to("backups/2026-12-06.dump", copy).sha256 == sha256(data)
        copy.seek(0)
        assert copy.read() == data


BAD_KEYS = ["", "/etc/passwd", "../outside", "reports/../../outside", "reports/./x", "reports//x", "reports/",
            ".hidden", "reports/.x.sha256", "a\\b", "a\0b", "tab\there", "space here", "x" * 201,
            "/".join(["abcdefghij"] * 100)]


@pytest.mark.parametrize("key", BAD_KEYS)
def test_keys_that_could_leave_the_store_are_refused(store, key, tmp_path):
    for attempt in (lambda: store.put(key, b"x"), lambda: store.get(key), lambda: store.delete(key),
                    lambda: store.stat(key)):
        with pytest.raises(files.InvalidKey):
            attempt()
    with pytest.raises(files.InvalidKey):
        list(store.list("../"))
    assert not (tmp_path / "outside").exists()


# ---- checksums -------------------------------------------------------------------------------------

def test_local_get_refuses_bytes_that_changed_since_the_put(tmp_path):
    store = files.LocalDirectoryStore(tmp_path, create=True)
    store.put("documents/contract.pdf", b"%PDF-1.7 original")
    (tmp_path / "documents" / "contract.pdf").write_bytes(b"%PDF-1.7 tampered")
    with pytest.raises(files.ChecksumMismatch, match="does not match the recorded"):
        store.get("documents/contract.pdf")
    (tmp_path / "documents" / ".contract.pdf.sha256").unlink()
    with pytest.raises(files.ChecksumMismatch, match="no recorded sha256"):
        store.get("documents/contract.pdf")


def test_local_checksum_is_sha256sum_compatible(tmp_path):
    import subprocess

    store = files.LocalDirectoryStore(tmp_path, create=True)
    store.put("archives/audit.jsonl", b'{"event": "login"}\n')
    checked = subprocess.run(["sha256sum", "-c", ".audit.jsonl.sha256"], cwd=tmp_path / "archives",
                             capture_output=True, text=True)
    assert checked.returncode == 0 and "audit.jsonl: OK" in checked.stdout


def test_s3_get_refuses_bytes_that_changed_since_the_put(s3_server, s3_bucket):
    store = s3_store(s3_server, s3_bucket)
    store.put("documents/contract.pdf", b"%PDF-1.7 original")
    raw = s3_server.client()
    name = "tenant-7/files/documents/contract.pdf"
    raw.put_object(Bucket=s3_bucket, Key=name, Body=b"%PDF-1.7 tampered",
                   Metadata={"sha256": sha256(b"%PDF-1.7 original")})
    with pytest.raises(files.ChecksumMismatch, match="does not match the recorded"):
        store.get("documents/contract.pdf")
    raw.put_object(Bucket=s3_bucket, Key=name, Body=b"written by another tool")
    with pytest.raises(files.ChecksumMismatch, match="no recorded sha256"):
        store.get("documents/contract.pdf")
    assert raw.head_object(Bucket=s3_bucket, Key="tenant-7/files/documents/contract.pdf")["ContentLength"] == 23


def test_s3_keeps_files_under_its_prefix_with_the_checksum_in_metadata(s3_server, s3_bucket):
    s3_store(s3_server, s3_bucket).put("reports/a.csv", b"a")
    s3_store(s3_server, s3_bucket, prefix="other-tenant").put("reports/b.csv", b"b")
    head = s3_server.client().head_object(Bucket=s3_bucket, Key="tenant-7/files/reports/a.csv")
    assert head["Metadata"] == {"sha256": sha256(b"a")}
    assert [f.key for f in s3_store(s3_server, s3_bucket).list()] == ["reports/a.csv"]


# ---- failures, and what a job makes of them ------------------------------------------------------

def test_s3_failures_are_told_apart(s3_server, s3_bucket):
    missing_bucket = s3_store(s3_server, "no-such-bucket-here")
    with pytest.raises(files.FileStoreMisconfigured, match="NoSuchBucket"):
        missing_bucket.put("reports/a.csv", b"a")
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    closed_port = sock.getsockname()[1]
    sock.close()
    unreachable = files.S3Store(s3_bucket, endpoint=f"http://127.0.0.1:{closed_port}", region=REGION,
                                access_key_id=ACCESS_KEY_ID, secret_access_key=SECRET_ACCESS_KEY, max_attempts=1)
    with pytest.raises(files.FileStoreUnavailable, match="EndpointConnectionError") as raised:
        unreachable.get("reports/a.csv")
    assert SECRET_ACCESS_KEY not in str(raised.value)
    with pytest.raises(PermanentFailure, match="NoSuchBucket"):
        JobFiles(missing_bucket).put("reports/a.csv", b"a")
    with pytest.raises(RetryLater, match="EndpointConnectionError"):
        JobFiles(unreachable).list("reports/")
    with pytest.raises(PermanentFailure, match="file key"):
        JobFiles(unreachable).get("../escape")


def test_a_configured_directory_that_is_missing_is_not_created(tmp_path):
    volume = tmp_path / "volume-not-mounted"
    store = files.open_store(load({"DATABASE_URL": "postgresql://db/app", "LAMPLIGHTER_FILES_URL": f"file://{volume}"}))
    with pytest.raises(files.FileStoreMisconfigured, match="does not exist .is the volume mounted"):
        store.put("reports/a.csv", b"a")
    assert not volume.exists()
    with pytest.raises(PermanentFailure, match="is the volume mounted"):
        JobFiles(store).put("reports/a.csv", b"a")


# ---- which store the settings give -----------------------------------------------------------------

def test_embedded_mode_keeps_files_under_the_data_directory(tmp_path):
    store = files.open_store(load({"LAMPLIGHTER_DATA_DIR": str(tmp_path)}))
    store.put("reports/a.csv", b"a")
    assert (tmp_path / "files" / "reports" / "a.csv").read_bytes() == b"a"


def test_with_database_url_and_no_durable_store_a_job_fails_permanently(tmp_path):
    deployed = load({"DATABASE_URL": "postgresql://db/app", "LAMPLIGHTER_DATA_DIR": str(tmp_path)})
    with pytest.raises(files.NoDurableFileStore, match="LAMPLIGHTER_FILES_URL is not set"):
        files.open_store(deployed)
    with pytest.raises(PermanentFailure) as raised:
        job_files(deployed)
    assert "disk may be erased by the next restart" in str(raised.value)
    assert list(tmp_path.iterdir()) == []


def test_settings_pick_the_store(s3_server, s3_bucket, tmp_path):
    local = files.open_store(load({"DATABASE_URL": "postgresql://db/app", "LAMPLIGHTER_FILES_URL": f"file://{tmp_path}"}))
    assert isinstance(local, files.LocalDirectoryStore) and local.root == tmp_path
    remote = files.open_store(load({"DATABASE_URL": "postgresql://db/app",
                                    **s3_server.env(f"s3://{s3_bucket}/lamplighter/")}))
    assert isinstance(remote, files.S3Store) and (remote.bucket, remote.prefix) == (s3_bucket, "lamplighter/")
    remote.put("a.txt", b"a")
    assert s3_server.client().get_object(Bucket=s3_bucket, Key="lamplighter/a.txt")["Body"].read() == b"a"


@pytest.mark.parametrize("url", ["http://bucket/x", "s3://", "s3://Bad_Bucket/x", "s3://bucket/../x",
                                 "file://host/path", "file:relative/path", "ftp://x"])
def test_a_bad_files_url_stops_start_up(url):
    with pytest.raises(SettingsError, match="^LAMPLIGHTER_FILES_URL="):
        load({"LAMPLIGHTER_FILES_URL": url})


def test_the_secret_key_is_never_shown():
    shown = load({"LAMPLIGHTER_FILES_URL": "s3://bucket/x", "LAMPLIGHTER_FILES_S3_SECRET_ACCESS_KEY": "s3-secret",
                  "LAMPLIGHTER_FILES_S3_ENDPOINT": "https://user:endpoint-pass@s3.example"}).public()
    assert shown["files_s3_secret_access_key"] == "(set)"
    assert "s3-secret" not in repr(shown) and "endpoint-pass" not in repr(shown)
