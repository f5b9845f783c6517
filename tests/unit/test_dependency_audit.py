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
import requests

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


_osv_spec = importlib.util.spec_from_file_location("osv_local", ROOT / "bench" / "audit" / "osv_local.py")
osv_local = importlib.util.module_from_spec(_osv_spec)
_osv_spec.loader.exec_module(osv_local)

# Two records in the PyPA advisory database's own shape (YAML, dates as timestamps): the first is
# PYSEC-2018-28 as published (requests before 2.20.0), the second made up to cover
# last_affected, a listed version, a second range and a withdrawn record.
PYSEC_2018_28 = """\
id: PYSEC-2018-28
details: The Requests package before 2.20.0 for Python sends an HTTP Authorization header to an
  http URI upon receiving a same-hostname https-to-http redirect.
aliases:
- CVE-2018-18074
- GHSA-x84v-xcm2-53pg
modified: 2021-06-10T06:51:42.128079Z
published: 2018-10-09T22:29:00Z
affected:
- package:
    name: requests
    ecosystem: PyPI
  ranges:
  - type: ECOSYSTEM
    events:
    - introduced: "0"
    - fixed: 2.20.0
"""
MADE_UP = """\
id: TEST-2024-1
modified: 2024-10-10T17:22:00Z
affected:
- package:
    name: Zope.Interface
    ecosystem: PyPI
  ranges:
  - type: ECOSYSTEM
    events:
    - introduced: "1.0"
    - last_affected: "1.4"
    - introduced: "2.0"
    - fixed: "2.1"
  versions:
  - 0.9.9
"""
WITHDRAWN = '{"id": "TEST-2024-2", "withdrawn": "2024-01-01T00:00:00Z", "modified": "2024-01-01T00:00:00Z", ' \
            '"affected": [{"package": {"name": "requests", "ecosystem": "PyPI"}, "versions": ["2.31.0"]}]}'


@pytest.fixture
def advisories(tmp_path):
    (tmp_path / "requests").mkdir()
    (tmp_path / "requests" / "PYSEC-2018-28.yaml").write_text(PYSEC_2018_28)
    (tmp_path / "zope-interface.yml").write_text(MADE_UP)
    (tmp_path / "withdrawn.json").write_text(WITHDRAWN)
    (tmp_path / "README.md").write_text("not a record")
    return osv_local.Index(osv_local.load(tmp_path))


@pytest.mark.parametrize(("name", "version", "ids"), [
    ("requests", "2.19.0", {"PYSEC-2018-28"}),
    ("Requests", "2.20.0", set()),                        # fixed is exclusive
    ("requests", "2.20.0rc1", {"PYSEC-2018-28"}),         # PEP 440 order: a pre-release comes before
    ("requests", "2.31.0", {"TEST-2024-2"}),              # listed (withdrawn: answered, pip-audit skips it)
    ("zope.interface", "1.4", {"TEST-2024-1"}),           # last_affected is inclusive
    ("zope-interface", "1.4.1", set()),
    ("ZOPE_INTERFACE", "2.0.5", {"TEST-2024-1"}),         # the second range; names in PEP 503 form
    ("zope.interface", "2.1", set()),
    ("zope.interface", "0.9.9", {"TEST-2024-1"}),         # listed, outside every range
    ("zope.interface", "0.9", set()),
    ("urllib3", "1.0", set()),
])
def test_the_local_osv_database_matches_versions_as_the_osv_schema_says(advisories, name, version, ids):
    assert {record["id"] for record in advisories.query(name, version)} == ids


def test_the_local_osv_stand_in_answers_like_api_osv_dev_over_http(advisories):
    server = osv_local.serve(advisories)
    try:
        url = f"http://127.0.0.1:{server.server_port}/v1/query"
        found = requests.post(url, json={"package": {"name": "requests", "ecosystem": "PyPI"}, "version": "2.19.0"},
                              timeout=5)
        assert found.status_code == 200
        (vuln,) = found.json()["vulns"]
        assert vuln["id"] == "PYSEC-2018-28" and "CVE-2018-18074" in vuln["aliases"]
        assert vuln["modified"] == "2021-06-10T06:51:42.128079Z"  # RFC 3339 text, as pip-audit parses it
        nothing = requests.post(url, json={"package": {"name": "requests", "ecosystem": "PyPI"}, "version": "2.20.0"},
                                timeout=5)
        assert nothing.status_code == 200 and nothing.json() == {}
        bad = requests.post(url, data=b"{not json", timeout=5)
        assert bad.status_code == 400 and bad.json()["message"].startswith("bad query")
    finally:
        server.shutdown()
    described = osv_local.describe(advisories, Path("db"))
    assert described["records"] == 3 and described["newest_modified"] == "2024-10-10T17:22:00Z"
    assert described["age_days"] >= 0


def test_an_empty_advisory_directory_is_refused_with_exit_2(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        osv_local.main([str(tmp_path)])
    assert exit_.value.code == 2 and "no OSV records" in capsys.readouterr().err


def test_advisory_db_and_osv_url_together_are_refused_before_anything_runs(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        audit.main(["--advisory-db", str(tmp_path), "--osv-url", "http://127.0.0.1:1/v1/query"])
    assert exit_.value.code == 2 and "give one" in capsys.readouterr().err
