"""The exposition built from one database snapshot: histogram buckets made cumulative from the
counters' per-bucket rows, every outcome shown for a counted actor, the leader series only when
a scheduler leads."""
from prometheus_client.parser import text_string_to_metric_families

from console import metrics
from storage.metrics import OutcomeCount, QueueDepth, Snapshot


def samples(text: bytes) -> dict[tuple[str, frozenset], float]:
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text.decode()) for s in family.samples}


def snapshot(**changes) -> Snapshot:
    base = dict(
        queues=[QueueDepth("default", waiting=3, scheduled=1, running=2, dead=4, oldest_waiting_age=12.5,
                           paused=False)],
        workers_live=2, workers_stopping=1, leader="host:42", lease_age=0.75, open_alerts={"jobs.dead": 2},
        counts=[OutcomeCount("a.job", "completed", 0, 5, 0.01), OutcomeCount("a.job", "completed", 2, 3, 0.06),
                OutcomeCount("a.job", "completed", 3, 1, 0.03), OutcomeCount("a.job", "dead", 16, 1, 4000.0)],
        run_time_bounds=[0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600])
    return Snapshot(**{**base, **changes})


def label(**labels) -> frozenset:
    return frozenset(labels.items())


def test_histogram_buckets_are_cumulative_and_every_outcome_is_shown():
    found = samples(metrics.exposition(snapshot()))
    bucket = lambda le, outcome="completed": found[("lamplighter_job_run_seconds_bucket",  # noqa: E731
                                                     label(actor="a.job", outcome=outcome, le=le))]
    # bucket 0 (< 5 ms): 5; bucket 2 ([10 ms, 25 ms)): 3; bucket 3 ([25 ms, 50 ms)): 1
    assert [bucket(le) for le in ("0.005", "0.01", "0.025", "0.05", "0.1", "+Inf")] == [5, 5, 8, 9, 9, 9]
    assert found[("lamplighter_job_run_seconds_count", label(actor="a.job", outcome="completed"))] == 9
    assert abs(found[("lamplighter_job_run_seconds_sum", label(actor="a.job", outcome="completed"))] - 0.1) < 1e-9
    # an hour or more: only in +Inf
    assert (bucket("3600.0", "dead"), bucket("+Inf", "dead")) == (0, 1)
    outcomes = {dict(labels)["outcome"]: value for (name, labels), value in found.items()
                if name == "lamplighter_job_outcomes_total"}
    assert outcomes == {"completed": 9, "failed": 0, "dead": 1, "cancelled": 0, "lost": 0}


def test_gauges_from_the_snapshot():
    found = samples(metrics.exposition(snapshot()))
    depth = {dict(labels)["state"]: value for (name, labels), value in found.items()
             if name == "lamplighter_queue_jobs"}
    assert depth == {"waiting": 3, "scheduled": 1, "running": 2, "dead": 4}
    assert found[("lamplighter_queue_oldest_waiting_seconds", label(queue="default"))] == 12.5
    assert found[("lamplighter_queue_paused", label(queue="default"))] == 0
    assert found[("lamplighter_workers_live", label())] == 2
    assert found[("lamplighter_workers_stopping", label())] == 1
    assert found[("lamplighter_scheduler_has_leader", label())] == 1
    assert found[("lamplighter_scheduler_leader", label(holder="host:42"))] == 1
    assert found[("lamplighter_scheduler_lease_age_seconds", label())] == 0.75
    assert found[("lamplighter_alerts_open", label(rule="jobs.dead"))] == 2


def test_without_a_leader_or_lease_row():
    found = samples(metrics.exposition(snapshot(leader=None, lease_age=None, counts=[], open_alerts={})))
    assert found[("lamplighter_scheduler_has_leader", label())] == 0
    names = {name for name, _ in found}
    assert not names & {"lamplighter_scheduler_leader", "lamplighter_scheduler_lease_age_seconds",
                        "lamplighter_job_outcomes_total", "lamplighter_alerts_open"}


def test_a_database_error_answers_503_without_the_address():
    import psycopg2

    def failing():
        raise psycopg2.OperationalError('connection to server at "db.internal" (10.0.0.7), port 5432 failed')

    answer = metrics._guarded(failing)
    assert answer.status_code == 503
    assert answer.body == b'{"error":"database_unreachable","message":"database unreachable"}'
