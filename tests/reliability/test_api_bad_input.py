"""Every route of the HTTP API, read from its own OpenAPI schema, called with malformed values in
each parameter and body field: a fixed list of hostile values (wrong types, huge and odd strings,
unicode edge cases, SQL injection) and hypothesis-generated text. Every answer is a 2xx (the value
was valid) or a 4xx with the JSON body {"error": ..., "message": ...}; never a 5xx or a traceback.
SQL injection in every filter finds nothing and changes nothing; oversized bodies get a 413
before anything parses them."""
from __future__ import annotations

import json
import uuid
from urllib.parse import quote

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import actors

INJECTIONS = ["' OR 1=1 --", "'; DROP TABLE dramatiq.queue; --", "\" OR \"\"=\"", "1; SELECT pg_sleep(5)",
              "%' OR '%'='", "\\'; DELETE FROM lamplighter.audit_log; --", "*/ OR /*", "$1", "%s", "%(limit)s"]
HOSTILE = INJECTIONS + [
    "", " ", "-1", "0", "1e309", "NaN", "-Infinity", "9" * 400, "true", "null", "[]", "{}", "%", "_", "\\",
    "../../etc/passwd", "x" * 10_000, "\u0000", "a\u0000b", "\u202eevil", "ｓｅｌｅｃｔ", "🔥" * 50, "\ufeff", "\udcff",
    "2026-02-30T00:00:00Z", "0000-01-01T00:00:00Z", "9999-12-31T23:59:59-14:00", "now", "00000000-0000-0000-0000-0",
]
# Values of a wrong JSON type, for body fields.
WRONG_TYPES = [None, True, 0, -1, 2**64, 1.5, 1e308, "x", [], {}, [1, [2]], {"a": {"b": None}}, "x" * 100_000]


CONTROLS = {i: None for i in [*range(32), 127]}


def _check(answer, what: str) -> None:
    assert answer.status_code < 500, (what, answer.status_code, answer.text[:500])
    assert "Traceback" not in answer.text, what
    if answer.status_code >= 400:
        body = answer.json()
        assert set(body) == {"error", "message"}, (what, body)
        assert isinstance(body["error"], str) and isinstance(body["message"], str) and body["message"], (what, body)
        assert answer.headers["content-type"].startswith("application/json"), what


def _send_all(api, token, requests_: list[tuple[str, str, dict, str]]) -> list:
    """Send (method, path, request kwargs, label) from 8 threads and check every answer: one
    request over loopback takes about 45 ms here (a bare FastAPI app on uvicorn too), while the
    app spends under a millisecond on it."""
    local = threading.local()

    def one(item):
        method, path, kwargs, label = item
        if not hasattr(local, "session"):
            local.session = requests.Session()
        headers = {**kwargs.pop("headers", {}), "Authorization": f"Bearer {token}"}
        answer = local.session.request(method, api.url + path, headers=headers, timeout=60, **kwargs)
        _check(answer, label)
        return answer

    with ThreadPoolExecutor(8) as pool:
        return list(pool.map(one, requests_))


def _operations(api) -> list[tuple[str, str, dict]]:
    schema = api.call("GET", "/api/openapi.json").json()
    found = [(method.upper(), path, op) for path, ops in schema["paths"].items() for method, op in ops.items()]
    assert len(found) >= 19  # every route, not a handful
    return found


def _url(path: str, path_values: dict[str, str]) -> str:
    for name, value in path_values.items():
        path = path.replace("{" + name + "}", quote(value, safe="", errors="surrogatepass"))
    return path


def _defaults(op: dict) -> dict[str, str]:
    """A valid value for each path parameter (a job id that does not exist, a plain name)."""
    return {p["name"]: str(uuid.uuid4()) if p["schema"].get("format") == "uuid" else "maintenance"
            for p in op.get("parameters", []) if p["in"] == "path"}


def _request(method, path, op, name=None, where=None, value=None, **kwargs) -> tuple[str, str, dict, str]:
    """(method, path, request kwargs, label) with ``value`` in parameter ``name``."""
    path_values, params, headers = _defaults(op), {}, {}
    if where == "path":
        path_values[name] = value
    elif where == "query":  # encoded here: a client library refuses a lone surrogate
        params = f"{quote(name)}={quote(value, safe='', errors='surrogatepass')}"
    elif where == "header":
        # Only what an HTTP client can send at all: no surrounding space, no control character.
        headers[name] = value.strip().encode("utf-8", "surrogatepass").decode("latin-1").translate(CONTROLS) or "x"
    if op.get("requestBody") and "json" not in kwargs and "data" not in kwargs:
        kwargs["json"] = {"actor": "maintenance.ping"} if path.endswith("/jobs") else {}
    label = f"{method} {path} {name}={str(value)[:40]!r}"
    return method, _url(path, path_values), {"params": params, "headers": headers, **kwargs}, label


def _send(api, token, method, path, op, name=None, where=None, value=None):
    method, url, kwargs, _ = _request(method, path, op, name, where, value)
    headers = kwargs.pop("headers")
    return api.call(method, url, token, headers=headers, **kwargs)


@pytest.fixture
def seeded(api, sql):
    """A few jobs of each state and an audit entry, so that a filter matching everything shows."""
    for i in range(3):
        actors.maintenance.ping.send(note=f"seed {i}")
    sql("UPDATE dramatiq.queue SET state = 'dead', finished_at = lamplighter.now(), last_error = 'RuntimeError: x' "
        "WHERE message_id IN (SELECT message_id FROM dramatiq.queue LIMIT 1)")
    token = api.token(role="superadmin")
    assert api.call("POST", "/api/queues/maintenance/pause", token).status_code == 200
    assert api.call("POST", "/api/queues/maintenance/resume", token).status_code == 200
    return token


def _counts(sql) -> tuple:
    return sql("SELECT (SELECT count(*) FROM dramatiq.queue), (SELECT count(*) FROM lamplighter.audit_log), "
               "(SELECT count(*) FROM lamplighter.api_tokens), (SELECT count(*) FROM pg_tables "
               "WHERE schemaname IN ('dramatiq', 'lamplighter'))")[0]


def test_every_parameter_of_every_route_with_hostile_values(api, sql, seeded):
    before = _counts(sql)
    cases = [_request(method, path, op, param["name"], param["in"], value)
             for method, path, op in _operations(api) for param in op.get("parameters", [])
             if param["name"].lower() != "authorization" for value in HOSTILE]
    assert len(cases) > 500
    _send_all(api, seeded, cases)
    # POSTs may have enqueued or paused: the rows that exist are still all there, the tables too.
    after = _counts(sql)
    assert after[0] >= before[0] and after[1] >= before[1] and after[2:] == before[2:]


FILTERS = [("/api/jobs", name) for name in ("state", "queue", "actor", "tenant", "error", "cursor")] + [
    ("/api/audit", name) for name in ("actor", "action", "tenant")]


def test_sql_injection_in_every_filter_finds_nothing_and_changes_nothing(api, sql, seeded):
    before = _counts(sql)
    cases = [("GET", path, {"params": {name: value}}, f"{path} {name}={value!r}")
             for path, name in FILTERS for value in INJECTIONS]
    for (_, path, params, label), answer in zip(cases, _send_all(api, seeded, cases)):
        assert answer.status_code in (200, 422), (label, answer.text[:300])
        if answer.status_code == 200:
            found = answer.json()["jobs"] if path == "/api/jobs" else answer.json()
            assert found == [], (label, found)
    # Nothing else either: bulk retry's filters and names in paths.
    cases = [("POST", "/api/jobs/retry", {"json": {field: value}}, f"bulk retry {field}={value!r}")
             for field in ("actor", "queue", "error_type") for value in INJECTIONS]
    for label, answer in zip(cases, _send_all(api, seeded, cases)):
        assert answer.status_code == 422 or answer.json()["ids"] == [], (label, answer.text[:300])
    cases = [("POST", path.format(quote(value, safe="")), {}, f"{path} {value!r}") for value in INJECTIONS
             for path in ("/api/schedules/{}/run", "/api/schedules/{}/pause", "/api/queues/{}/pause")]
    for label, answer in zip(cases, _send_all(api, seeded, cases)):
        assert answer.status_code in (404, 422), (label, answer.text[:300])
    assert _counts(sql) == before
    assert sql("SELECT count(*) FROM lamplighter.queues WHERE paused") == [(0,)]
    assert sql("SELECT count(*) FROM dramatiq.queue WHERE state = 'dead'") == [(1,)]


def _body_fields(schema: dict, op: dict) -> list[str]:
    ref = json.dumps(op["requestBody"]["content"]["application/json"]["schema"])
    names = [name for name in schema["components"]["schemas"] if f'"#/components/schemas/{name}"' in ref]
    return sorted({field for name in names for field in schema["components"]["schemas"][name].get("properties", {})})


def test_every_body_field_with_wrong_types_and_hostile_values(api, sql, seeded):
    schema = api.call("GET", "/api/openapi.json").json()
    job = actors.maintenance.ping.send(note="to retry").message_id
    sql("UPDATE dramatiq.queue SET state = 'dead', finished_at = lamplighter.now() WHERE message_id = %s", (job,))
    cases = []
    for method, path, op in _operations(api):
        if not op.get("requestBody"):
            continue
        path = path.replace("{job_id}", job)
        base = {"actor": "maintenance.ping"} if path.endswith("/jobs") else {}
        for field in _body_fields(schema, op):
            for value in WRONG_TYPES + HOSTILE:
                body = {**base, field: value}
                if path.endswith("/batch"):
                    body = {"jobs": value} if field == "jobs" else {"jobs": [body]}
                cases.append((method, path, {"json": body}, f"{method} {path} {field}={str(value)[:40]!r}"))
    assert len(cases) > 300
    _send_all(api, seeded, cases)


DEEP = "[" * 10_000 + "]" * 10_000
BAD_BODIES = [
    ("not JSON", b"{'actor': 'maintenance.ping'}"), ("cut short", b'{"actor": "maintenance.ping", "kwargs": {'),
    ("empty", b""), ("a list", b"[]"), ("a string", b'"maintenance.ping"'), ("null", b"null"),
    ("not UTF-8", b'{"actor": "\xff\xfe"}'), ("a NUL in a string", b'{"actor": "maintenance.ping", "queue": "a\\u0000b"}'),
    ("a lone surrogate", b'{"actor": "maintenance.ping", "kwargs": {"note": "\\ud800"}}'),
    ("NaN", b'{"actor": "maintenance.ping", "kwargs": {"note": NaN}}'),
    ("1e400", b'{"actor": "maintenance.ping", "kwargs": {"note": 1e400}}'),
    ("a 5,000-digit number", b'{"actor": "maintenance.ping", "kwargs": {"note": ' + b"9" * 5_000 + b"}}"),
    ("10,000 levels", b'{"actor": "maintenance.ping", "kwargs": {"note": ' + DEEP.encode() + b"}}"),
    ("duplicate keys", b'{"actor": "maintenance.ping", "actor": "no.such.actor"}'),
    ("a NUL key", b'{"actor": "maintenance.ping", "kwargs": {"a\\u0000": 1}}'),
]


@pytest.mark.parametrize("content_type", ["application/json", "text/plain"])
def test_bodies_that_are_not_acceptable_json_are_refused_with_the_error_body(api, sql, seeded, content_type):
    job = actors.maintenance.ping.send(note="x").message_id
    sql("UPDATE dramatiq.queue SET state = 'dead', finished_at = lamplighter.now() WHERE message_id = %s", (job,))
    before = sql("SELECT count(*) FROM dramatiq.queue")
    cases = [(method, path.replace("{job_id}", job), {"data": raw, "headers": {"Content-Type": content_type}},
              f"{method} {path} {label}")
             for method, path, op in _operations(api) if op.get("requestBody") for label, raw in BAD_BODIES]
    for (_, _, _, label), answer in zip(cases, _send_all(api, seeded, cases)):
        accepted = any(label.endswith(ok) for ok in ("empty", "null", "1e400", "duplicate keys"))
        assert answer.status_code not in range(200, 300) or accepted, (label, answer.text[:300])
    # Only the bodies a JSON parser may take (1e400 is a float; the last duplicate key wins) enqueued.
    assert sql("SELECT count(*) FROM dramatiq.queue WHERE message::text LIKE '%%no.such.actor%%'") == [(0,)]
    assert sql("SELECT count(*) FROM dramatiq.queue")[0][0] >= before[0][0]


@pytest.fixture
def small_body_api(database_url):
    """The API with a 2,000-byte body limit (LAMPLIGHTER_WEB_MAX_BODY_BYTES), so that bodies over it are small."""
    from tests.conftest import use_database
    from tests.web_api import ApiServer

    use_database(database_url, LAMPLIGHTER_WEB_MAX_BODY_BYTES="2000")
    server = ApiServer().start()
    yield server
    server.stop()


def test_oversized_bodies_are_refused_before_parsing(small_body_api):
    api = small_body_api
    token = api.token(role="superadmin")
    too_big = b"{" * 2001  # not JSON either: a 422 would mean it was parsed
    for method, path, op in _operations(api):
        url = _url(path, _defaults(op))
        declared = api.call(method, url, token, data=too_big, headers={"Content-Type": "application/json"})
        _check(declared, f"{method} {path} with Content-Length")
        assert declared.status_code == 413 and declared.json()["error"] == "body_too_large", (path, declared.text)
        if not op.get("requestBody"):
            continue  # a route that takes no body never reads it
        # Chunked (no Content-Length): refused once the body passes the limit.
        chunked = api.call(method, url, token, data=iter([too_big[:1000], too_big[1000:]]),
                           headers={"Content-Type": "application/json"})
        _check(chunked, f"{method} {path} chunked")
        assert chunked.status_code == 413, (path, chunked.status_code, chunked.text[:300])
    # Within the limit, the same route parses the body (and refuses it as JSON).
    within = api.call("POST", "/api/jobs", token, data=b"{" * 1000, headers={"Content-Type": "application/json"})
    assert within.status_code == 422, within.text


@given(data=st.data())
@settings(max_examples=40, deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck))
def _generated(data, api, token, operations):
    method, path, op = data.draw(st.sampled_from(operations))
    params = [p for p in op.get("parameters", []) if p["name"].lower() != "authorization"]
    text = st.one_of(st.sampled_from(HOSTILE), st.text(max_size=300), st.integers().map(str),
                     st.floats().map(str), st.binary(max_size=50).map(lambda b: b.decode("latin-1")))
    if params:
        param = data.draw(st.sampled_from(params))
        value = data.draw(text)
        if param["in"] == "path" and value in ("", ".", ".."):
            value = "x" + value  # an empty path segment is another route
        answer = _send(api, token, method, path, op, param["name"], param["in"], value)
    else:
        answer = _send(api, token, method, path, op)
    _check(answer, f"{method} {path}")


def test_generated_values_in_every_parameter(api, seeded):
    _generated(api=api, token=seeded, operations=_operations(api))
