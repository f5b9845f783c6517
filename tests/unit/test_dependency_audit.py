"""bench/audit_dependencies.py without the network: the allow-list, and pip-audit's answers shaped
into a result. The samples in bench/audit/samples/ are pip-audit 2.10.1's own output, captured on
the project's machine: PyPI answering 404 for every package (pip-audit exits 0 and says "No known
vulnerabilities found"), OSV's host not resolving, and a local OSV stand-in on 127.0.0.1 answering
500, or two advisories."""
from __future__ import annotations

import datetime as dt
import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = ROOT / "bench" / "audit" / "samples"
_spec = importlib.util.spec_from_file_location("audit_dependencies", ROOT / "bench" / "audit_dependencies.py")
audit = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(audit)

TODAY = dt.date(2026, 12, 6)
ENTRY = '[[allow]]\nid = "GHSA-aaaa-bbbb-cccc"\npackage = "requests"\nreason = "not reachable from our code"\n'


def sample(name: str):
    text = (SAMPLES / name).read_text()
    return json.loads(text) if name.endswith(".json") else text


def test_the_allow_list_is_read_with_its_review_dates():
    entries = audit.read_allow_list(ENTRY + "review_by = 2027-03-01\n" + ENTRY.replace("aaaa", "dddd")
                                    + "review_by = 2026-12-01\n", TODAY)
    assert entries == [
        {"id": "GHSA-aaaa-bbbb-cccc", "package": "requests", "reason": "not reachable from our code",
         "review_by": "2027-03-01", "overdue": False},
        {"id": "GHSA-dddd-bbbb-cccc", "package": "requests", "reason": "not reachable from our code",
         "review_by": "2026-12-01", "overdue": True}]
    assert audit.read_allow_list((ROOT / "bench" / "audit" / "allow.toml").read_text(), TODAY) == []
    argv = audit.pip_audit_argv("pip-audit", Path("requirements.lock"), "osv", allowed=entries, output=Path("o"),
                                cache_dir=Path("c"), timeout=15, osv_url="http://127.0.0.1:1/v1/query")
    assert argv.count("--ignore-vuln") == 2 and "GHSA-dddd-bbbb-cccc" in argv and "--no-deps" in argv
    assert argv[argv.index("--osv-url") + 1] == "http://127.0.0.1:1/v1/query"


@pytest.mark.parametrize("text, message", [
    (ENTRY, "missing review_by"),
    (ENTRY + 'review_by = 2027-03-01\nseverity = "low"\n', "unknown severity"),
    (ENTRY + 'review_by = "next year"\n', "review_by must be a date"),
    (ENTRY.replace('"not reachable from our code"', '" "') + "review_by = 2027-03-01\n", "reason must be"),
    ((ENTRY + "review_by = 2027-03-01\n") * 2, "listed twice"),
    ('[allow]\nid = "x"\n', "array of tables"),
    ("[[allow]\n", "not valid TOML"),
    ('ignore = ["GHSA-1"]\n', "unknown top-level key"),
])
def test_a_bad_allow_list_is_refused_with_the_reason(text, message):
    with pytest.raises(audit.AllowListError, match=message):
        audit.read_allow_list(text, TODAY)


def test_a_bad_allow_list_exits_2_before_anything_runs(tmp_path, capsys):
    bad = tmp_path / "allow.toml"
    bad.write_text("[[allow]]\nid = 1\n")
    assert audit.main(["--allow", str(bad), "--out", str(tmp_path / "out.json")]) == 2
    assert "missing package, reason, review_by" in capsys.readouterr().err
    assert not (tmp_path / "out.json").exists()


def test_pypi_answering_404_for_everything_is_not_audited_though_pip_audit_says_clean():
    packages = audit.pinned_packages(ROOT / "requirements.lock")
    pypi = audit.judge("pypi", 0, sample("pypi_404_all_skipped.json"), "No known vulnerabilities found\n", packages)
    assert pypi["status"] == "not_checked" and pypi["packages_checked"] == 0
    assert "Dependency not found on PyPI" in pypi["error"]
    osv = audit.judge("osv", 1, None, sample("osv_unresolvable.stderr"), packages)
    assert osv["status"] == "error" and osv["error"].startswith("requests.exceptions.ConnectionError")
    assert "api.osv.dev" in osv["error"]
    report = audit.summarize_lock(ROOT / "requirements.lock", packages, [pypi, osv])
    assert report["status"] == "not_audited" and report["service"] is None and report["vulnerabilities"] == []
    assert [e["service"] for e in report["errors"]] == ["pypi", "osv"]
    assert audit.overall({"runtime": report}) == "not_audited"
    assert audit.EXIT["not_audited"] == 3


def test_a_service_answering_500_names_the_http_error():
    error = audit.last_error_line(sample("osv_local_500.stderr"))
    assert error.startswith("pip_audit._service.interface.ServiceError (from requests.exceptions.HTTPError: 500")
    assert "http://127.0.0.1:" in error


def test_found_vulnerabilities_are_listed_and_a_partial_check_says_so():
    found = sample("osv_local_found.json")
    checked = audit.judge("osv", 1, found, "", len(found["dependencies"]))
    assert checked["status"] == "checked"
    assert {(v["package"], v["id"], tuple(v["fix_versions"])) for v in checked["vulnerabilities"]} == {
        ("requests", "CVE-2099-8", ("99.0",)), ("urllib3", "CVE-2099-7", ("99.0",))}
    report = audit.summarize_lock(ROOT / "requirements.lock", 47, [checked])
    assert report["status"] == "checked" and audit.overall({"runtime": report}) == "vulnerable"

    clean = {"dependencies": [d for d in found["dependencies"] if not d["vulns"]]}
    assert audit.overall({"runtime": audit.summarize_lock(
        ROOT / "requirements.lock", 45, [audit.judge("osv", 0, clean, "", 45)])}) == "clean"
    clean["dependencies"][0] = {"name": clean["dependencies"][0]["name"], "skip_reason": "not on the index"}
    partial = audit.judge("osv", 0, clean, "", 45)
    assert partial["status"] == "partial" and partial["packages_skipped"] == 1
    assert audit.overall({"runtime": audit.summarize_lock(ROOT / "requirements.lock", 45, [partial])}) == "partial"
