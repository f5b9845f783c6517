"""`lamplighter federation verify` as an operator runs it, against the router served by a real
web process (uvicorn, its own process): it passes when what is served is what the database says
is published, and fails with the reason when a key is missing."""
import subprocess
import sys

import pytest
import requests

import actors
from domain import federation_keys
from tests.conftest import ROOT, lamplighter_env, wait_for
from tests.federation_support import federation_database, FEDERATION_ENV, free_port

pytestmark = pytest.mark.acceptance


def answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=1).status_code == 200
    except requests.ConnectionError:
        return False


@pytest.fixture
def web_process(database_url):
    env = lamplighter_env(DATABASE_URL=database_url, **FEDERATION_ENV)
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "uvicorn", "tests.federation_app:app", "--host", "127.0.0.1",
                                "--port", str(port), "--log-level", "warning"], cwd=ROOT, env=env)
    try:
        yield f"http://127.0.0.1:{port}", env
    finally:
        process.terminate()
        process.wait(10)


def verify(base: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "console", "federation", "verify", "--url", base], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)


def test_verify_passes_against_the_web_process_and_fails_when_a_key_is_missing(database_url, web_process):
    base, env = web_process
    settings = federation_database(database_url)
    actors.federation.generate_files.fn()
    wait_for(lambda: answers(base + "/.well-known/openid-federation"), message="web process serving")

    passed = verify(base, env)
    assert passed.returncode == 0, passed.stderr
    lines = passed.stdout.splitlines()
    assert [line.split(":")[0] for line in lines] == ["ok  entity configuration", "ok  jwks.json", "ok  signed JWKS"]

    # A key the database publishes but the served documents lack (not yet regenerated).
    kid = federation_keys.create_key("protocol", settings.federation, state="next")
    failed = verify(base, env)
    assert failed.returncode == 1
    assert f"FAILED: jwks.json: key(s) {kid} missing" in failed.stderr
