"""monitoring.performance against a real PostgreSQL and a real worker: per-actor samples of
throughput, failures, run time and queue wait from the history rows, `lamplighter perf` with a
sparkline per actor, and retention."""
from __future__ import annotations

import dramatiq
import pytest

import actors
from domain import performance
from storage import performance as perf_rows
from tests.cli_runs import run_cli
from tests.conftest import wait_for


@dramatiq.actor(broker=actors.broker, actor_name="tests.perf_fails", queue_name="tests-perf", max_retries=0,
                time_limit=10_000)
def perf_fails(n: int) -> None:
    raise RuntimeError(f"failure {n}")


def finished(sql) -> int:
    return sql("SELECT count(*) FROM lamplighter.job_history")[0][0]


def test_samples_per_actor_and_the_perf_verb(broker, run_worker, sql, database_url, monkeypatch, capsys):
    run_worker(threads=4, queues=["maintenance", "tests-perf"])
    for batch in (1, 2):
        broker.send_many(actors.maintenance.ping, [{"note": f"{batch}-{i}"} for i in range(40)])
        for n in range(5 * batch):
            perf_fails.send(n)
        expected = 40 * batch + sum(5 * b for b in range(1, batch + 1))
        wait_for(lambda: finished(sql) == expected, message=f"batch {batch} finished")
        assert actors.monitoring.sample_performance.fn()["actors"] == 2

    samples = perf_rows.series(since_seconds=3600)
    pings = [s for s in samples if s.actor_name == "maintenance.ping"]
    fails = [s for s in samples if s.actor_name == "tests.perf_fails"]
    assert [(s.completed, s.failed) for s in pings] == [(40, 0), (40, 0)]
    assert [(s.completed, s.failed, s.failure_rate) for s in fails] == [(0, 5, 1.0), (0, 10, 1.0)]
    assert all(s.run_p50_ms <= s.run_p95_ms <= s.run_p99_ms and s.wait_p95_ms >= 0 for s in pings)
    assert all(s.per_minute > 0 and s.queue_name == "maintenance" for s in pings)
    [*_, system] = perf_rows.system_series(since_seconds=3600)
    assert system.connections_in_use >= 2 and isinstance(system.queue_depths, dict)

    monkeypatch.setenv("DATABASE_URL", database_url)
    code, out, err = run_cli(monkeypatch, capsys, "perf", "--actor", "tests.perf_fails", "--since", "1h")
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].split()[:4] == ["TAKEN_AT", "ACTOR", "COMPLETED", "FAILED"]
    assert [line.split()[1:5] for line in lines[1:3]] == [["tests.perf_fails", "0", "5", "100.0"],
                                                          ["tests.perf_fails", "0", "10", "100.0"]]
    [trend] = [line for line in lines if line.startswith("tests.perf_fails  jobs/min")]
    assert "(15 attempts, 15 failed, 2 samples)" in trend
    assert "maintenance.ping" not in out
    with pytest.raises(SystemExit) as usage:
        run_cli(monkeypatch, capsys, "perf", "--since", "soon")
    assert usage.value.code == 2 and "is not a duration" in capsys.readouterr().err


def test_samples_older_than_the_retention_are_pruned(database_url, sql, db_clock):
    assert performance.take_sample(interval_seconds=600, retention_seconds=3600)["actors"] == 0
    sql("INSERT INTO lamplighter.perf_samples (taken_at, period_start, actor_name, queue_name, completed, failed, "
        "failure_rate, per_minute) VALUES (now() - interval '2 hours', now() - interval '130 minutes', 'a', 'q', "
        "1, 0, 0, 0.1), (now(), now() - interval '10 minutes', 'a', 'q', 1, 0, 0, 0.1)")
    db_clock.advance(2 * 3600)
    assert performance.take_sample(interval_seconds=600, retention_seconds=3600)["pruned"] == 3  # 2 actor, 1 system
    assert sql("SELECT count(*) FROM lamplighter.perf_samples") == [(0,)]


def test_sparklines_run_from_lowest_to_highest():
    assert performance.sparkline([1, 2, 3, 8]) == "▁▂▃█"
    assert performance.sparkline([5, None, 5]) == "▁ ▁"
    assert performance.sparkline([]) == ""
