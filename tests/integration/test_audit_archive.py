"""audit.archive on the real PostgreSQL and a local file store: an old month becomes compressed
JSON Lines with a manifest, is read back, leaves the log, and a second run changes nothing."""
import gzip
import json
from datetime import datetime, timezone

from domain import audit_archive
from storage import files
from storage import settings as settings_module
from tests.audit_archive_runs import MONTH, archived_ids, seed
from tests.conftest import use_database


def test_an_old_month_is_archived_verified_detached_and_dropped_once(database_url, sql, tmp_path):
    import actors

    use_database(database_url, LAMPLIGHTER_FILES_URL=f"file://{tmp_path}")
    ids = seed(sql, 1200)
    recent = sql("INSERT INTO lamplighter.audit_log (actor, action) VALUES ('t', 'user.signed_in') RETURNING id")
    report = actors.audit.archive.fn(batch_size=500)
    assert report == {"months": ["2025-10"], "rows": 1200, "resumed": 0}

    store = files.open_store(settings_module.get())
    data_key, manifest_key = audit_archive.keys(MONTH)
    assert archived_ids(store, data_key) == ids  # every row once, in id order
    manifest = audit_archive.verify(store, manifest_key)
    assert (manifest["rows"], manifest["first_id"], manifest["last_id"]) == (1200, ids[0], ids[-1])
    assert manifest["file"]["sha256"] == store.stat(data_key).sha256
    first_line = json.loads(gzip.decompress(store.get(data_key)).split(b"\n")[0])
    assert first_line["action"] == "user.signed_in" and (
        datetime.fromisoformat(first_line["at"]) == datetime(2025, 10, 1, 0, 1, tzinfo=timezone.utc))
    assert sql("SELECT to_regclass('lamplighter.audit_log_y2025m10')") == [(None,)]
    assert sql("SELECT step, rows FROM lamplighter.audit_archives") == [("done", 1200)]
    assert sql("SELECT count(*) FROM lamplighter.audit_log WHERE id = %s", (recent[0][0],)) == [(1,)]
    assert {a for (a,) in sql("SELECT action FROM lamplighter.audit_log")} >= {"audit.month_archived",
                                                                            "audit.month_dropped"}

    checksum = store.stat(data_key).sha256
    assert actors.audit.archive.fn(batch_size=500) == {"months": [], "rows": 0, "resumed": 0}
    assert store.stat(data_key).sha256 == checksum
    assert sql("SELECT step, rows FROM lamplighter.audit_archives") == [("done", 1200)]

    seed(sql, 1)  # the archived month's table is back, with a row: never overwrite its archive, say so
    assert actors.audit.archive.fn() == {"months": [], "rows": 0, "resumed": 0, "reappeared": ["2025-10"]}
    assert store.stat(data_key).sha256 == checksum


def test_the_current_months_are_never_archived(database_url, sql, tmp_path):
    use_database(database_url, LAMPLIGHTER_FILES_URL=f"file://{tmp_path}")
    assert audit_archive.cutoff(MONTH, 12) == MONTH.replace(year=2024)
    report = audit_archive.archive(files.open_store(settings_module.get()), retention_months=1)
    assert report == {"months": [], "rows": 0, "resumed": 0}
    assert sql("SELECT count(*) FROM lamplighter.audit_archives") == [(0,)]


def test_old_rows_waiting_in_the_default_partition_are_archived_with_their_month(database_url, sql, tmp_path):
    use_database(database_url, LAMPLIGHTER_FILES_URL=f"file://{tmp_path}")
    [(row_id,)] = sql("INSERT INTO lamplighter.audit_log (at, actor, action) "
                      "VALUES ('2024-02-10 12:00+00', 't', 'user.signed_in') RETURNING id")
    assert sql("SELECT tableoid::regclass::text FROM lamplighter.audit_log WHERE id = %s", (row_id,)) == [
        ("lamplighter.audit_log_default",)]
    report = audit_archive.archive(files.open_store(settings_module.get()))
    assert report == {"months": ["2024-02"], "rows": 1, "resumed": 0}
    assert sql("SELECT count(*) FROM lamplighter.audit_log WHERE id = %s", (row_id,)) == [(0,)]
    data_key, _ = audit_archive.keys(datetime(2024, 2, 1).date())
    assert archived_ids(files.open_store(settings_module.get()), data_key) == [row_id]
