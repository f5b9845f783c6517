"""README's examples name only actors that exist: a reader who copies one into `lamplighter
enqueue`, `lamplighter.enqueue()` or an import must not get "unknown actor"."""
import importlib
import re
from pathlib import Path

import dramatiq

README = Path(__file__).resolve().parents[2] / "README.md"
CODE_BLOCK = re.compile(r"^```[^\n]*\n(.*?)^```", re.MULTILINE | re.DOTALL)
# Where a code block names an actor: a declaration, the SQL function, the CLI.
ACTOR_NAME = [
    re.compile(r"""actor_name\s*=\s*["']([^"']+)["']"""),
    re.compile(r"""lamplighter\.enqueue\(\s*'([^']+)'"""),
    re.compile(r"""\blamplighter enqueue\s+([\w.:-]+)"""),
    re.compile(r"""--actor\s+([\w.:-]+)"""),
]
IMPORT = re.compile(r"^\s*from actors\.(\w+) import ([\w, ]+)$", re.MULTILINE)
PROSE_NAME = re.compile(r"`([a-z_]+)\.([a-z_]+)`")


def declared_actors() -> set[str]:
    import actors

    return {name for name in actors.broker.get_declared_actors() if not name.startswith("tests.")}


def code_blocks() -> list[str]:
    return CODE_BLOCK.findall(README.read_text())


def test_code_blocks_name_only_declared_actors():
    named = {match for block in code_blocks() for pattern in ACTOR_NAME for match in pattern.findall(block)}
    assert named, "the patterns no longer find any actor name in README's code blocks"
    assert named - declared_actors() == set()


def test_actors_imported_in_code_blocks_exist():
    imported = [(module, name.strip()) for block in code_blocks() for module, names in IMPORT.findall(block)
                for name in names.split(",")]
    assert imported, "README's code blocks no longer import any actor"
    assert [f"actors.{module}.{name}" for module, name in imported if not is_actor(module, name)] == []


def is_actor(module: str, name: str) -> bool:
    try:
        return isinstance(getattr(importlib.import_module(f"actors.{module}"), name, None), dramatiq.Actor)
    except ModuleNotFoundError:
        return False


def test_prose_names_only_declared_actors_of_a_declared_area():
    # `maintenance.ping` in a sentence or a table; `lamplighter.invitations` (a table) and the like
    # do not share a first part with any actor.
    declared = declared_actors()
    areas = {name.split(".")[0] for name in declared}
    named = {f"{area}.{verb}" for area, verb in PROSE_NAME.findall(README.read_text()) if area in areas}
    assert named - declared == set()
