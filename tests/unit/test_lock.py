"""The lock files pin every dependency pyproject.toml declares, at a version its range admits:
`.ci/run` and the Dockerfile install from them, so a dependency added to pyproject.toml without
re-locking would be missing there (re-lock: README "Deploy")."""
import re
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]


def pins(lock: Path) -> dict[str, str]:
    found = {}
    for line in lock.read_text().splitlines():
        match = re.match(r"^([A-Za-z0-9_.\-]+)==([^\s;]+)", line)
        if match:
            found[canonicalize_name(match.group(1))] = match.group(2)
    return found


def declared(extra: str | None) -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    names = list(project["dependencies"])
    if extra:
        names += project["optional-dependencies"][extra]
    return [Requirement(name) for name in names]


@pytest.mark.parametrize("lock, extra", [("requirements.lock", None), ("requirements-test.lock", "test")])
def test_every_declared_dependency_is_pinned_within_its_range(lock, extra):
    pinned = pins(ROOT / lock)
    assert pinned, f"{lock} pins nothing"
    for requirement in declared(extra):
        name = canonicalize_name(requirement.name)
        assert name in pinned, f"{requirement.name} is declared in pyproject.toml but not pinned in {lock}"
        assert requirement.specifier.contains(pinned[name], prereleases=True), \
            f"{lock} pins {name}=={pinned[name]}, outside pyproject's {requirement.specifier}"
