"""deploy/app.json describes every setting Lamplighter reads, and the formation names every
Procfile process that runs (release is the release phase, not a dyno)."""
import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
APP = json.loads((ROOT / "deploy" / "app.json").read_text())


def settings_read() -> set[str]:
    found = set()
    for module in (ROOT / "storage").glob("settings*.py"):
        found |= set(re.findall(r'"((?:LAMPLIGHTER|ZITADEL)_[A-Z0-9_]+)"', module.read_text()))
    return found


def test_every_setting_is_described():
    missing = sorted(settings_read() - set(APP["env"]))
    assert not missing, f"deploy/app.json does not describe: {', '.join(missing)}"
    undescribed = sorted(name for name, entry in APP["env"].items() if not entry.get("description"))
    assert not undescribed, f"no description: {', '.join(undescribed)}"
    unknown = sorted(set(APP["env"]) - settings_read())
    assert not unknown, f"deploy/app.json describes settings nothing reads: {', '.join(unknown)}"


def test_the_formation_is_the_procfiles_processes():
    procfile = {line.split(":", 1)[0] for line in (ROOT / "Procfile").read_text().splitlines() if ":" in line}
    assert set(APP["formation"]) == procfile - {"release"}
    assert {"plan": "heroku-postgresql"} in APP["addons"]
    assert set(APP.get("scripts", {})) <= {"postdeploy", "pr-predestroy"}  # release lives in the Procfile
