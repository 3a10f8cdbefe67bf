"""What a workshop gets on Binder: an environment made from ``binder/`` alone.

Binder (repo2docker) reads only ``binder/``: Python from ``runtime.txt``, then ``pip install -r
binder/requirements.txt`` from the repository root, then ``postBuild``. These tests do the
same in a fresh virtualenv (nothing from ``.venv``), run a notebook under nbval in it, and
check that postBuild's settings reach a JupyterLab server started from it.

The virtualenv is cached in the temp folder under a hash of this checkout's path and of the
requirements and Python version, so only the first run pays for the install (about half a
minute with a warm pip cache, a few minutes without); a changed requirements file replaces
it.
``ASYNCPROC_KIT_SKIP_BINDER=1`` skips these tests for quick local runs; ``make test`` and CI
run them.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BINDER = ROOT / "binder"
NOTEBOOKS = ROOT / "notebooks"

pytestmark = [
    pytest.mark.binder,
    pytest.mark.skipif(
        os.environ.get("ASYNCPROC_KIT_SKIP_BINDER") == "1",
        reason="ASYNCPROC_KIT_SKIP_BINDER=1: the Binder environment is not built",
    ),
]


def runtime_version() -> tuple[int, int]:
    text = (BINDER / "runtime.txt").read_text().strip()
    match = re.fullmatch(r"python-(\d+)\.(\d+)", text)
    assert match, f"binder/runtime.txt must read like python-3.11, not {text!r}"
    return int(match[1]), int(match[2])


def runtime_python() -> str:
    """An interpreter of the version Binder will use."""
    major, minor = runtime_version()
    if sys.version_info[:2] == (major, minor):
        return sys.executable
    found = shutil.which(f"python{major}.{minor}")
    if found is None:
        pytest.fail(f"binder/runtime.txt pins python-{major}.{minor}, which is not installed "
                    f"here: install python{major}.{minor} or change the pin")
    return found


def clean_env(venv: Path | None = None) -> dict[str, str]:
    """This process's environment without anything that points into .venv or this pytest."""
    env = {k: v for k, v in os.environ.items()
           if k not in {"VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME", "JUPYTER_PATH",
                        "JUPYTER_CONFIG_DIR", "JUPYTER_DATA_DIR"}
           and not k.startswith("PYTEST_")}
    if venv is not None:
        env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
        env["VIRTUAL_ENV"] = str(venv)
    return env


@pytest.fixture(scope="module")
def binder_venv() -> Path:
    """A virtualenv made from binder/requirements.txt alone (cached), with postBuild run."""
    python = runtime_python()
    requirements = (BINDER / "requirements.txt").read_bytes()
    version = subprocess.run([python, "-c", "import sys; print(sys.version)"], check=True,
                             capture_output=True, text=True).stdout
    checkout = hashlib.sha256(str(ROOT).encode()).hexdigest()[:8]
    key = hashlib.sha256(requirements + version.encode()).hexdigest()[:12]
    venv = Path(tempfile.gettempdir()) / f"asyncproc-kit-binder-{checkout}-{key}"
    done = venv / ".complete"
    if not done.exists():
        # this checkout's older environments (requirements changed since) go first
        for old in venv.parent.glob(f"asyncproc-kit-binder-{checkout}-*"):
            shutil.rmtree(old, ignore_errors=True)
        subprocess.run([python, "-m", "venv", str(venv)], check=True, env=clean_env())
        install = subprocess.run(
            [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet",
             "-r", str(BINDER / "requirements.txt")],
            cwd=ROOT, env=clean_env(venv), capture_output=True, text=True,
        )
        assert install.returncode == 0, f"pip install -r binder/requirements.txt failed:\n" \
                                        f"{install.stdout}\n{install.stderr}"
        done.write_text(version)
    post = subprocess.run([str(BINDER / "postBuild")], cwd=ROOT, env=clean_env(venv),
                          capture_output=True, text=True)
    assert post.returncode == 0, f"binder/postBuild failed:\n{post.stdout}\n{post.stderr}"
    return venv


@pytest.mark.timeout(1200)  # the first run installs JupyterLab, matplotlib, ... from scratch
def test_the_requirements_are_consistent_and_install_this_checkout(binder_venv: Path) -> None:
    python = str(binder_venv / "bin" / "python")
    check = subprocess.run([python, "-m", "pip", "check"], capture_output=True, text=True,
                           env=clean_env(binder_venv))
    assert check.returncode == 0, f"pip check in the Binder environment:\n{check.stdout}"
    where = subprocess.run(
        [python, "-c", "import sys, asyncproc_kit; print(asyncproc_kit.__file__, sys.version)"],
        capture_output=True, text=True, check=True, cwd=tempfile.gettempdir(),
        env=clean_env(binder_venv),
    ).stdout
    assert where.startswith(str(ROOT / "asyncproc_kit")), where  # `-e .` is this checkout
    assert f" {runtime_version()[0]}.{runtime_version()[1]}." in where


@pytest.mark.timeout(1200)
def test_a_notebook_passes_nbval_in_the_binder_environment(binder_venv: Path,
                                                           tmp_path: Path) -> None:
    notebook = NOTEBOOKS / "01-why-async.ipynb"
    if not notebook.exists():
        notebook = NOTEBOOKS / "00-welcome.ipynb"
    assert notebook.exists(), "no notebook to run"
    # A config of its own: the repository's pytest settings name plugins Binder lacks.
    (tmp_path / "pytest.ini").write_text("[pytest]\nfilterwarnings =\n    error\n")
    result = subprocess.run(
        [str(binder_venv / "bin" / "python"), "-m", "pytest", "-c", str(tmp_path / "pytest.ini"),
         "--rootdir", str(tmp_path), "-p", "no:cacheprovider", "-q",
         "--nbval", "--nbval-current-env",
         "--nbval-sanitize-with", str(NOTEBOOKS / "sanitize.cfg"), str(notebook)],
        cwd=ROOT, env=clean_env(binder_venv), capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, f"nbval of {notebook.name} in the Binder environment:\n" \
                                   f"{result.stdout[-6000:]}\n{result.stderr[-2000:]}"
    assert re.search(r"\b\d+ passed\b", result.stdout), result.stdout


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.timeout(180)
def test_postbuild_settings_reach_jupyterlab(binder_venv: Path, tmp_path: Path) -> None:
    """postBuild's overrides.json disables comms over subshells in the server Binder starts."""
    port, token = free_port(), secrets.token_hex(16)
    env = clean_env(binder_venv)
    env["HOME"] = str(tmp_path)  # no user settings from this machine
    env["JUPYTER_RUNTIME_DIR"] = str(tmp_path / "runtime")
    log = (tmp_path / "lab.log").open("w")
    server = subprocess.Popen(
        [str(binder_venv / "bin" / "jupyter"), "lab", "--no-browser", "--allow-root",
         "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}",
         "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}",
         f"--ServerApp.root_dir={ROOT}"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    headers = {"Authorization": f"token {token}"}
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                with urllib.request.urlopen(urllib.request.Request(f"{base}/api/status",
                                                                   headers=headers), timeout=5):
                    break
            except (urllib.error.URLError, ConnectionError):
                assert server.poll() is None, (tmp_path / "lab.log").read_text()
                assert time.monotonic() < deadline, "JupyterLab did not start in 90 s"
                time.sleep(0.5)
        url = f"{base}/lab/api/settings/@jupyterlab/apputils-extension:kernels-settings"
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers)) as response:
            settings = json.load(response)
        # overrides.json replaces the schema's default, which JupyterLab then uses
        default = settings["schema"]["properties"]["commsOverSubshells"]["default"]
        assert default == "disabled", settings["schema"]["properties"]["commsOverSubshells"]
        assert "commsOverSubshells" not in settings["settings"]  # no user setting interferes
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
        log.close()
