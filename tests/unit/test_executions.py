"""tests/executions.py, the judge of the outage and worker-loss tests: what counts as a job run
twice at once, and as a broken concurrency limit, when a process was stopped meanwhile."""
from tests.executions import RESUME_GRACE, Execution, over_limit, read, runs_at_once

PAUSED, LIVE = 100, 200
FROZEN = {PAUSED: [(10.0, 20.0)]}  # stopped at 10 s, continued at 20 s


def run(tag, pid, started, ended):
    return Execution(tag, pid, started, ended, "ok" if ended is not None else None)


def test_the_rescue_of_a_stopped_processs_job_is_not_a_double_run():
    original = run("a", PAUSED, 5.0, 20.01)  # its time was up while stopped: it ends on resume
    rescue = run("a", LIVE, 14.0, 19.0)
    assert runs_at_once([original, rescue], FROZEN) == []


def test_a_rescuer_starting_just_after_the_resume_is_not_a_double_run_but_a_long_remainder_is():
    rescue_soon = run("a", LIVE, 20.0 + RESUME_GRACE / 2, 30.0)
    assert runs_at_once([run("a", PAUSED, 5.0, 20.02), rescue_soon], FROZEN) == []
    remainder = run("a", PAUSED, 5.0, 27.0)  # went on working for 7 s after the resume
    rescue_late = run("a", LIVE, 20.0 + RESUME_GRACE * 2, 30.0)
    assert runs_at_once([remainder, rescue_late], FROZEN) == [(remainder, rescue_late)]


def test_a_claimed_job_started_after_the_resume_while_the_rescuer_runs_it_is_a_double_run():
    rescue = run("a", LIVE, 15.0, 25.0)
    stale = run("a", PAUSED, 20.05, 22.0)
    assert runs_at_once([rescue, stale], FROZEN) == [(rescue, stale)]


def test_two_live_runs_that_overlap_are_a_double_run_and_one_after_the_other_are_not():
    first, second, third = run("a", LIVE, 1.0, 3.0), run("a", PAUSED, 2.0, 4.0), run("a", LIVE, 4.0, 5.0)
    assert runs_at_once([first, second, third], {}) == [(first, second)]


def test_the_limit_counts_running_executions_of_processes_that_are_not_stopped():
    tags = {"x", "y", "z"}
    held_while_stopped = run("x", PAUSED, 5.0, 20.01)
    live = [run("y", LIVE, 12.0, 30.0), run("z", LIVE, 13.0, 30.0)]
    assert over_limit([held_while_stopped, *live], tags, 2, FROZEN) == []
    stale = run("x", PAUSED, 21.0, 23.0)  # the stopped process starts a third after its resume
    assert [e for e, _ in over_limit([*live, stale], tags, 2, FROZEN)] == [stale]


def test_read_pairs_each_start_with_its_end_and_keeps_unfinished_runs(tmp_path):
    path = tmp_path / "executions.log"
    path.write_text("a start 1 1.0\n"
                    "b start 2 1.5\n"
                    "a end 1 2.0 ok\n"
                    "a start 1 3.0\n"
                    "b end 2 4.0 Shutdown\n")
    assert read(path) == [run("a", 1, 1.0, 2.0), Execution("b", 2, 1.5, 4.0, "Shutdown"), run("a", 1, 3.0, None)]
