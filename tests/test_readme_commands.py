"""The README's two commands do what it promises (checked without starting a server)."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")


def dry_run(target: str) -> str:
    """What ``make TARGET`` would run, with its prerequisites already up to date."""
    return subprocess.run(["make", "-n", "-o", ".venv/.installed", target], cwd=ROOT,
                          capture_output=True, text=True, check=True).stdout


def test_readme_gives_the_two_commands() -> None:
    """The README tells a newcomer to run `make lab` and `make test`."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert re.search(r"^make lab\b", readme, re.MULTILINE)
    assert re.search(r"^make test\b", readme, re.MULTILINE)


def test_make_lab_opens_the_welcome_notebook_on_loopback() -> None:
    """`make lab` serves notebooks/ on 127.0.0.1 and opens a notebook that exists."""
    words = shlex.split(dry_run("lab").replace("\\\n", " "))
    assert "--ServerApp.ip=127.0.0.1" in words
    opened = [w for w in words if w.endswith(".ipynb")]
    assert opened == ["notebooks/00-welcome.ipynb"]
    assert (ROOT / opened[0]).is_file()  # the path is taken from where make runs


def test_ci_runs_the_readme_test_command() -> None:
    """.ci/run ends by running `make test`, the command the README gives."""
    lines = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    assert "make test" in lines
    assert "python -m pytest" in dry_run("test")
