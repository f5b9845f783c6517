"""What the database says about the jobs of a test: which a worker holds, whether they all
settled, and whether each attempt has its one history row."""
from __future__ import annotations


def held_by(sql, worker_id: str) -> tuple[set[str], set[str]]:
    """Ids of the jobs ``worker_id`` holds: (started, claimed but not started)."""
    rows = sql("SELECT message_id::text, started_at IS NOT NULL FROM dramatiq.queue "
               "WHERE state = 'running' AND worker_id = %s", (worker_id,))
    return {i for i, started in rows if started}, {i for i, started in rows if not started}


def states(sql) -> dict[str, int]:
    return dict(sql("SELECT state, count(*) FROM dramatiq.queue GROUP BY state"))


def settled(sql) -> bool:
    """Nothing queued (or waiting for a retry) and nothing running."""
    return sql("SELECT count(*) FROM dramatiq.queue WHERE state IN ('queued', 'running')") == [(0,)]


def history(sql) -> dict[str, list[tuple]]:
    """Per job id, its history rows (attempt, outcome, worker id, started_at epoch), in attempt
    order."""
    rows = sql("SELECT job_id::text, attempt, outcome, worker_id::text, extract(epoch FROM started_at)::float8 "
               "FROM lamplighter.job_history ORDER BY job_id, attempt")
    found: dict[str, list[tuple]] = {}
    for job_id, *row in rows:
        found.setdefault(job_id, []).append(tuple(row))
    return found


def record_problems(sql, tags: dict[str, str]) -> list[str]:
    """Every job of ``tags`` ({tag: job id}) completed, none dead, and one history row for each
    of its attempts (the table's unique key allows at most one; none missing either)."""
    rows = dict((i, (state, attempt)) for i, state, attempt in
                sql("SELECT message_id::text, state, attempt FROM dramatiq.queue"))
    attempts = history(sql)
    problems = []
    for tag, job_id in sorted(tags.items()):
        state, attempt = rows[job_id]
        if state != "completed":
            problems.append(f"job {tag} ended {state}, not completed")
        recorded = [row[0] for row in attempts.get(job_id, [])]
        if recorded != list(range(1, attempt + 1)):
            problems.append(f"job {tag} is at attempt {attempt} but history has rows for attempts {recorded} "
                            f"({[row[1] for row in attempts.get(job_id, [])]}): one row per attempt expected")
    return problems
