"""A local stand-in for OSV's query API (https://api.osv.dev/v1/query), answering from an
advisory database on disk: for machines that cannot reach api.osv.dev or PyPI's advisory lookup.

    python bench/audit/osv_local.py DIR [--port 0]

DIR holds OSV records (YAML or JSON, any depth), e.g. a copy of PyPA's advisory database
(https://github.com/pypa/advisory-database, its vulns/ directory). Prints one JSON line with the
URL to pass to pip-audit (`--vulnerability-service osv --osv-url URL`) and what the data is:
how many records, and the newest `modified` date (how old the data is: advisories published
after it are not known here). bench/audit_dependencies.py --advisory-db DIR starts it.

Matching follows the OSV schema for PyPI: a version is affected when it is listed in
`versions`, or falls in an ECOSYSTEM range (from each `introduced` up to the next `fixed`,
exclusive, or `last_affected`, inclusive), compared as PEP 440 versions; names compare in their
PEP 503 form. Withdrawn records are answered like api.osv.dev does (pip-audit skips them).
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version


def load(directory: Path) -> list[dict]:
    """Every OSV record under ``directory`` (.yaml, .yml, .json)."""
    import yaml

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when PyYAML has it: ~10x faster
    records = []
    for path in sorted(directory.rglob("*")):
        if path.suffix in (".yaml", ".yml"):
            record = yaml.load(path.read_text(), Loader=loader)
        elif path.suffix == ".json":
            record = json.loads(path.read_text())
        else:
            continue
        if isinstance(record, dict) and record.get("id") and record.get("affected"):
            records.append(record)
    return records


def _version(text) -> Version | None:
    try:
        return Version(str(text))
    except InvalidVersion:
        return None


def in_range(events: list[dict], version: Version) -> bool:
    """OSV ECOSYSTEM range events (sorted by version, "0" first): affected from an introduced
    version up to the next fixed (exclusive) or last_affected (inclusive)."""
    # Each event parsed once ("0" is a valid version: the lowest); an unparsable one is skipped.
    parsed = [(_version(value), kind) for event in events for kind, value in event.items()]
    bounds = sorted((pair for pair in parsed if pair[0] is not None), key=lambda pair: pair[0])
    affected = False
    for bound, kind in bounds:
        if kind == "introduced" and version >= bound:
            affected = True
        elif kind == "fixed" and version >= bound:
            affected = False
        elif kind == "last_affected" and version > bound:
            affected = False
    return affected


def affects(record: dict, name: str, version: str) -> bool:
    wanted = canonicalize_name(name)
    parsed = _version(version)
    for affected in record.get("affected", []):
        package = affected.get("package") or {}
        if package.get("ecosystem") != "PyPI" or canonicalize_name(package.get("name", "")) != wanted:
            continue
        if version in (affected.get("versions") or []):
            return True
        if parsed is None:
            continue
        for spec in affected.get("ranges") or []:
            if spec.get("type") == "ECOSYSTEM" and in_range(spec.get("events") or [], parsed):
                return True
    return False


class Index:
    def __init__(self, records: list[dict]):
        self.records = records
        self.by_name: dict[str, list[dict]] = {}
        for record in records:
            for affected in record.get("affected", []):
                package = affected.get("package") or {}
                if package.get("ecosystem") == "PyPI" and package.get("name"):
                    names = self.by_name.setdefault(canonicalize_name(package["name"]), [])
                    if not names or names[-1] is not record:
                        names.append(record)

    def query(self, name: str, version: str) -> list[dict]:
        return [r for r in self.by_name.get(canonicalize_name(name), []) if affects(r, name, version)]

    def newest_modified(self) -> str | None:
        dates = [_iso(r["modified"]) for r in self.records if r.get("modified")]
        return max(dates) if dates else None


def _iso(value) -> str:
    # YAML gives dates as datetime objects; OSV's API gives RFC 3339 strings.
    if isinstance(value, (dt.datetime, dt.date)):
        return value.isoformat().replace("+00:00", "Z")
    return str(value)


def _jsonable(record: dict) -> dict:
    return json.loads(json.dumps(record, default=_iso))


def serve(index: Index, port: int = 0) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            try:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
                name, version = body["package"]["name"], body["version"]
                if body["package"].get("ecosystem", "PyPI") != "PyPI":
                    raise ValueError("only the PyPI ecosystem is served")
            except (ValueError, KeyError, TypeError) as exc:
                return self._answer(400, {"code": 3, "message": f"bad query: {exc}"})
            found = index.query(name, version)
            # api.osv.dev answers {} when nothing matches.
            self._answer(200, {"vulns": [_jsonable(r) for r in found]} if found else {})

        def _answer(self, status: int, payload: dict):
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):  # quiet: pip-audit asks once per package
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def describe(index: Index, directory: Path) -> dict:
    newest = index.newest_modified()
    age = None
    if newest:
        as_of = dt.datetime.fromisoformat(newest.replace("Z", "+00:00"))
        if as_of.tzinfo is None:
            as_of = as_of.replace(tzinfo=dt.timezone.utc)
        age = (dt.datetime.now(dt.timezone.utc) - as_of).days
    return {"directory": str(directory), "records": len(index.records), "newest_modified": newest,
            "age_days": age}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("directory", type=Path)
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)
    if not args.directory.is_dir():
        parser.error(f"{args.directory}: not a directory")
    index = Index(load(args.directory))
    if not index.records:
        parser.error(f"{args.directory}: no OSV records (.yaml, .yml or .json with an id and affected)")
    server = serve(index, args.port)
    print(json.dumps({"url": f"http://127.0.0.1:{server.server_port}/v1/query", **describe(index, args.directory)}),
          flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
