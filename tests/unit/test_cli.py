"""Bad arguments get one line and exit code 2, even with no database reachable."""
import subprocess
import sys

import pytest

from tests.conftest import lamplighter_env

UNREACHABLE = lamplighter_env(DATABASE_URL="postgresql://nobody:secretpw@127.0.0.1:1/none")


def _run(*args, env=UNREACHABLE):
    return subprocess.run([sys.executable, "-m", "console", *args], env=env, capture_output=True, text=True,
                          timeout=60)


@pytest.mark.parametrize("args", [
    ["frobnicate"],
    ["enqueue"],
    ["enqueue", "maintenance.ping", "--args", "{not json"],
    ["enqueue", "maintenance.ping", "--args", "5"],
    ["enqueue", "maintenance.ping", "--delay", "-3"],
    ["enqueue", "maintenance.ping", "--queue", "bad queue"],
    ["enqueue", "no.such.actor"],
    ["enqueue", "maintenance.ping", "--args", '{"unexpected": 1}'],
    ["jobs", "--state", "sleeping"],
    ["jobs", "--limit", "0"],
    ["job", "not-a-uuid"],
    ["retry", "123"],
    ["queue", "explode", "default"],
])
def test_bad_arguments_one_line_exit_2(args):
    result = _run(*args)
    assert result.returncode == 2, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert result.stderr.startswith("lamplighter")
    assert "Traceback" not in result.stderr


def test_bad_setting_names_the_variable_exit_2():
    result = _run("stats", env={**UNREACHABLE, "LAMPLIGHTER_WORKER_THREADS": "lots"})
    assert result.returncode == 2
    assert result.stderr.strip() == ("lamplighter: configuration error: LAMPLIGHTER_WORKER_THREADS='lots': "
                                     "expected an integer")


def test_unreachable_database_is_one_line_exit_1_without_the_password():
    result = _run("stats")
    assert result.returncode == 1
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "secretpw" not in result.stderr
    assert "cannot connect" in result.stderr or "database error" in result.stderr


def test_help_lists_the_verbs():
    result = _run("--help")
    assert result.returncode == 0
    for verb in ("up", "migrate", "worker", "scheduler", "web", "enqueue", "jobs", "job", "retry", "cancel",
                 "stats", "workers", "queue"):
        assert f"\n    {verb}" in result.stdout
