"""Reading a formation spec for the connection budget (console/formation.py)."""
import pytest

from console import formation


def test_a_formation_is_read_per_process_kind():
    assert formation.parse("web=2, worker=4x8,scheduler=1") == {"web": (2, None), "worker": (4, 8), "scheduler": (1, None)}


@pytest.mark.parametrize("spec, message", [
    ("web=2,worker=4x", "expected web=N"), ("web=1,web=2", "web named twice"), ("web=2x3", "only worker"),
    ("", "empty formation"), ("worker=1x0", "at least 1"), ("cron=1", "expected web=N"),
])
def test_a_formation_that_cannot_be_read_is_refused(spec, message):
    with pytest.raises(formation.FormationError, match=message):
        formation.parse(spec)


def test_config_formation_prints_the_budget_and_refuses_one_over_the_limit(monkeypatch, capsys):
    import json

    from tests.cli_runs import run_cli

    monkeypatch.setenv("LAMPLIGHTER_QUEUES", "a,b,c")
    monkeypatch.setenv("LAMPLIGHTER_WORKER_PROCESSES", "2")
    code, out, _ = run_cli(monkeypatch, capsys, "config", "--formation", "web=2,worker=4x8,scheduler=1",
                           "--limit", "400", "--json")
    view = json.loads(out)
    per_worker_process = 1 + 1 + 2 + 8  # one claim connection (whatever the queues), one LISTEN, heartbeat, finisher, threads
    assert code == 0 and view["fits"]
    assert {r["process"]: r["total"] for r in view["rows"]} == {
        "web": 2 * (10 + 2), "worker": 4 * 2 * per_worker_process, "scheduler": 1, "release": 1}
    assert view["total"] == 24 + 96 + 2
    code, _, err = run_cli(monkeypatch, capsys, "config", "--formation", "web=2,worker=4x8,scheduler=1",
                           "--limit", "100")
    assert code == 1 and "opens 122 connections, over the limit of 100" in err
