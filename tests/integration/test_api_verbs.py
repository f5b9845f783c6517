"""The CLI verbs this API shares its functions with: `lamplighter discard` and
`lamplighter stats --by-actor` (the view of GET /api/queues/stats)."""
import json

import pytest

from storage import jobs
from tests.cli_runs import run_cli


def test_discard_sends_a_waiting_job_to_dead_and_refuses_a_finished_one(database_url, monkeypatch, capsys, sql):
    code, out, _ = run_cli(monkeypatch, capsys, "enqueue", "maintenance.ping", "--args", '{"note": "x"}')
    job_id = out.strip()
    assert run_cli(monkeypatch, capsys, "discard", job_id)[:2] == (0, f"{job_id}: discarded\n")
    job = jobs.get(job_id)
    assert job.state == "dead" and job.last_error.startswith("Discarded: by cli:")
    assert [e.event for e in job.events] == ["discarded"]
    code, _, err = run_cli(monkeypatch, capsys, "discard", job_id)
    assert code == 1 and "only queued jobs" in err
    with pytest.raises(SystemExit) as refused:
        run_cli(monkeypatch, capsys, "discard", "not-an-id")
    assert refused.value.code == 2


def test_stats_by_actor_prints_the_apis_view(database_url, monkeypatch, capsys, sql):
    for _ in range(2):
        run_cli(monkeypatch, capsys, "enqueue", "maintenance.ping")
    sql("INSERT INTO lamplighter.job_history (job_id, attempt, actor_name, queue_name, finished_at, duration_ms, "
        "outcome) SELECT gen_random_uuid(), 1, 'maintenance.ping', 'maintenance', lamplighter.now(), d, 'completed' "
        "FROM unnest(ARRAY[10.0, 20.0, 30.0, 40.0]) AS d")
    code, out, _ = run_cli(monkeypatch, capsys, "stats", "--by-actor", "--json")
    assert code == 0
    [ping] = json.loads(out)["actors"]
    assert (ping["actor_name"], ping["waiting"], ping["completed"], ping["run_ms_p50"]) == (
        "maintenance.ping", 2, 4, 25.0)
    assert ping["run_ms_p95"] == 38.5
    code, out, _ = run_cli(monkeypatch, capsys, "stats", "--by-actor")
    assert code == 0 and out.splitlines()[0].split()[:3] == ["QUEUE", "ACTOR", "WAITING"]
    assert "maintenance.ping" in out
