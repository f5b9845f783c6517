"""Running `lamplighter` in-process in a test: stdin given, output captured, and logging pointed
back at the process's real stderr afterwards (the CLI configures logging onto the captured stream,
which pytest closes when the test ends: a later test's log line would fail on it)."""
from __future__ import annotations

import io
import sys

from console import cli
from storage import logs


def run_cli(monkeypatch, capsys, *argv: str, stdin: str = "") -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of `lamplighter ARGV...`."""
    monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    try:
        code = cli.main(list(argv))
    finally:
        logs.configure(log_format="json", level="INFO", stream=sys.__stderr__)
    out, err = capsys.readouterr()
    return code, out, err
