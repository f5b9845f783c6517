"""Bench workload: 10,000 signed webhook deliveries to a local receiver.

    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/postgres .venv/bin/python bench/webhooks.py \
        [--deliveries 10000] [--endpoints 10] [--processes 2] [--threads 8] [--out FILE.json]

Creates a throwaway database on DATABASE_URL's server, one tenant with ``--endpoints`` endpoints
(each taking its own event type) at a threaded HTTP receiver on 127.0.0.1, starts `lamplighter
worker -Q webhooks`, then publishes the events (1,000 per transaction, deliveries queued in the
same statement batch) and waits until the receiver has every delivery. Reports deliveries per
second (first publish to last delivery) and the time from each event's creation (its
transaction's time, lamplighter.now()) to its arrival at the receiver: p50, p99, max. Every
tenth request's signature is checked against the endpoint's secret.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
import psycopg2

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(1, str(ROOT / "bench"))

from harness.scratch import scratch_database  # noqa: E402


class Receiver(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self):
        super().__init__(("127.0.0.1", 0), Handler)
        self.arrivals: dict[str, float] = {}  # webhook-id + endpoint path -> time
        self.samples: list[tuple[str, dict, bytes]] = []
        self.lock = threading.Lock()


class Handler(BaseHTTPRequestHandler):
    def do_POST(self):  # noqa: N802 (http.server's name)
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        now = time.time()
        with self.server.lock:
            self.server.arrivals[f"{self.path}:{self.headers['webhook-id']}"] = now
            if len(self.server.arrivals) % 10 == 0:
                self.server.samples.append((self.path, dict(self.headers), body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deliveries", type=int, default=10_000)
    parser.add_argument("--endpoints", type=int, default=10)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--timeout", type=float, default=600)
    parser.add_argument("--rate", type=float, default=0,
                        help="events per second, published in tenths of a second (0: all at once, a burst)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    server_url = os.environ.get("DATABASE_URL")
    if not server_url:
        print("bench/webhooks.py: set DATABASE_URL to a PostgreSQL server it may create a database on", file=sys.stderr)
        return 2
    receiver = Receiver()
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    lamplighter = str(Path(sys.executable).with_name("lamplighter"))
    with scratch_database(server_url, "ll_bench_webhooks", LAMPLIGHTER_OUTBOUND_ALLOW="127.0.0.1",
                          LAMPLIGHTER_LOG_LEVEL="WARNING", LAMPLIGHTER_LOG_FORMAT="json",
                          LAMPLIGHTER_WEBHOOKS_CONCURRENCY="4") as (url, env):
        try:
            return _run(args, url, env, receiver, lamplighter)
        finally:
            receiver.shutdown()


def _run(args, url, env, receiver, lamplighter) -> int:
    worker = None
    try:
        import actors
        from domain import tenants, webhooks
        from domain import webhook_signatures as signatures

        tenants.create_tenant("bench", "Bench", by="bench")
        port = receiver.server_address[1]
        secrets = {}
        for n in range(args.endpoints):
            endpoint, secret = webhooks.add_endpoint("bench", f"http://127.0.0.1:{port}/e{n}", event_types=[f"bench.e{n}"],
                                                     by="bench")
            secrets[f"/e{n}"] = secret
        worker = subprocess.Popen([lamplighter, "worker", "-p", str(args.processes), "-t", str(args.threads),
                                   "-Q", "webhooks"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                  start_new_session=True)
        conn = psycopg2.connect(url)
        conn.autocommit = True
        deadline = time.monotonic() + 60
        while _one(conn, "SELECT count(*) FROM lamplighter.workers") < args.processes:
            if time.monotonic() > deadline:
                raise SystemExit("workers did not register within 60 s")
            time.sleep(0.1)
        per_endpoint = args.deliveries // args.endpoints
        started = time.time()
        if args.rate:  # steady: every 0.1 s, rate/10 events spread over the endpoints
            step = max(1, int(args.rate / 10))
            sent, tick = 0, time.monotonic()
            while sent < per_endpoint * args.endpoints:
                for k in range(sent, min(sent + step, per_endpoint * args.endpoints)):
                    webhooks.publish("bench", f"bench.e{k % args.endpoints}", [{"n": k}],
                                     send=actors.webhooks.queue_deliveries)
                sent += step
                tick += 0.1
                time.sleep(max(0.0, tick - time.monotonic()))
        else:
            for n in range(args.endpoints):
                for first in range(0, per_endpoint, 1000):
                    webhooks.publish("bench", f"bench.e{n}",
                                     [{"n": i} for i in range(first, min(first + 1000, per_endpoint))],
                                     send=actors.webhooks.queue_deliveries)
        published = time.time()
        total = per_endpoint * args.endpoints
        deadline = time.monotonic() + args.timeout
        while len(receiver.arrivals) < total:
            if time.monotonic() > deadline:
                raise SystemExit(f"timed out: {len(receiver.arrivals)} of {total} delivered")
            time.sleep(0.05)
        last = max(receiver.arrivals.values())
        created = {f"/e{endpoint}:msg_{event}": at.timestamp() for event, endpoint, at in _rows(
            conn, "SELECT e.id, substr(e.event_type, 8)::int, e.created_at FROM lamplighter.webhook_events e")}
        latencies = [(arrived - created[key]) * 1000 for key, arrived in receiver.arrivals.items()]
        for path, headers, body in receiver.samples:
            signatures.verify(secrets[path], headers, body)
        counts = dict(_rows(conn, "SELECT status, count(*) FROM lamplighter.webhook_deliveries GROUP BY 1"))
        result = {
            "deliveries": total, "rate": args.rate or "burst", "endpoints": args.endpoints, "processes": args.processes, "threads": args.threads,
            "concurrency_per_endpoint": 4, "publish_s": round(published - started, 3),
            "deliveries_per_s": round(total / (last - started), 1),
            "latency_ms": {"p50": round(statistics.median(latencies), 1), "p99": round(percentile(latencies, 99), 1),
                           "max": round(max(latencies), 1)},
            "signatures_checked": len(receiver.samples), "delivery_rows": counts,
        }
        print(json.dumps(result, indent=2))
        if args.out:
            args.out.write_text(json.dumps(result, indent=2) + "\n")
        return 0
    finally:
        if worker is not None:
            os.killpg(worker.pid, signal.SIGTERM)
            try:
                worker.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(worker.pid, signal.SIGKILL)


def _one(conn, text):
    cur = conn.cursor()
    cur.execute(text)
    return cur.fetchone()[0]


def _rows(conn, text):
    cur = conn.cursor()
    cur.execute(text)
    return cur.fetchall()


if __name__ == "__main__":
    raise SystemExit(main())
