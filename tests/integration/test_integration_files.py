"""integrations.index_files against the local provider's paged files API: 2,500 files over 3 pages,
interrupted after page 2 and resumed; files deleted at the provider removed here; a provider's 429
pauses that integration's pass (its continuation queued after Retry-After), not the queue."""
from __future__ import annotations

import actors
from domain import integration_files
from storage.settings import IntegrationSettings
from tests.conftest import use_database
from tests.oauth_provider import acme, answer, configured, connect, provider  # noqa: F401

index_files = actors.integrations.index_files.fn


def files(sql, integration_id: int) -> dict[str, tuple]:
    return {r[0]: r[1:] for r in sql("SELECT provider_file_id, name, path, size_bytes, mime_type, modified_at, "
                                     "seen_pass FROM lamplighter.integration_files WHERE integration_id = %s",
                                     (integration_id,))}


def index_jobs(sql, integration_id: int) -> list[tuple]:
    return sql("SELECT state, round(extract(epoch FROM available_at - lamplighter.now())) FROM dramatiq.queue "
               "WHERE unique_key = %s", (f"index-{integration_id}",))


def test_2500_files_over_3_pages_interrupted_after_page_2_resumed_and_deletions_follow(acme, provider, sql,
                                                                                       database_url):
    settings = use_database(database_url, LAMPLIGHTER_ENCRYPTION_KEYS=acme.encryption_keys,
                            LAMPLIGHTER_OUTBOUND_ALLOW="127.0.0.1", LAMPLIGHTER_INTEGRATIONS_INDEX_PAGE_SIZE="1000",
                            LAMPLIGHTER_INTEGRATIONS_INDEX_PAGES_PER_RUN="2")
    provider.add_files(2500)
    row = connect(settings)
    assert index_jobs(sql, row.id) == [("queued", 0)]  # queued by the connect

    # The first run is bounded: two pages, then its continuation.
    assert index_files(row.id) == {"outcome": "continues", "pass": 1, "pages": 2, "files": 2000}
    assert len(files(sql, row.id)) == 2000
    assert sql("SELECT index_pass, index_cursor, last_indexed_at FROM lamplighter.integrations") == [(1, "2000", None)]
    # Resumed where it stopped: page 3 only.
    assert index_files(row.id) == {"outcome": "indexed", "pass": 1, "pages": 1, "files": 500, "deleted": 0}
    assert [r["cursor"] for r in provider.files_requests] == ["", "1000", "2000"]
    indexed = files(sql, row.id)
    assert len(indexed) == 2500
    name, path, size, mime, modified, seen = indexed["f00042"]
    assert (name, path, size, mime, seen) == ("f00042.txt", "/docs/f00042.txt", 42, "text/plain", 1)
    assert modified.isoformat() == "2026-11-30T10:00:00+00:00"

    # Gone at the provider, gone here; changed there, changed here; new ones come in.
    del provider.files["f00007"], provider.files["f02499"]
    provider.files["f00008"]["name"] = "renamed.txt"
    provider.add_files(3, prefix="g")
    assert index_files(row.id)["outcome"] == "continues"
    assert index_files(row.id) == {"outcome": "indexed", "pass": 2, "pages": 1, "files": 501, "deleted": 2}
    indexed = files(sql, row.id)
    assert len(indexed) == 2501 and "f00007" not in indexed and "f02499" not in indexed and "g00002" in indexed
    assert indexed["f00008"][0] == "renamed.txt" and {r[-1] for r in indexed.values()} == {2}


def test_a_rate_limited_provider_pauses_this_integrations_pass(acme, provider, sql):
    provider.add_files(250)
    row = connect(acme)
    sql("DELETE FROM dramatiq.queue WHERE unique_key = %s", (f"index-{row.id}",))  # the connect's own run
    provider.files_script["100"] = [answer(429, {"error": "rate_limited"}, {"Retry-After": "90"})]
    small = IntegrationSettings(index_page_size=100, index_pages_per_run=20)

    def run():
        return integration_files.index_files(row.id, provider_for=actors.integrations.provider_for(),
                                             jobs=actors.integrations.JOBS, settings=small)

    paused = run()
    assert paused["outcome"] == "paused" and (paused["pages"], paused["files"]) == (1, 100)
    assert 90 <= paused["resume_in"] <= 99
    [(state, in_seconds)] = index_jobs(sql, row.id)  # the continuation, after the pause
    assert state == "queued" and 90 <= in_seconds <= 99
    assert sql("SELECT index_cursor FROM lamplighter.integrations") == [("100",)]
    assert run() == {"outcome": "indexed", "pass": 1, "pages": 2, "files": 150, "deleted": 0}
    assert len(files(sql, row.id)) == 250
    assert [r["cursor"] for r in provider.files_requests] == ["", "100", "100", "200"]


def test_the_6_hourly_sweep_queues_one_index_run_per_active_integration(acme, provider, sql):
    ids = [connect(acme, name=f"i{n}").id for n in range(3)]  # each connect queued its first run
    sql("UPDATE lamplighter.integrations SET status = 'expired' WHERE id = %s", (ids[0],))
    sql("DELETE FROM dramatiq.queue WHERE unique_key = %s", (f"index-{ids[1]}",))  # that run is over
    assert actors.integrations.sweep_index.fn() == {"queued": 2}
    assert sorted(sql("SELECT unique_key FROM dramatiq.queue WHERE actor_name = 'integrations.index_files' "
                      "AND state = 'queued'")) == [(f"index-{i}",) for i in ids]  # one each, never two
    assert index_files(ids[0]) == {"outcome": "skipped", "status": "expired"}
