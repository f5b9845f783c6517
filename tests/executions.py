"""Executions of tests.worker_app's timed actors, read back from the file they append to, and the
questions the outage tests ask of them: did one job run twice at once, did a concurrency limit
hold, what did a process start after it was resumed.

A process paused with SIGSTOP runs nothing while it is stopped; the tests say when
(``frozen``: pid -> [(stopped at, continued at)], time.time() like the file). A second execution
that starts while the first one's process is stopped is the documented rescue of a silent
worker's job; one that starts while the first visibly runs is a job run twice at once. A job
that was running when its process was stopped ends when the process continues (its time is up,
or the worker interrupts it): for RESUME_GRACE after that it still counts as stopped, so that a
rescuer's start a few milliseconds after the resume is not taken for a double run; a remainder
that runs on for longer is one.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

Frozen = dict[int, list[tuple[float, float]]]
RESUME_GRACE = 1.0  # seconds


@dataclass(frozen=True)
class Execution:
    tag: str
    pid: int
    started: float
    ended: float | None  # None: no end line (still running, or the process died)
    how: str | None  # ok, or the class of the exception that ended it

    @property
    def open(self) -> bool:
        return self.ended is None

    def running_at(self, moment: float) -> bool:
        return self.started <= moment and (self.ended is None or moment < self.ended)

    def __str__(self) -> str:
        end = "…" if self.ended is None else f"{self.ended:.3f} ({self.how})"
        return f"{self.tag} in pid {self.pid}: {self.started:.3f} → {end}"


def read(path: Path) -> list[Execution]:
    """Every execution in the file, each start paired with the next end of the same job in the
    same process."""
    if not path.exists():
        return []
    starts: dict[tuple[str, int], list[float]] = defaultdict(list)
    done: list[Execution] = []
    for line in path.read_text().splitlines():
        fields = line.split()
        tag, kind, pid, moment = fields[0], fields[1], int(fields[2]), float(fields[3])
        if kind == "start":
            starts[(tag, pid)].append(moment)
        elif starts[(tag, pid)]:
            done.append(Execution(tag, pid, starts[(tag, pid)].pop(0), moment, fields[4]))
    done.extend(Execution(tag, pid, started, None, None)
                for (tag, pid), pending in starts.items() for started in pending)
    return sorted(done, key=lambda e: e.started)


def _stopped(execution: Execution, moment: float, frozen: Frozen) -> bool:
    """``execution``'s process was stopped at ``moment``, or had just continued with
    ``execution`` left over from before it was stopped."""
    for stopped, continued in frozen.get(execution.pid, ()):
        if stopped <= moment <= continued:
            return True
        if execution.started < stopped and continued < moment <= continued + RESUME_GRACE:
            return True
    return False


def runs_at_once(executions: list[Execution], frozen: Frozen) -> list[tuple[Execution, Execution]]:
    """Pairs (first, second) of executions of one job where the second started while the first
    was running in a process that was not stopped."""
    by_tag: dict[str, list[Execution]] = defaultdict(list)
    for execution in executions:
        by_tag[execution.tag].append(execution)
    found = []
    for runs in by_tag.values():
        for i, first in enumerate(runs):
            for second in runs[i + 1:]:
                if first.running_at(second.started) and not _stopped(first, second.started, frozen):
                    found.append((first, second))
    return found


def over_limit(executions: list[Execution], tags: set[str], limit: int,
               frozen: Frozen) -> list[tuple[Execution, list[Execution]]]:
    """Starts of an execution of ``tags`` that made more than ``limit`` of them run at once (the
    ones in stopped processes not counted), with the others that were running."""
    limited = [e for e in executions if e.tag in tags]
    found = []
    for execution in limited:
        others = [o for o in limited if o is not execution and o.running_at(execution.started)
                  and not _stopped(o, execution.started, frozen)]
        if len(others) + 1 > limit:
            found.append((execution, others))
    return found


def send(broker, path: Path, jobs, *, queue: str | None = None) -> dict[str, str]:
    """Enqueue timed jobs, ``jobs`` = [(actor, tag, seconds)], in one statement, on their actor's
    queue or on ``queue``; returns {tag: job id}."""
    messages = [actor.message(str(path), tag, seconds) for actor, tag, seconds in jobs]
    if queue is not None:
        messages = [message.copy(queue_name=queue) for message in messages]
    sent = broker.enqueue_many(messages)
    return {tag: message.message_id for (_, tag, _), message in zip(jobs, sent)}


def process_running(pid: int) -> bool:
    """Alive and not a zombie (a worker process its parent has not reaped yet is done)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def all_ended(path: Path) -> bool:
    """Every execution has ended, or the process that ran it has."""
    return not any(e.open and process_running(e.pid) for e in read(path))
