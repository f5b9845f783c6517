"""kill -9 of one and of both worker processes, several times in one drain (issue #26), checked
job by job.

Two worker processes (dramatiq's CLI over tests.worker_app, THREADS threads each, a LEASE s
lease) drain JOBS jobs of SECONDS each (tests.timed: every start and end, with its process, is
appended to a file, so every execution is seen, whether the database recorded it or not). They
are longer than the engine's LONG_JOB_SECONDS, so each starts once its start is committed
(storage/engine/lifecycle.py). A queue of shorter jobs records a start with its finish, and a
kill -9 in the milliseconds before that flush runs the job again with no `lost` row (README
"Delivery and crashes"; bench w6 counts those re-runs): the third test checks that such a run is
on record all the same, as the rescue's `rescued` event on its job.
Meanwhile, each round once a number of jobs completed: kill -9 of the first process, a new one
started in its place; of the second; of both at once, two new ones started; of both again. A
round ends when the killed processes' jobs are handed back (README "Delivery and crashes").

What README "Guarantees" promises, asserted per job:

* nothing is lost: every job completed, with one history row per attempt (record_problems),
  its last execution one that ended normally;
* a job runs again only if, when a process that ran it was killed, it was running there (started
  before the kill, no end written), or it had ended there but its finish was not yet sent (the
  flush window: the database never recorded that run, so its attempt is ``lost``);
* history has one row per execution, matched by process and start: the killed ones ``lost``,
  the last ``completed``. One more ``lost`` row is allowed: an attempt whose start reached the
  database just before its process was killed, before the actor wrote its first line;
* no job runs twice at once;
* a kill -9 of one process re-runs at most RERUNS_PER_KILL jobs: THREADS that were running,
  plus the finishes not yet sent, which a worker thread keeps under UNSENT_PER_THREAD per thread
  by waiting before it starts a job (Finisher.unsent_cap, storage/engine/finisher.py).
"""
from __future__ import annotations

import dataclasses
import time

import pytest

from storage.engine.finisher import UNSENT_PER_THREAD
from tests import executions
from tests.conftest import wait_for
from tests.executions import send
from tests.job_records import held_by, history, record_problems, settled, states

pytestmark = pytest.mark.acceptance

THREADS = 4
LEASE = 3.0
TIMINGS = {"LAMPLIGHTER_LEASE_TIMEOUT": f"{LEASE:g}", "LAMPLIGHTER_HEARTBEAT_INTERVAL": "0.5"}
JOBS = 480
SECONDS = 0.15
# What a kill -9 of one process may run again: the jobs its threads were running, plus the
# finishes it had not yet sent (UNSENT_PER_THREAD per thread at most: the finisher's cap).
RERUNS_PER_KILL = THREADS + UNSENT_PER_THREAD * THREADS
# Completed jobs before each round's kill: the drain is well under way, and far from over.
# A lost attempt with no execution: started in the database at most this long before its kill.
CUT_OFF = 1.0
ROUNDS = ((30, ("a",)), (90, ("b",)), (150, ("a", "b")), (220, ("a", "b")))


def _waiting(sql, worker_processes, condition, *, timeout: float, message: str, interval: float = 0.05):
    try:
        return wait_for(condition, timeout=timeout, interval=interval, message=message)
    except AssertionError as exc:
        raise AssertionError(f"{exc}; job states {states(sql)}\n{worker_processes.logs()}") from None


def _completed(sql) -> int:
    return sql("SELECT count(*) FROM dramatiq.queue WHERE state = 'completed'")[0][0]


def test_kill_9_of_one_then_the_other_then_both_mid_drain_reruns_only_what_was_running_or_unsent(
        database_url, broker, sql, worker_processes, tmp_path):
    import tests.worker_app as app
    from storage.engine.consumer import LONG_JOB_SECONDS

    assert SECONDS > LONG_JOB_SECONDS  # jobs whose start is committed before they run
    path = tmp_path / "executions.log"
    live = {name: worker_processes.start(name, database_url, sql, threads=THREADS, **TIMINGS) for name in "ab"}
    tags = send(broker, path, [(app.timed, f"j{i}", SECONDS) for i in range(JOBS)])
    started = time.monotonic()
    killed_at: dict[int, float] = {}  # pid -> time.time() once the process was gone
    signalled_at: dict[int, float] = {}  # pid -> time.time() just before its kill -9
    generation = 1

    for at, names in ROUNDS:
        victims = [live[name] for name in names]
        _waiting(sql, worker_processes,
                 lambda: _completed(sql) >= at and all(held_by(sql, w.worker_id)[0] for w in victims),
                 timeout=60, message=f"{at} jobs completed and jobs running in {', '.join(names)}")
        for worker in victims:  # both: one right after the other, a few milliseconds apart
            signalled_at[worker.pid] = time.time()
            worker.kill()
        _waiting(sql, worker_processes, lambda: not any(executions.process_running(w.pid) for w in victims),
                 timeout=10, message="the killed processes gone", interval=0.001)
        gone = time.time()
        killed_at.update((w.pid, gone) for w in victims)
        generation += 1
        for name in names:
            live[name] = worker_processes.start(f"{name}{generation}", database_url, sql, threads=THREADS, **TIMINGS)
        _waiting(sql, worker_processes, lambda: all(held_by(sql, w.worker_id) == (set(), set()) for w in victims),
                 timeout=30, message="the killed processes' jobs handed back")

    _waiting(sql, worker_processes, lambda: settled(sql), timeout=60, message="every job settled")
    _waiting(sql, worker_processes, lambda: executions.all_ended(path), timeout=30, message="every execution ended")
    drained = time.monotonic() - started
    for worker in live.values():
        worker.stop()  # SIGTERM: the finishers write what is left

    # An execution with no end in a killed process ended at the kill.
    runs = [dataclasses.replace(e, ended=killed_at[e.pid], how="killed") if e.open and e.pid in killed_at else e
            for e in executions.read(path)]
    worker_of = {w.worker_id: w.pid for w in worker_processes.started}
    rows = history(sql)
    by_tag: dict[str, list[executions.Execution]] = {}
    for execution in runs:
        by_tag.setdefault(execution.tag, []).append(execution)

    problems = [f"job {a.tag} ran twice at once: {a} | {b}" for a, b in executions.runs_at_once(runs, {})]
    problems += record_problems(sql, tags)
    reruns: dict[int, list[str]] = {pid: [] for pid in killed_at}
    unsent_ages = []
    without_row: list[float] = []  # executions history knows nothing of: how long before their kill they started
    cut_off_rows = 0  # lost attempts of no execution
    for tag, job_id in sorted(tags.items()):
        done = by_tag.get(tag, [])
        if not done or done[-1].how != "ok":
            problems.append(f"job {tag}: no execution that ended normally last: {', '.join(map(str, done)) or 'none'}")
            continue
        for execution in done[:-1]:
            kill = killed_at.get(execution.pid)
            if kill is None or execution.started > kill:
                problems.append(f"job {tag} ran again though {execution} was in no process killed while it ran")
                continue
            reruns[execution.pid].append(tag)
            if execution.how != "killed":
                unsent_ages.append(max(0.0, signalled_at[execution.pid] - execution.ended))
        recorded = rows.get(job_id, [])
        shown = [(attempt, outcome, f"pid {worker_of.get(worker_id)}", f"{started_at:.3f}")
                 for attempt, outcome, worker_id, started_at in recorded]
        # A history row is an execution's when it names that execution's process and start.
        rows_of = {e: [r for r in recorded if worker_of.get(r[2]) == e.pid and abs(r[3] - e.started) < 0.5]
                   for e in done}
        unrecorded = [e for e in done if not rows_of[e]]
        without_row += [signalled_at[e.pid] - e.started for e in unrecorded if e.pid in signalled_at]
        # A row of no execution: an attempt whose start reached the database, its process killed before the actor
        # wrote its first line (a moment later: it is the actor's first statement).
        cut_off = [r for r in recorded if not any(r in found for found in rows_of.values())]
        cut_off_rows += len(cut_off)
        unexplained = [r for r in cut_off if (pid := worker_of.get(r[2])) not in signalled_at
                       or not signalled_at[pid] - CUT_OFF <= r[3] <= killed_at[pid]]
        outcomes = [r[1] for r in recorded]
        if unrecorded:
            problems.append(f"job {tag}: {len(unrecorded)} of its {len(done)} executions left no history row (and "
                            f"spent no attempt): {'; '.join(map(str, unrecorded))}; history {shown}, executions "
                            f"[{'; '.join(map(str, done))}]")
        elif (outcomes != ["lost"] * (len(recorded) - 1) + ["completed"] or recorded[-1] not in rows_of[done[-1]]
              or unexplained):
            problems.append(f"job {tag}: history {shown} for executions [{'; '.join(map(str, done))}]: expected one "
                            f"row per execution, the killed ones lost, the last completed (and lost only, of a killed "
                            f"process, for a start cut off within {CUT_OFF:g} s of its kill)")
    for pid, rerun in reruns.items():
        if len(rerun) > RERUNS_PER_KILL:
            problems.append(f"kill -9 of pid {pid}: {len(rerun)} jobs ran again, at most {RERUNS_PER_KILL} allowed "
                            f"({THREADS} running + {UNSENT_PER_THREAD * THREADS} unsent finishes): {', '.join(sorted(rerun))}")
    total = sum(map(len, reruns.values()))
    summary = (f"{len(runs)} executions of {len(tags)} jobs, {total} re-runs over {len(killed_at)} process kills "
               f"(per kill {sorted(len(r) for r in reruns.values())}, at most {RERUNS_PER_KILL} each); "
               f"{len(unsent_ages)} of them ended before the kill (unsent finishes, up to "
               f"{max(unsent_ages, default=0) * 1000:.0f} ms before it); {len(without_row)} executions without a "
               f"history row (started up to {max(without_row, default=0) * 1000:.0f} ms before their kill); "
               f"{cut_off_rows} lost attempts cut off before the actor's first line; "
               f"drained in {drained:.1f} s")
    print(summary)
    assert problems == [], f"{worker_processes.describe()}; {summary}:\n" + "\n".join(problems)


def test_a_job_that_kills_its_worker_as_it_starts_spends_its_attempts_and_goes_dead(
        database_url, broker, sql, worker_processes):
    """A poison job (a segfault, the OOM killer): its start is committed before it runs, so each
    worker it kills spends an attempt, recorded `lost`; after max_retries + 1 it is dead and the
    next worker lives. Were its start sent after it began, every death would hand it back
    unstarted, with no attempt spent: it would kill workers for ever."""
    import tests.worker_app as app

    message = app.poison.send()
    deaths = 0

    def dead() -> bool:
        return states(sql) == {"dead": 1}

    for n in range(1, 5):
        worker = worker_processes.start(f"p{n}", database_url, sql, threads=2, queues=("tests-poison",), **TIMINGS)
        _waiting(sql, worker_processes, lambda: not worker.alive() or dead(), timeout=30,
                 message=f"worker p{n} killed by the poison job, or the job dead")
        if dead():
            break
        deaths += 1
    assert (deaths, dead(), worker.alive()) == (2, True, True), worker_processes.describe()
    rows = history(sql)[message.message_id]
    assert [(attempt, outcome) for attempt, outcome, _, _ in rows] == [(1, "lost"), (2, "lost")]




SHORT_SECONDS = 0.01
SHORT_JOBS = 600


def test_a_short_job_cut_short_by_kill_9_is_on_record_though_its_start_was_not(
        database_url, broker, sql, worker_processes, tmp_path):
    """Jobs shorter than LONG_JOB_SECONDS record their start with their finish: a kill -9 just
    after a job started, before the next flush, leaves no `lost` row for the run it cut short, and
    the job runs again as the same attempt. That run is still on record: the rescue writes a
    `rescued` event (the dead worker, start not recorded) on each job it hands back without a
    recorded start. The window is a few milliseconds, so the kill comes from the job itself:
    tests.dies_once kills its process as it starts, the first time, amid short jobs (the queue's
    runs average under LONG_JOB_SECONDS by then). Then, job by job: every execution that left no
    history row was in the killed process, and its job has that process's `rescued` event."""
    import tests.worker_app as app
    from storage.engine.consumer import LONG_JOB_SECONDS

    assert SHORT_SECONDS < LONG_JOB_SECONDS
    path = tmp_path / "executions.log"
    first = worker_processes.start("a", database_url, sql, threads=THREADS, **TIMINGS)
    tags = send(broker, path, [(app.timed, f"s{i}", SHORT_SECONDS) for i in range(SHORT_JOBS)])
    _waiting(sql, worker_processes, lambda: _completed(sql) >= SHORT_JOBS // 3, timeout=60,
             message=f"{SHORT_JOBS // 3} short jobs completed")
    dying = app.dies_once.send(str(path), "dies")
    tags["dies"] = dying.message_id
    _waiting(sql, worker_processes, lambda: not executions.process_running(first.pid), timeout=30,
             message="the process killed by tests.dies_once")
    killed_at = {first.pid: time.time()}
    second = worker_processes.start("a2", database_url, sql, threads=THREADS, **TIMINGS)
    _waiting(sql, worker_processes, lambda: settled(sql), timeout=60, message="every job settled")
    _waiting(sql, worker_processes, lambda: executions.all_ended(path), timeout=30, message="every execution ended")
    second.stop()

    runs = [dataclasses.replace(e, ended=killed_at[e.pid], how="killed") if e.open and e.pid in killed_at else e
            for e in executions.read(path)]
    worker_of = {w.worker_id: w.pid for w in worker_processes.started}
    rows = history(sql)
    rescued: dict[str, set[int]] = {}  # job id -> pids of the dead workers whose rescue noted it
    for job_id, detail in sql("SELECT job_id::text, detail FROM lamplighter.job_events WHERE event = 'rescued'"):
        assert detail["start_recorded"] is False and "stopped heartbeating" in detail["reason"]
        rescued.setdefault(job_id, set()).add(worker_of.get(detail["worker_id"]))
    by_tag: dict[str, list[executions.Execution]] = {}
    for execution in runs:
        by_tag.setdefault(execution.tag, []).append(execution)

    problems = [f"job {a.tag} ran twice at once: {a} | {b}" for a, b in executions.runs_at_once(runs, {})]
    problems += record_problems(sql, tags)
    reruns, noted = 0, 0
    for tag, job_id in sorted(tags.items()):
        done = by_tag.get(tag, [])
        if not done or done[-1].how != "ok":
            problems.append(f"job {tag}: no execution that ended normally last: {', '.join(map(str, done)) or 'none'}")
            continue
        recorded = rows.get(job_id, [])
        for execution in done[:-1]:
            if execution.pid not in killed_at:
                problems.append(f"job {tag} ran again though {execution} was in no process killed while it ran")
                continue
            reruns += 1
            if any(worker_of.get(r[2]) == execution.pid and abs(r[3] - execution.started) < 0.5 for r in recorded):
                continue
            if execution.pid in rescued.get(job_id, set()):
                noted += 1
            else:
                problems.append(f"job {tag}: {execution} was cut short by a kill -9 and is on no record: no history "
                                f"row, no `rescued` event from its worker (history {recorded})")
    dies = by_tag.get("dies", [])
    if [e.pid for e in dies] != [first.pid, second.pid]:
        problems.append(f"tests.dies_once: expected one execution killed in pid {first.pid}, one run in pid "
                        f"{second.pid}: {', '.join(map(str, dies))}")
    summary = (f"{len(runs)} executions of {len(tags)} jobs, {reruns} re-runs after the kill; {noted} cut-short runs "
               f"on record by a `rescued` event; {sum(len(p) for p in rescued.values())} rescued events in all; "
               f"tests.dies_once's history {rows.get(dying.message_id)}")
    print(summary)
    assert problems == [], f"{worker_processes.describe()}; {summary}:\n" + "\n".join(problems)


def test_a_job_that_kills_its_worker_as_it_starts_amid_short_jobs_goes_dead_too(
        database_url, broker, sql, worker_processes, tmp_path):
    """The poison job again, now in a queue of short jobs, where a start is recorded with its
    finish: the first worker it kills records nothing of it, and the rescue hands it back with no
    attempt spent. Were every taker's start left unrecorded, it would kill every worker for ever.
    The rescue counts that hand-back on the job (and writes a `rescued` event); a job with one
    starts only once its start is committed, so each later death spends an attempt: 3 workers
    killed (max_retries=1: 2 attempts), then `dead`, the next worker alive."""
    import tests.worker_app as app
    from storage.engine.consumer import LONG_JOB_SECONDS

    assert SHORT_SECONDS < LONG_JOB_SECONDS
    path = tmp_path / "executions.log"
    worker = worker_processes.start("p1", database_url, sql, threads=THREADS, **TIMINGS)
    send(broker, path, [(app.timed, f"s{i}", SHORT_SECONDS) for i in range(3000)])
    _waiting(sql, worker_processes, lambda: _completed(sql) >= 200, timeout=60, message="200 short jobs completed")
    # Before the short jobs (a lower priority number), on their queue: every worker that is past
    # its first short job takes it next.
    (poison,) = broker.enqueue_many([app.poison.message_with_options(priority=-10).copy(queue_name="tests-outage")])

    def dead() -> bool:
        return sql("SELECT state FROM dramatiq.queue WHERE message_id = %s", (poison.message_id,)) == [("dead",)]

    deaths = 0
    for n in range(2, 8):
        _waiting(sql, worker_processes, lambda: not worker.alive() or dead(), timeout=60,
                 message=f"worker p{n - 1} killed by the poison job, or the job dead")
        if dead():
            break
        deaths += 1
        worker = worker_processes.start(f"p{n}", database_url, sql, threads=THREADS, **TIMINGS)
    assert (deaths, dead(), worker.alive()) == (3, True, True), worker_processes.describe()
    rows = history(sql)[poison.message_id]
    assert [(attempt, outcome) for attempt, outcome, _, _ in rows] == [(1, "lost"), (2, "lost")]
    first = worker_processes.started[0].worker_id
    events = sql("SELECT detail ->> 'worker_id' FROM lamplighter.job_events WHERE job_id = %s AND event = 'rescued'",
                 (poison.message_id,))
    assert events == [(first,)], "the first death, whose start was not recorded, is on record as a rescued event"
    _waiting(sql, worker_processes, lambda: settled(sql), timeout=60, message="the short jobs drained")
    worker.stop()
