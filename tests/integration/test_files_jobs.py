"""A job that must persist files, run by a real dramatiq Worker on a real PostgreSQL: with
DATABASE_URL set and no durable store it goes dead at once with the reason (and writes nothing
to the local disk); with LAMPLIGHTER_FILES_URL on a real S3-compatible server it completes and
the object is there, checksum and all."""
from __future__ import annotations

import dataclasses
import hashlib
import uuid

import dramatiq
import pytest

import actors
from actors.files import job_files
from storage import jobs
from storage import settings as settings_module
from tests.conftest import wait_for


@dramatiq.actor(broker=actors.broker, actor_name="tests.persist_report", queue_name="tests-files", max_retries=3,
                time_limit=30_000)
def persist_report(key: str, text: str) -> dict:
    stored = job_files().put(key, text.encode())
    return {"key": stored.key, "sha256": stored.sha256}


@pytest.fixture
def deployed(database_url, tmp_path, monkeypatch):
    """This test's settings with a data directory of its own, and a way to add file settings."""
    monkeypatch.setattr(settings_module, "_current", settings_module._current)  # restored afterwards
    base = dataclasses.replace(settings_module.get(), data_dir=tmp_path / "data")
    assert not base.embedded  # DATABASE_URL is set: a deployment

    def configure(**env) -> settings_module.Settings:
        file_settings = settings_module.load(env)
        return settings_module.configure(dataclasses.replace(base, **{
            f.name: getattr(file_settings, f.name) for f in dataclasses.fields(file_settings)
            if f.name.startswith("files_")}))
    configure()
    return configure


def test_without_a_durable_store_the_job_is_dead_at_once_and_writes_nothing(broker, run_worker, deployed, tmp_path):
    run_worker(queues=["tests-files"])
    message = persist_report.send(f"reports/{uuid.uuid4()}.csv", "tenant,jobs\n")
    wait_for(lambda: jobs.get(message.message_id).state == "dead", message="the job goes dead")
    job = jobs.get(message.message_id)
    assert [(a.outcome, a.error_type) for a in job.attempts] == [("dead", "PermanentFailure")]
    assert job.last_error.startswith("PermanentFailure: no durable file store: LAMPLIGHTER_FILES_URL is not set")
    assert not (tmp_path / "data").exists()


def test_with_an_s3_store_the_job_persists_the_file(broker, run_worker, deployed, s3_server, s3_bucket):
    deployed(**s3_server.env(f"s3://{s3_bucket}/lamplighter"))
    run_worker(queues=["tests-files"])
    key = f"reports/{uuid.uuid4()}.csv"
    message = persist_report.send(key, "tenant,jobs\n7,1200\n")
    wait_for(lambda: jobs.get(message.message_id).state == "completed", message="the job completes")
    body = s3_server.client().get_object(Bucket=s3_bucket, Key=f"lamplighter/{key}")
    assert body["Body"].read() == b"tenant,jobs\n7,1200\n"
    assert body["Metadata"]["sha256"] == hashlib.sha256(b"tenant,jobs\n7,1200\n").hexdigest()
