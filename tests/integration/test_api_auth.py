"""The authorization matrix: every /api route, without a token, with a bad one, and with a token
of each scope. No token or a bad one → 401; a token without the route's scope → 403; a token
with it gets past authorization (no 401/403, no 5xx). Every answer is JSON."""
import pytest

from scheduler import sync
from storage.schedules import Definition

PING = {"actor": "maintenance.ping", "kwargs": {"note": "hi"}}

# Every /api operation and the scope it needs ("superadmin": a platform superadmin). A route added
# without a line here fails test_the_matrix_covers_every_route.
ROUTES = {
    ("POST", "/api/jobs"): "enqueue",
    ("POST", "/api/jobs/batch"): "enqueue",
    ("GET", "/api/jobs"): "read",
    ("GET", "/api/jobs/{job_id}"): "read",
    ("POST", "/api/jobs/{job_id}/retry"): "operate",
    ("POST", "/api/jobs/{job_id}/cancel"): "operate",
    ("POST", "/api/jobs/{job_id}/discard"): "operate",
    ("POST", "/api/jobs/retry"): "operate",
    ("GET", "/api/schedules"): "read",
    ("POST", "/api/schedules/{key}/pause"): "operate",
    ("POST", "/api/schedules/{key}/resume"): "operate",
    ("POST", "/api/schedules/{key}/run"): "operate",
    ("POST", "/api/queues/{name}/pause"): "operate",
    ("POST", "/api/queues/{name}/resume"): "operate",
    ("GET", "/api/queues/stats"): "superadmin",
    ("GET", "/api/audit"): "audit",
}
BODIES = {"/api/jobs": PING, "/api/jobs/batch": {"jobs": [PING]}, "/api/jobs/retry": {}}
TOKENS = {  # name -> (scopes, role)
    "read": (("read",), None),
    "operate": (("operate",), None),
    "enqueue": (("enqueue",), None),
    "audit": (("audit",), None),
    "operator": ((), "operator"),
    "superadmin": ((), "superadmin"),
}
PUBLIC = {"/api/openapi.json", "/api/docs", "/api/docs/oauth2-redirect"}


def _operations(api) -> set[tuple[str, str]]:
    schema = api.call("GET", "/api/openapi.json").json()
    return {(method.upper(), path) for path, item in schema["paths"].items() for method in item
            if path.startswith("/api/") and path not in PUBLIC}


def test_the_matrix_covers_every_route(api):
    assert _operations(api) == set(ROUTES)


@pytest.fixture
def targets(api):
    """A queued job, a schedule and a queue for the routes' path parameters."""
    superadmin = api.token(role="superadmin")
    job_id = api.call("POST", "/api/jobs", superadmin, json=PING).json()["id"]
    sync.sync([Definition(key="auth.ping", actor_name="maintenance.ping", queue_name="maintenance", priority=0,
                          max_attempts=4, concurrency_key=None, concurrency_limit=None, cron="*/5 * * * *", zone="UTC",
                          args=[], kwargs={}, misfire="run_once", grace_seconds=60.0, overlap="allow")])
    return {"job_id": job_id, "key": "auth.ping", "name": "maintenance"}


def _call(api, method, path, token, targets):
    url = path.format(**targets)
    return api.call(method, url, token, json=BODIES.get(path) if method == "POST" else None)


def _allowed(required: str, token_name: str) -> bool:
    scopes, role = TOKENS[token_name]
    if required == "superadmin":
        return role == "superadmin"
    from domain.scopes import ROLES

    return required in (ROLES[role] if role else set(scopes))


def test_without_a_token_or_with_a_bad_one_every_route_is_401(api, targets):
    for (method, path) in ROUTES:
        for token in (None, "llt_" + "x" * 43, "not-a-token"):
            answer = _call(api, method, path, token, targets)
            assert answer.status_code == 401, (method, path, token, answer.text)
            assert answer.json()["error"] == "unauthenticated"
            assert answer.headers["WWW-Authenticate"].startswith("Bearer")


def test_each_scope_reaches_its_routes_and_no_other(api, targets):
    tokens = {name: api.token(*scopes, role=role) for name, (scopes, role) in TOKENS.items()}
    outcomes = {}
    for (method, path), required in ROUTES.items():
        for name, token in tokens.items():
            answer = _call(api, method, path, token, targets)
            assert answer.status_code < 500, (method, path, name, answer.text)
            if answer.status_code >= 400:
                assert set(answer.json()) == {"error", "message"}, (method, path, name, answer.text)
            outcomes[(method, path, name)] = answer.status_code
            if _allowed(required, name):
                assert answer.status_code not in (401, 403), (method, path, name, answer.text)
            else:
                assert (answer.status_code, answer.json()["error"]) == (403, "forbidden"), (method, path, name)
    # Every route was reached by some token (the matrix is not all refusals).
    assert all(any(outcomes[(m, p, n)] not in (401, 403) for n in tokens) for (m, p) in ROUTES)


def test_an_enqueue_token_limited_to_actors_and_queues(api):
    limited = api.token("enqueue", actors=["maintenance.ping"], queues=["maintenance"])
    assert api.call("POST", "/api/jobs", limited, json=PING).status_code == 201
    other_queue = api.call("POST", "/api/jobs", limited, json={**PING, "queue": "elsewhere"})
    assert other_queue.status_code == 403 and "elsewhere" in other_queue.json()["message"]
    other_actor = api.call("POST", "/api/jobs", limited, json={"actor": "tokens.prune_expired"})
    assert other_actor.status_code == 403 and "tokens.prune_expired" in other_actor.json()["message"]


def test_the_pool_is_bounded_and_a_request_that_finds_it_busy_gets_503(database_url, sql):
    import dataclasses
    import threading

    import psycopg2

    from console.web import create_app
    from storage import settings as settings_module
    from tests.conftest import wait_for
    from tests.web_api import ApiServer

    settings = settings_module.get()
    narrow = dataclasses.replace(settings, web=dataclasses.replace(settings.web, pool_size=1, pool_timeout=0.3))
    server = ApiServer(create_app(narrow)).start()
    holder = psycopg2.connect(database_url)
    try:
        token = server.token("enqueue", "read")
        [(token_id,)] = sql("SELECT id FROM lamplighter.api_tokens")
        holder.cursor().execute("INSERT INTO lamplighter.idempotency_keys (principal, key, request_hash) "
                                "VALUES (%s, 'held', 'x')", (f"token:{token_id}",))
        blocked = []
        thread = threading.Thread(target=lambda: blocked.append(server.call(
            "POST", "/api/jobs", token, json=PING, headers={"Idempotency-Key": "held"})))
        thread.start()
        wait_for(lambda: sql("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                             "AND wait_event_type = 'Lock'") == [(1,)], message="the one connection busy")
        busy = server.call("GET", "/api/jobs", token)
        assert (busy.status_code, busy.json()["error"], busy.headers["Retry-After"]) == (503, "busy", "1")
        holder.rollback()
        thread.join(timeout=30)
        assert blocked[0].status_code == 201
        assert server.call("GET", "/api/jobs", token).status_code == 200
    finally:
        holder.close()
        server.stop()
