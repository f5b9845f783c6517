"""Sends, bulk sends and cron ticks make their own message ids: valid, unique, time-ordered UUIDs
(version 7). SQL enqueue's are tested in tests/integration/test_sql_enqueue.py."""
import time
import uuid

from storage.message_ids import new_message_ids as _new_message_ids


def test_bulk_ids_are_unique_version_7_uuids_of_this_millisecond():
    before = time.time_ns() // 1_000_000
    ids = _new_message_ids(5000)
    after = time.time_ns() // 1_000_000
    parsed = [uuid.UUID(i) for i in ids]
    assert [str(p) for p in parsed] == ids  # canonical text, as PostgreSQL prints it
    assert len(set(ids)) == 5000
    assert {p.version for p in parsed} == {7}
    assert {p.variant for p in parsed} == {uuid.RFC_4122}
    assert all(before <= p.int >> 80 <= after for p in parsed)  # the first 48 bits: unix ms


def test_a_later_batch_sorts_after_an_earlier_one():
    first = _new_message_ids(100)
    made = time.time_ns() // 1_000_000
    while time.time_ns() // 1_000_000 == made:  # the ids' resolution is a millisecond
        pass
    second = _new_message_ids(100)
    assert max(uuid.UUID(i).bytes for i in first) < min(uuid.UUID(i).bytes for i in second)
