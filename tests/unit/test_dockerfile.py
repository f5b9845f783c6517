"""The image (Dockerfile) ships its packages compiled. The processes import them from /app, not
from site-packages (dramatiq puts the working directory first on sys.path), and the image forbids
writing bytecode at run time: a package copied in but not compiled is compiled again by every
process start."""
import re
import shlex
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_every_package_the_image_copies_is_compiled_at_build():
    lines = (ROOT / "Dockerfile").read_text().splitlines()
    copied = {Path(line.split()[1]).name for line in lines  # the directories of Python code it copies
              if line.startswith("COPY ") and any((ROOT / line.split()[1]).glob("*.py"))}
    assert {"actors", "console", "domain", "scheduler", "storage"} <= copied
    compiled = set()
    for line in lines:
        match = re.match(r"RUN python -m compileall (.*)", line)
        if match:
            compiled |= {word for word in shlex.split(match.group(1)) if not word.startswith("-")}
    assert copied <= compiled, f"copied but not compiled: {sorted(copied - compiled)}"
    assert any("PYTHONDONTWRITEBYTECODE=1" in line for line in lines)
