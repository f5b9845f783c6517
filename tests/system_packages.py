"""Debian packages some tests drive (PgBouncer, Chromium): installed on first use when missing (as
root, with apt), so that the README's one test command is enough on a fresh machine; `.ci/run`
installs them up front."""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path


def ensure(package: str, executable: str) -> None:
    """Install Debian's ``package`` unless ``executable`` exists; fail clearly if it still does not."""
    if Path(executable).exists():
        return
    if os.geteuid() == 0 and shutil.which("apt-get"):
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        install = ["apt-get", "install", "-y", "-q", package]
        if subprocess.run(install, env=env, capture_output=True).returncode != 0:
            subprocess.run(["apt-get", "update", "-q"], env=env, capture_output=True)
            subprocess.run(install, env=env, capture_output=True)
    assert Path(executable).exists(), f"{package} is not installed: apt-get install {package} (Debian's package)"
