"""Where the kit runs: the CI matrix (checked here, it runs on GitHub), Windows' clear refusal,
and tools/other-pythons (which `make test` uses to try every other Python 3.11+)."""

from __future__ import annotations

import copy
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

import asyncproc_kit

ROOT = Path(__file__).resolve().parent.parent
KIT_ROOT = str(Path(asyncproc_kit.__file__).parent.parent)
WORKFLOW = ROOT / ".github" / "workflows" / "ci.yml"
OSES = ["ubuntu-latest", "macos-latest"]
PYTHONS = ["3.11", "3.12", "3.13"]

# The part of GitHub's workflow syntax this file uses; anything else is a mistake here.
STEP = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "if": {"type": "string"},
                   "uses": {"type": "string", "pattern": r"^[\w.-]+/[\w.-]+@v\d+$"},
                   "with": {"type": "object"}, "run": {"type": "string"},
                   "env": {"type": "object"}},
    "oneOf": [{"required": ["uses"]}, {"required": ["run"]}],
    "additionalProperties": False,
}
SCHEMA = {
    "type": "object",
    "required": ["name", "on", "jobs"],
    "properties": {
        "name": {"type": "string"},
        "on": {"type": "object"},
        "permissions": {"type": "object"},
        "concurrency": {"type": "object"},
        "jobs": {"type": "object", "minProperties": 1, "additionalProperties": {
            "type": "object",
            "required": ["runs-on", "steps"],
            "properties": {
                "name": {"type": "string"}, "runs-on": {"type": "string"},
                "timeout-minutes": {"type": "integer", "minimum": 1},
                "env": {"type": "object", "additionalProperties": {"type": "string"}},
                "strategy": {"type": "object", "properties": {
                    "fail-fast": {"type": "boolean"},
                    "matrix": {"type": "object", "additionalProperties": {
                        "type": "array"}}}},
                "steps": {"type": "array", "minItems": 1, "items": STEP},
            },
            "additionalProperties": False,
        }},
    },
    "additionalProperties": False,
}


def load(path: Path = WORKFLOW) -> dict[str, Any]:
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    if True in doc:  # YAML 1.1 reads the key `on` as the boolean true
        doc["on"] = doc.pop(True)
    return doc


def readme_test_command() -> str:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    return re.search(r"^(make test)\b", readme, re.MULTILINE).group(1)  # type: ignore[union-attr]


def problems(doc: dict[str, Any]) -> list[str]:
    """What is wrong with the workflow ``doc``; empty when it is right."""
    found = [f"{'/'.join(map(str, e.absolute_path)) or 'top'}: {e.message}"
             for e in jsonschema.Draft202012Validator(SCHEMA).iter_errors(doc)]
    if found:
        return found
    job = doc["jobs"]["test"]
    matrix = job["strategy"]["matrix"]
    if matrix.get("os") != OSES:
        found.append(f"matrix.os is {matrix.get('os')}, not {OSES}")
    if matrix.get("python") != PYTHONS:  # strings: YAML reads 3.10 as the number 3.1
        found.append(f"matrix.python is {matrix.get('python')!r}, not {PYTHONS!r}")
    if job["runs-on"] != "${{ matrix.os }}":
        found.append("runs-on must be ${{ matrix.os }}")
    keys = set(matrix) - {"include", "exclude"}
    for expression in re.findall(r"\$\{\{(.*?)\}\}", yaml.safe_dump(doc)):
        for name in re.findall(r"\bmatrix\.([\w-]+)", expression):
            if name not in keys:
                found.append(f"${{{{{expression}}}}} uses matrix.{name}, which is not defined")
    runs = [step["run"] for step in job["steps"] if "run" in step]
    if readme_test_command() not in runs:
        found.append(f"no step runs the README's test command {readme_test_command()!r}")
    setup = [s for s in job["steps"] if s.get("uses", "").startswith("actions/setup-python@")]
    if not setup or setup[0].get("with", {}).get("python-version") != "${{ matrix.python }}":
        found.append("actions/setup-python must install ${{ matrix.python }}")
    if job.get("env", {}).get("OTHER_PYTHONS") != "none":
        found.append("OTHER_PYTHONS must be none: the matrix gives each job its Python")
    return found


def test_the_ci_workflow_is_valid() -> None:
    assert problems(load()) == []


def test_the_ci_matrix_runs_the_notebooks_on_exactly_one_linux_job() -> None:
    matrix = load()["jobs"]["test"]["strategy"]["matrix"]
    jobs = [{"os": o, "python": p, "notebooks": False} for o in OSES for p in PYTHONS]
    for excluded in matrix.get("exclude", []):
        jobs.remove(excluded)
    jobs += matrix.get("include", [])
    assert len(jobs) == 6
    assert [(j["os"], j["python"]) for j in jobs if j["notebooks"]] == [("ubuntu-latest", "3.11")]


@pytest.mark.parametrize(("break_it", "complaint"), [
    (lambda d: d["jobs"]["test"]["strategy"]["matrix"].update(python=[3.11, 3.12, 3.13]),
     "is not of type 'array'|matrix.python"),
    (lambda d: d["jobs"]["test"]["strategy"]["matrix"]["os"].remove("macos-latest"),
     "matrix.os"),
    (lambda d: d["jobs"]["test"]["steps"][-1].update(run="pytest"), "README's test command"),
    (lambda d: d["jobs"]["test"]["steps"][0].update(uses="actions/checkout@main"),
     "does not match"),
    (lambda d: d["jobs"]["test"]["steps"].append({"name": "nothing"}), "is not valid under any"),
    (lambda d: d["jobs"]["test"].update({"runs_on": "ubuntu-latest"}),
     "Additional properties"),
    (lambda d: d["jobs"]["test"].update(name="${{ matrix.pyhton }}"), "matrix.pyhton"),
])
def test_a_broken_workflow_is_caught(break_it, complaint: str) -> None:
    doc = copy.deepcopy(load())
    break_it(doc)
    assert re.search(complaint, "\n".join(problems(doc))), problems(doc)


# -- Windows ----------------------------------------------------------------------------------

ON_WINDOWS = """
import os, sys
sys.platform, os.name = "win32", "nt"
try:
    import asyncproc_kit.testing
except ImportError as exc:
    print(type(exc).__name__, exc, sep="\\n")
"""


def test_on_windows_the_import_says_why_and_where_to_go() -> None:
    done = subprocess.run([sys.executable, "-c", ON_WINDOWS], capture_output=True, text=True,
                          env=dict(os.environ, PYTHONPATH=KIT_ROOT), timeout=60)
    assert done.returncode == 0, done.stderr
    kind, message = done.stdout.rstrip("\n").split("\n")
    assert kind == "ImportError"  # not ModuleNotFoundError: fcntl from deep inside
    assert "needs POSIX process groups" in message
    assert "WSL 2" in message
    assert "https://mybinder.org/v2/gh/asyncproc-kit/asyncproc-kit/main" in message
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    binder = re.search(r"\((https://mybinder\.org/v2/\S+?)\)", readme).group(1)  # type: ignore[union-attr]
    assert binder in message


# -- tools/other-pythons ----------------------------------------------------------------------

OTHER_PYTHONS = ROOT / "tools" / "other-pythons"


def other_pythons(choice: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(OTHER_PYTHONS)], capture_output=True, text=True,
                          env=dict(os.environ, OTHER_PYTHONS=choice), timeout=60)


def test_other_pythons_says_when_it_runs_none() -> None:
    done = other_pythons("none")
    assert done.returncode == 0
    assert "OTHER_PYTHONS=none: only Python 3." in done.stdout


def test_other_pythons_fails_for_a_python_it_cannot_find() -> None:
    done = other_pythons("3.99")
    assert done.returncode == 1
    assert "Python 3.99: NOT FOUND (looked for python3.99 on PATH and in pyenv)" in done.stdout


def test_other_pythons_refuses_a_bad_choice() -> None:
    done = other_pythons("latest")
    assert done.returncode == 1
    assert "give versions like '3.12 3.13'" in done.stderr
