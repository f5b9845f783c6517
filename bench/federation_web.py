"""The federation endpoints' latency from one web process (issue 19: p99 <= 5 ms at 200
requests/s). A bench figure, run on demand, not a timed test:

    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/postgres python bench/federation_web.py --rate 200 --seconds 30

Creates a scratch database on that server, migrates it, generates and publishes the documents,
starts one uvicorn process serving console/federation_web.py's router (the web app's shape:
the router on a FastAPI app), then sends GETs open-loop at the given rate over keep-alive
connections, round-robin over the three paths, and prints the latency percentiles as JSON.
"""
from __future__ import annotations

import argparse
import base64
import json
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlparse, urlunparse

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
PATHS = ["/.well-known/openid-federation", "/.well-known/jwks.json", "/.well-known/signed-jwks.json"]
ENV = {"LAMPLIGHTER_FEDERATION_ENTITY_ID": "https://op.example.org",
       "LAMPLIGHTER_FEDERATION_AUTHORITY_HINTS": "https://ta.example.org",
       "LAMPLIGHTER_ENCRYPTION_KEYS": "bench:" + base64.urlsafe_b64encode(os.urandom(32)).decode(),
       "LAMPLIGHTER_LOG_LEVEL": "WARNING"}


def serve(port: int) -> None:
    import uvicorn
    from fastapi import FastAPI

    from console.federation_web import router
    from storage import connection

    connection.init_database("lamplighter-web")
    app = FastAPI()
    app.include_router(router)
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


def prepare(server_url: str) -> str:
    import psycopg2

    name = f"ll_fedbench_{uuid.uuid4().hex[:8]}"
    admin = psycopg2.connect(server_url)
    admin.autocommit = True
    admin.cursor().execute(f'CREATE DATABASE "{name}"')
    admin.close()
    url = urlunparse(urlparse(server_url)._replace(path="/" + name))
    env = {**os.environ, **ENV, "DATABASE_URL": url}
    subprocess.run([sys.executable, "-m", "console", "migrate"], cwd=ROOT, env=env, check=True, capture_output=True)
    code = "from domain import federation; from storage import settings; print(federation.publish(settings.get().federation))"
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, check=True, capture_output=True)
    return url


def drop(server_url: str, url: str) -> None:
    import psycopg2

    admin = psycopg2.connect(server_url)
    admin.autocommit = True
    admin.cursor().execute(f'DROP DATABASE IF EXISTS "{urlparse(url).path.lstrip("/")}" WITH (FORCE)')
    admin.close()


def load(base: str, rate: float, seconds: float) -> dict:
    import requests

    local = threading.local()
    latencies: list[float] = []
    errors = [0]

    def get(path: str) -> None:
        if not hasattr(local, "session"):  # one keep-alive connection per client thread
            local.session = requests.Session()
        session = local.session
        started = time.perf_counter()
        response = session.get(base + path, timeout=5)
        elapsed = time.perf_counter() - started
        if response.status_code != 200:
            errors[0] += 1
        latencies.append(elapsed * 1000)

    with ThreadPoolExecutor(max_workers=16) as pool:
        for i in range(int(rate)):  # warm-up: connections, the first reload
            pool.submit(get, PATHS[i % 3]).result()
        latencies.clear()
        start = time.perf_counter()
        total = int(rate * seconds)
        for i in range(total):
            delay = start + i / rate - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            pool.submit(get, PATHS[i % 3])
        took = time.perf_counter() - start
    ordered = sorted(latencies)
    pick = lambda q: round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 2)  # noqa: E731
    return {"requests": len(ordered), "errors": errors[0], "rate_sent": round(total / took, 1),
            "p50_ms": pick(0.50), "p90_ms": pick(0.90), "p99_ms": pick(0.99), "max_ms": round(ordered[-1], 2),
            "mean_ms": round(statistics.fmean(ordered), 2)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve)
        return 0
    server_url = os.environ.get("DATABASE_URL")
    if not server_url:
        print("set DATABASE_URL to a PostgreSQL server (a scratch database is created on it)", file=sys.stderr)
        return 2
    url = prepare(server_url)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    web = subprocess.Popen([sys.executable, __file__, "--serve", str(port)], cwd=ROOT,
                           env={**os.environ, **ENV, "DATABASE_URL": url})
    try:
        import requests

        deadline = time.monotonic() + 30
        while True:
            try:
                requests.get(f"http://127.0.0.1:{port}{PATHS[0]}", timeout=1)
                break
            except requests.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        result = load(f"http://127.0.0.1:{port}", args.rate, args.seconds)
    finally:
        web.terminate()
        web.wait(10)
        drop(server_url, url)
    print(json.dumps({"bench": "federation_web", "rate": args.rate, "seconds": args.seconds, **result}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
