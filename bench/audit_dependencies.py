"""Dependency audit (issue #26): pip-audit over the lock files, with an allow-list. Run on demand
and by `bench/run.py` with every system and workload (`--dependency-audit`); not a CI gate.

    python3 bench/audit_dependencies.py [--service pypi,osv] [--osv-url URL | --advisory-db DIR]
        [--timeout 15] [--allow bench/audit/allow.toml] [--out FILE.json]

pip-audit (pinned in bench/audit/requirements.txt) runs from its own venv, bench/.venvs/pip-audit,
made on first use. It audits requirements.lock (what runs: "runtime") and requirements-test.lock
("test") with --no-deps (both files pin every package, so nothing is installed), asking the
vulnerability services in --service order until one answers for every package. Ids in the
allow-list (bench/audit/allow.toml: id, package, reason, review_by) are passed as --ignore-vuln and
listed in the result as allowed.

A package pip-audit could not look up is not a clean package: pip-audit itself exits 0 and prints
"No known vulnerabilities found" when PyPI answers 404 for every package (it marks each one
skipped), so the skipped ones are counted here, and a lock file with every package skipped, or
whose every service failed, counts as not audited.

Where neither service can be reached, ``--advisory-db DIR`` audits against an OSV advisory database
on disk (e.g. a copy of https://github.com/pypa/advisory-database's vulns/ directory): it starts
bench/audit/osv_local.py, a local stand-in for OSV's query API, and asks it through pip-audit's OSV
service. The result's ``advisory_data`` says how many records the database holds and the newest
``modified`` date in it; advisories published after that date are not known to it, so data
older than STALE_AFTER_DAYS is marked ``stale`` (the audit ran, against old data).

Exit codes: 0 every package checked, nothing found outside the allow-list; 1 vulnerabilities found;
2 bad arguments or allow-list; 3 not audited (no service answered: the result names each service
and its error); 4 audited in part (some packages skipped). Writes
bench/results/<date>_dependency_audit.json (or --out) in every case.
"""
from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python < 3.11
    tomllib = None

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
REQUIREMENTS = HERE / "audit" / "requirements.txt"
VENV = HERE / ".venvs" / "pip-audit"
ALLOW = HERE / "audit" / "allow.toml"
LOCKS = {"runtime": ROOT / "requirements.lock", "test": ROOT / "requirements-test.lock"}
SERVICES = ("pypi", "osv")
LOCAL_OSV = HERE / "audit" / "osv_local.py"
STALE_AFTER_DAYS = 30
EXIT = {"clean": 0, "vulnerable": 1, "usage": 2, "not_audited": 3, "partial": 4}
ALLOW_KEYS = {"id", "package", "reason", "review_by"}
EXCEPTION_LINE = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Timeout)\b(:|$)")


class AllowListError(ValueError):
    pass


def read_allow_list(text: str, today: dt.date) -> list[dict]:
    """The allow-list's entries, each {id, package, reason, review_by (ISO date), overdue}."""
    if tomllib is None:
        raise AllowListError("reading the allow-list needs Python 3.11 or later (tomllib)")
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise AllowListError(f"not valid TOML: {e}") from None
    unknown = set(data) - {"allow"}
    if unknown:
        raise AllowListError(f"unknown top-level key(s): {', '.join(sorted(unknown))} (only [[allow]] tables)")
    entries = data.get("allow", [])
    if not isinstance(entries, list):
        raise AllowListError("`allow` must be an array of tables ([[allow]])")
    out, seen = [], set()
    for n, entry in enumerate(entries, 1):
        where = f"entry {n}"
        if not isinstance(entry, dict):
            raise AllowListError(f"{where}: not a table")
        missing = ALLOW_KEYS - set(entry)
        extra = set(entry) - ALLOW_KEYS
        if missing or extra:
            raise AllowListError(f"{where}: " + "; ".join(
                part for part in (f"missing {', '.join(sorted(missing))}" if missing else "",
                                  f"unknown {', '.join(sorted(extra))}" if extra else "") if part))
        for key in ("id", "package", "reason"):
            if not isinstance(entry[key], str) or not entry[key].strip():
                raise AllowListError(f"{where}: {key} must be a non-empty string")
        review = entry["review_by"]
        if isinstance(review, dt.datetime) or not isinstance(review, dt.date):
            raise AllowListError(f"{where}: review_by must be a date (review_by = 2027-03-01)")
        if entry["id"] in seen:
            raise AllowListError(f"{where}: {entry['id']} is listed twice")
        seen.add(entry["id"])
        out.append({"id": entry["id"].strip(), "package": entry["package"].strip(), "reason": entry["reason"].strip(),
                    "review_by": review.isoformat(), "overdue": review < today})
    return out


def pip_audit_argv(pip_audit: str, lock: Path, service: str, *, allowed: list[dict], output: Path,
                   cache_dir: Path, timeout: float, osv_url: str | None) -> list[str]:
    argv = [pip_audit, "-r", str(lock), "--no-deps", "--disable-pip", "--format", "json", "--output", str(output),
            "--progress-spinner", "off", "--vulnerability-service", service, "--timeout", str(int(timeout)),
            "--cache-dir", str(cache_dir), "--aliases", "--desc"]
    if osv_url and service == "osv":
        argv += ["--osv-url", osv_url]
    for entry in allowed:
        argv += ["--ignore-vuln", entry["id"]]
    return argv


def last_error_line(stderr: str) -> str:
    """pip-audit's reason for failing, from the end of its traceback: the last exception line,
    and when that one says nothing (pip-audit's bare ServiceError), the last one that does (e.g.
    requests' "500 Server Error ... for url: ..." or the ConnectionError naming the host)."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip() and not line.startswith("WARNING:")]
    raised = [line for line in lines if EXCEPTION_LINE.match(line)]
    if not raised:
        return lines[-1][:1000] if lines else "(no message)"
    last = raised[-1]
    if ":" not in last:
        told = [line for line in raised if ":" in line]
        if told:
            last = f"{last} (from {told[-1]})"
    return last[:1000]


def judge(service: str, returncode: int, report: dict | None, stderr: str, packages: int) -> dict:
    """One pip-audit run, shaped: status `checked` (every package looked up), `partial` (some
    skipped), `not_checked` (every package skipped: the service did not answer for any), or
    `error` (pip-audit failed, no report)."""
    attempt = {"service": service, "returncode": returncode}
    if report is None:
        return {**attempt, "status": "error", "error": last_error_line(stderr)}
    deps = report.get("dependencies", [])
    skipped = [{"package": d["name"], "reason": d["skip_reason"]} for d in deps if "skip_reason" in d]
    checked = [d for d in deps if "skip_reason" not in d]
    vulns = [{"package": d["name"], "version": d.get("version"), "id": v["id"], "aliases": v.get("aliases", []),
              "fix_versions": v.get("fix_versions", []), "description": (v.get("description") or "")[:500]}
             for d in checked for v in d.get("vulns", [])]
    status = "checked" if not skipped else ("not_checked" if not checked else "partial")
    attempt.update(status=status, packages_in_report=len(deps), packages_in_lock=packages,
                   packages_checked=len(checked), packages_skipped=len(skipped), vulnerabilities=vulns,
                   skipped=skipped[:20] if status != "not_checked" else skipped[:3])
    if status == "not_checked":
        attempt["error"] = f"every package skipped, e.g. {skipped[0]['reason']}" if skipped else "empty report"
    return attempt


def pinned_packages(lock: Path) -> int:
    return sum(1 for line in lock.read_text().splitlines() if "==" in line and not line.lstrip().startswith("#"))


def audit_lock(pip_audit: str, lock: Path, services: list[str], *, allowed: list[dict], timeout: float,
               osv_url: str | None, work: Path) -> dict:
    """Ask each service in turn until one checks every package (or some); keep every attempt."""
    attempts = []
    packages = pinned_packages(lock)
    for service in services:
        output = work / f"{lock.stem}-{service}.json"
        output.unlink(missing_ok=True)
        argv = pip_audit_argv(pip_audit, lock, service, allowed=allowed, output=output,
                              cache_dir=work / "cache", timeout=timeout, osv_url=osv_url)
        done = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT,
                              timeout=max(120.0, timeout * (packages + 2)))
        try:
            report = json.loads(output.read_text()) if output.exists() else None
        except json.JSONDecodeError:
            report = None
        attempts.append(judge(service, done.returncode, report, done.stderr, packages))
        if attempts[-1]["status"] == "checked":
            break
    return summarize_lock(lock, packages, attempts)


def summarize_lock(lock: Path, packages: int, attempts: list[dict]) -> dict:
    """The best attempt decides: a full check, else a partial one, else not audited."""
    best = next((a for a in attempts if a["status"] == "checked"), None) or \
        next((a for a in attempts if a["status"] == "partial"), None)
    status = best["status"] if best else "not_audited"
    return {"lock": lock.name, "packages": packages, "status": status,
            "service": best["service"] if best else None,
            "vulnerabilities": best["vulnerabilities"] if best else [],
            "skipped": best["skipped"] if best else [],
            "errors": [{"service": a["service"], "error": a["error"]} for a in attempts if "error" in a],
            "attempts": attempts}


def overall(reports: dict[str, dict]) -> str:
    if any(r["vulnerabilities"] for r in reports.values()):
        return "vulnerable"
    if any(r["status"] == "not_audited" for r in reports.values()):
        return "not_audited"
    if any(r["status"] == "partial" for r in reports.values()):
        return "partial"
    return "clean"


def ensure_venv() -> str:
    """bench/.venvs/pip-audit from bench/audit/requirements.txt, rebuilt when the pins change."""
    stamp = hashlib.sha256((REQUIREMENTS.read_text() + sys.executable).encode()).hexdigest()
    stamp_file = VENV / ".bench-stamp"
    pip_audit = VENV / "bin" / "pip-audit"
    if not (stamp_file.exists() and stamp_file.read_text() == stamp and pip_audit.exists()):
        if not (VENV / "bin" / "python").exists():
            subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
        subprocess.run([str(VENV / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check",
                        "-r", str(REQUIREMENTS)], check=True)
        stamp_file.write_text(stamp)
    return str(pip_audit)


class LocalDatabaseError(RuntimeError):
    pass


def start_local_osv(directory: Path) -> tuple[subprocess.Popen, dict]:
    """bench/audit/osv_local.py over ``directory``, in pip-audit's venv (it has packaging and
    PyYAML); returns the process and its first line: URL, records, newest modified date."""
    proc = subprocess.Popen([str(VENV / "bin" / "python"), str(LOCAL_OSV), str(directory)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    if not line:
        proc.wait(timeout=10)
        raise LocalDatabaseError(last_error_line(proc.stderr.read()) or f"exited with {proc.returncode}")
    data = json.loads(line)
    stale = data["age_days"] is None or data["age_days"] > STALE_AFTER_DAYS
    return proc, {"source": "local", **data, "stale": stale}


def tool_version(pip_audit: str) -> str:
    done = subprocess.run([pip_audit, "--version"], capture_output=True, text=True)
    return done.stdout.strip() or done.stderr.strip()


def git_commit() -> str:
    return subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--service", default=",".join(SERVICES),
                        help="vulnerability services to try, in order (pypi, osv)")
    parser.add_argument("--osv-url", help="OSV query endpoint (pip-audit's default: https://api.osv.dev/v1/query)")
    parser.add_argument("--advisory-db", type=Path, metavar="DIR",
                        help="audit against OSV records on disk (a local stand-in for api.osv.dev)")
    parser.add_argument("--timeout", type=float, default=15.0, help="seconds per request to a service")
    parser.add_argument("--allow", type=Path, default=ALLOW, help="allow-list (TOML)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    services = [s.strip() for s in args.service.split(",") if s.strip()]
    bad = [s for s in services if s not in SERVICES]
    if bad or not services:
        parser.error(f"--service: unknown {', '.join(bad) or '(none)'}; known: {', '.join(SERVICES)}")
    if args.advisory_db is not None:
        if args.osv_url:
            parser.error("--advisory-db and --osv-url: give one (the local database answers as the OSV service)")
        if not args.advisory_db.is_dir():
            parser.error(f"--advisory-db: {args.advisory_db} is not a directory")
        services = ["osv"]
    today = dt.date.today()
    try:
        allowed = read_allow_list(args.allow.read_text(), today)
    except (OSError, AllowListError) as e:
        print(f"audit_dependencies: {args.allow}: {e}", file=sys.stderr)
        return EXIT["usage"]
    out = args.out or HERE / "results" / f"{today.isoformat()}_dependency_audit.json"
    pip_audit = ensure_venv()
    advisory_data, local = None, None
    osv_url = args.osv_url
    try:
        if args.advisory_db is not None:
            local, advisory_data = start_local_osv(args.advisory_db)
            osv_url = advisory_data.pop("url")
        with tempfile.TemporaryDirectory(prefix="lamplighter-audit-") as work:
            reports = {name: audit_lock(pip_audit, lock, services, allowed=allowed, timeout=args.timeout,
                                        osv_url=osv_url, work=Path(work)) for name, lock in LOCKS.items()}
    except LocalDatabaseError as e:
        print(f"audit_dependencies: --advisory-db: {e}", file=sys.stderr)
        return EXIT["usage"]
    finally:
        if local is not None:
            local.terminate()
            local.wait(timeout=10)
    status = overall(reports)
    result = {"bench": "dependency_audit", "when": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
              "git_commit": git_commit(), "tool": tool_version(pip_audit), "services_tried": services,
              "status": status, "exit_code": EXIT[status],
              "meaning": {"clean": "every package checked, nothing outside the allow-list",
                          "vulnerable": "vulnerabilities found (not in the allow-list)",
                          "not_audited": "a lock file could not be checked: no service answered (see errors)",
                          "partial": "some packages were skipped (see skipped)"}[status],
              "allowed": allowed, "allowed_overdue": [a["id"] for a in allowed if a["overdue"]],
              "advisory_data": advisory_data or {"source": "online", "services": services},
              "reports": reports}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    for name, report in reports.items():
        line = f"[audit] {name} ({report['lock']}, {report['packages']} packages): {report['status']}"
        if report["vulnerabilities"]:
            line += ", " + ", ".join(f"{v['package']} {v['version']} {v['id']}" for v in report["vulnerabilities"])
        for error in report["errors"]:
            line += f"\n[audit]   {error['service']}: {error['error']}"
        print(line)
    if advisory_data:
        print(f"[audit] advisory data: {advisory_data['records']} OSV records in {advisory_data['directory']}, "
              f"newest modified {advisory_data['newest_modified']} ({advisory_data['age_days']} days old"
              + ("; STALE: advisories published since are not checked)" if advisory_data["stale"] else ")"))
    print(f"[audit] {status} (exit {EXIT[status]}) -> {out}")
    return EXIT[status]


if __name__ == "__main__":
    sys.exit(main())
