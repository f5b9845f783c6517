"""A whole deployment on a throwaway cluster (tests/pg_cluster.py), for the outage tests and
bench/outage.py: two worker processes (tests.worker_app), one scheduler and one `lamplighter web`,
each a real subprocess over the cluster's Unix socket, and a client that asks the API (a token's
GET /api/jobs), /readyz and a dashboard page (a signed-in session's /dashboard/jobs) what they say.

The jobs are tests.timed: each start and end goes to a file, since the database that would count
them is the one being stopped. The scheduler runs with a clock offset that puts "now" a few
seconds before a minute boundary, so that a per-minute schedule ticks within the run.
"""
from __future__ import annotations

import json
from collections import Counter
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import requests

from tests import executions
from tests.conftest import ROOT, lamplighter_env, use_database, wait_for
from tests.job_records import record_problems, states

QUEUE = "tests-outage"
WORKER_ENV = {"LAMPLIGHTER_LEASE_TIMEOUT": "3", "LAMPLIGHTER_HEARTBEAT_INTERVAL": "0.5"}
SCHEDULER_ENV = {"LAMPLIGHTER_SCHEDULER_LEASE_TTL": "2", "LAMPLIGHTER_SCHEDULER_POLL_INTERVAL": "0.5"}
SCHEDULE_KEY = "outage-every-minute"
# What an answer of the web may never contain: a Python traceback, or the names psycopg2 and
# peewee give a lost connection (a 503's body says "database unavailable", nothing more).
LEAKS = ("Traceback", "psycopg2", "peewee", "OperationalError", "InterfaceError", 'File "')


@dataclass
class Answer:
    what: str
    status: int | None  # None: no answer at all (the connection failed or timed out)
    body: str
    content_type: str = ""

    def problem(self, *, down: bool) -> str | None:
        """Why this answer is wrong while the database is down (``down``) or after it is back."""
        if self.status is None:
            return f"{self.what}: no answer ({self.body})"
        leaked = [word for word in LEAKS if word in self.body]
        if leaked:
            return f"{self.what}: {self.status} whose body shows {leaked}: {self.body[:300]!r}"
        if not down:
            return None if self.status == 200 else f"{self.what}: {self.status}, not 200: {self.body[:300]!r}"
        if self.status != 503:
            return f"{self.what}: {self.status} while the database was down, not 503: {self.body[:300]!r}"
        if self.what == "dashboard":  # a browser's page: the dashboard's error page, saying why
            if self.content_type.startswith("text/html") and "database unavailable" in self.body:
                return None
            return f"{self.what}: a 503 that is not the error page naming the database: {self.body[:300]!r}"
        if self.content_type.startswith("application/json"):
            body = json.loads(self.body)
            return None if body.get("error") else f"{self.what}: a 503 whose JSON names no error: {body}"
        return f"{self.what}: a 503 of type {self.content_type!r}: {self.body[:300]!r}"


@dataclass
class Rig:
    cluster: object
    workers: object  # tests.worker_processes.WorkerProcesses
    tmp_path: Path
    offset: float = 0.0  # the scheduler's clock offset
    web: subprocess.Popen | None = None
    web_url: str = ""
    scheduler: subprocess.Popen | None = None
    token: str = ""
    dashboard: requests.Session | None = None
    tags: dict[str, str] = field(default_factory=dict)
    api: requests.Session = field(default_factory=requests.Session)
    last_readyz: float = 0.0

    @property
    def executions_path(self) -> Path:
        return self.tmp_path / "executions.log"

    # -- starting ---------------------------------------------------------------------------

    def start(self, *, threads: int = 4, seconds_before_tick: float = 6.0) -> "Rig":
        from console.web.server import bind
        from scheduler import sync
        from storage.schedules import Definition
        from tests.dashboard_users import create_user, signed_in

        self.token = self._token()
        email = create_user("viewer")
        probe = bind(0, "127.0.0.1")
        port = probe.getsockname()[1]
        probe.close()
        self.web = self._spawn("web", ["web", "--port", str(port)])
        self.web_url = f"http://127.0.0.1:{port}"
        for name in ("a", "b"):
            self.workers.start(name, self.cluster.url, self.cluster.sql, threads=threads, queues=[QUEUE],
                               **WORKER_ENV)
        # The scheduler last: its first minute boundary is ``seconds_before_tick`` from now.
        self.offset = (60 - seconds_before_tick) - time.time() % 60
        use_database(self.cluster.url, LAMPLIGHTER_CLOCK_OFFSET=f"{self.offset:.6f}")
        sync.sync([Definition(key=SCHEDULE_KEY, actor_name="maintenance.ping", queue_name="maintenance", priority=0,
                              max_attempts=4, concurrency_key=None, concurrency_limit=None, cron="* * * * *",
                              zone="UTC", args=[], kwargs={"note": "outage"}, misfire="run_once",
                              grace_seconds=3600.0, overlap="allow")])
        use_database(self.cluster.url)
        self.scheduler = self._spawn("scheduler", ["scheduler"], LAMPLIGHTER_CLOCK_OFFSET=f"{self.offset:.6f}",
                                     **SCHEDULER_ENV)
        self.wait(lambda: self.web.poll() is None and self.ask_readyz().status == 200, 30, "lamplighter web ready")
        self.dashboard = signed_in(self.web_url, email)
        self.wait(self.leader, 30, "the scheduler leading")
        return self

    def _token(self) -> str:
        from domain import scopes, tokens

        return tokens.create_token(name="outage", scope_names=scopes.ROLES["viewer"], by="tests").secret

    def _spawn(self, name: str, args: list[str], **env: str) -> subprocess.Popen:
        with open(self.tmp_path / f"{name}.log", "wb") as out:
            return subprocess.Popen([sys.executable, "-m", "console", *args], cwd=ROOT, stdout=out,
                                    stderr=subprocess.STDOUT,
                                    env=lamplighter_env(DATABASE_URL=self.cluster.url, **env))

    def log(self, name: str) -> str:
        path = self.tmp_path / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> None:
        for proc in (self.web, self.scheduler):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)
        self.api.close()
        if self.dashboard is not None:
            self.dashboard.close()

    # -- what the processes say -------------------------------------------------------------

    def describe(self) -> str:
        try:
            found = f"job states {states(self.cluster.sql)}"
        except Exception as exc:  # the database may be the problem
            found = f"job states unknown ({type(exc).__name__})"
        tails = "\n".join(f"--- {name} log, tail ---\n{self.log(name)[-2500:]}" for name in ("web", "scheduler"))
        return f"{found}\n{tails}\n{self.workers.logs()}"

    def wait(self, condition, timeout: float, message: str):
        try:
            return wait_for(condition, timeout=timeout, interval=0.1, message=message)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{self.describe()}") from None

    def _ask(self, what: str, session: requests.Session, path: str, **kwargs) -> Answer:
        try:
            got = session.get(self.web_url + path, timeout=15, allow_redirects=False, **kwargs)
        except requests.RequestException as exc:
            return Answer(what, None, type(exc).__name__)
        return Answer(what, got.status_code, got.text, got.headers.get("content-type", ""))

    def ask_api(self) -> Answer:
        return self._ask("GET /api/jobs", self.api, "/api/jobs?limit=5",
                         headers={"Authorization": f"Bearer {self.token}"})

    def ask_readyz(self) -> Answer:
        self.last_readyz = time.monotonic()
        return self._ask("/readyz", self.api, "/readyz")

    def ask_dashboard(self) -> Answer:
        return self._ask("dashboard", self.dashboard, "/dashboard/jobs")

    def ask_all(self) -> list[Answer]:
        return [self.ask_api(), self.ask_readyz(), self.ask_dashboard()]

    def web_log_problems(self) -> list[str]:
        """Lines of the web's log that are a traceback or an unhandled error (a 500)."""
        return [line for line in self.log("web").splitlines()
                if "Traceback" in line or "http_unhandled_error" in line or '"level": "error"' in line
                or '"level": "critical"' in line]

    def holder(self) -> str | None:
        started = [json.loads(line) for line in self.log("scheduler").splitlines()
                   if line.startswith("{") and "scheduler_started" in line]
        return started[0]["holder"] if started else None

    def lease(self) -> tuple | None:
        """(holder, renewed_at) of the scheduler lease, None if unreadable. (Its times are on the
        scheduler's shifted clock: compare them with each other only.)"""
        try:
            found = self.cluster.sql("SELECT holder, renewed_at FROM lamplighter.scheduler_lease")
        except Exception:
            return None
        return found[0] if found else None

    def leader(self) -> bool:
        """The scheduler process holds the lease."""
        lease = self.lease()
        return lease is not None and lease[0] == self.holder()

    def renewals_after(self) -> callable:
        """A condition: our scheduler renewed the lease since now (twice: it polls again)."""
        before = self.lease()
        seen: set = set()

        def renewed():
            lease = self.lease()
            if lease is None or lease[0] != self.holder() or (before is not None and lease[1] <= before[1]):
                return False
            seen.add(lease[1])
            return len(seen) >= 2

        return renewed

    def ticks(self) -> list[tuple]:
        return self.cluster.sql("SELECT fire_at, count(*) FROM lamplighter.schedule_ticks WHERE schedule_key = %s "
                                "GROUP BY fire_at ORDER BY fire_at", (SCHEDULE_KEY,))

    def scheduler_now(self) -> float:
        """time.time() as the scheduler sees it."""
        return time.time() + self.offset

    # -- the jobs ---------------------------------------------------------------------------

    def send(self, prefix: str, count: int, seconds: float) -> dict[str, str]:
        import tests.worker_app as app
        from actors import broker

        sent = executions.send(broker, self.executions_path,
                               [(app.timed, f"{prefix}{i}", seconds) for i in range(count)])
        self.tags.update(sent)
        return sent

    def started(self, tags) -> int:
        wanted = set(tags)
        return len({e.tag for e in executions.read(self.executions_path) if e.tag in wanted})

    def settle(self, timeout: float = 60) -> None:
        # Only this run's jobs: the scheduler's ticks go to a queue no worker here consumes.
        ids = list(self.tags.values())
        self.wait(lambda: self.cluster.sql("SELECT count(*) FROM dramatiq.queue WHERE message_id = ANY(%s::uuid[]) "
                                           "AND state IN ('queued', 'running')", (ids,)) == [(0,)],
                  timeout, "every job settled")
        self.wait(lambda: executions.all_ended(self.executions_path), 30, "every execution ended")

    def job_problems(self) -> list[str]:
        """Each job ran exactly once (the workers stayed alive: none is re-run), never twice at
        once, completed, with one history row per attempt; every process still alive."""
        runs = executions.read(self.executions_path)
        problems = [f"job {a.tag} ran twice at once: {a} | {b}" for a, b in executions.runs_at_once(runs, {})]
        problems += [f"job {tag} ran {n} times" for tag in self.tags
                     if (n := sum(e.tag == tag for e in runs)) != 1]
        problems += record_problems(self.cluster.sql, self.tags)
        problems += [f"worker {w.name} exited {w.proc.returncode}" for w in self.workers.started if not w.alive()]
        problems += [f"{name} exited {proc.returncode}" for name, proc in (("web", self.web),
                                                                           ("scheduler", self.scheduler))
                     if proc.poll() is not None]
        return problems


def outage(rig: Rig, seconds: float, *, interval: float = 0.5) -> dict:
    """Stop the cluster for ``seconds``, asking the web (API, /readyz, dashboard) every
    ``interval`` meanwhile; start it again and wait until every answer is 200 and the scheduler
    leads again. Returns what was seen: answers while down, problems, recovery times."""
    # /readyz keeps its answer for 1 s: let the last one age, so that the first asked while the
    # server is down is checked against it.
    rig.wait(lambda: time.monotonic() - rig.last_readyz >= 1.1, 5, "the last /readyz answer aged")
    rig.cluster.stop_fast()
    down = time.monotonic()
    answers: list[Answer] = []
    while True:
        answers += rig.ask_all()
        if time.monotonic() - down >= seconds:
            break
        wait_for(lambda: time.monotonic() - down >= min(seconds, len(answers) / 3 * interval), timeout=seconds + 5,
                 message="the next round of questions")
    problems = [p for a in answers if (p := a.problem(down=True))]
    stopped_for = time.monotonic() - down
    rig.cluster.start()
    back = time.monotonic()
    use_database(rig.cluster.url)  # this process enqueues the next batch: on a new connection
    rig.wait(lambda: all(a.status == 200 for a in rig.ask_all()), 30, "the web answering 200 again")
    web_back = time.monotonic() - back
    rig.wait(rig.renewals_after(), 30, "the scheduler renewing its lease again")
    scheduler_back = time.monotonic() - back
    problems += [p for a in rig.ask_all() if (p := a.problem(down=False))]
    return {"down_s": round(stopped_for, 2), "answers_while_down": len(answers),
            "statuses_while_down": sorted({(a.what, a.status) for a in answers}, key=str),
            "counts_while_down": dict(Counter(f"{a.what} {a.status}" for a in answers)),
            "first_answers_while_down": {a.what: f"{a.status} {a.content_type}: {a.body[:160]}" for a in answers[2::-1]},
            "web_back_s": round(web_back, 2), "scheduler_leading_again_s": round(scheduler_back, 2),
            "problems": problems}
