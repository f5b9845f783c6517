"""`lamplighter up` resolves the log format once and hands it to its children; its first line
shows the few settings that matter (tests/unit/test_config.py: `lamplighter config`, all of them)."""
import io

import pytest

from console import processes
from console.verbs import config
from storage.settings import load

URL = "postgresql://app:hunter2@db.example:5432/app?sslmode=require&password=qs-secret"


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize("configured, stream, children_get", [
    ("auto", Terminal(), "console"),
    ("auto", io.StringIO(), "json"),  # up's own output is a pipe or a file: JSON, for it and its children
    ("json", Terminal(), "json"),  # an explicit choice is kept
    ("console", io.StringIO(), "console"),
])
def test_children_inherit_the_log_format_up_resolved(configured, stream, children_get):
    settings = load({"LAMPLIGHTER_LOG_FORMAT": configured})

    env = processes.child_environment(settings, "postgresql://u@h/d", stream=stream)

    assert env["LAMPLIGHTER_LOG_FORMAT"] == children_get
    assert (env["DATABASE_URL"], env["PYTHONUNBUFFERED"]) == ("postgresql://u@h/d", "1")
    # What a child makes of it: the same format, whatever its own output is.
    assert load(env).log_format == children_get


def test_ups_first_line_shows_the_few_settings_that_matter_without_a_password():
    summary = config.startup_summary(load({"DATABASE_URL": URL, "LAMPLIGHTER_WORKER_PROCESSES": "3",
                                           "LAMPLIGHTER_WORKER_THREADS": "4", "PORT": "5001",
                                           "ZITADEL_PAT": "pat-secret"}))

    assert summary["database"] == "postgresql://app:***@db.example:5432/app?sslmode=require&password=***"
    assert summary["workers"] == "3 processes x 4 threads"
    assert summary["port"] == 5001
    assert set(summary) == {"database", "data_dir", "workers", "port", "all_settings"}
    assert "hunter2" not in repr(summary) and "qs-secret" not in repr(summary)
    assert config.startup_summary(load({}))["database"] == "(embedded)"
