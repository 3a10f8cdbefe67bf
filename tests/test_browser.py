"""The workbook in a real browser: JupyterLab, driven by Playwright in Debian's Chromium.

It opens ``01-why-async``, runs every cell from the Run menu, moves the "processes" slider of
the timing explorer, clicks Run, and checks that a new plot replaces the old one and that no
cell shows an error (the exercise stubs tagged ``raises-exception`` excepted). Screenshots go
to ``test-artifacts/``.

JupyterLab listens on 127.0.0.1 only, on a free port, with a random token. It serves a copy of
the notebook from a temporary folder (so autosave cannot touch the repository) with a
temporary home (no settings from this machine). No browser is downloaded: Debian's
``chromium`` package is used, which ``.ci/run`` installs when it is missing.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK = ROOT / "notebooks" / "01-why-async.ipynb"
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = Path("/usr/bin/chromium")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(),
                       reason="no /usr/bin/chromium: install Debian's chromium package "
                              "(.ci/run does: apt-get install chromium)"),
    pytest.mark.timeout(240),
]

# Settings of the temporary home: no "Jupyter news?" toast over the page, and every cell kept in
# the page (not only those in view), so each one can be looked at.
USER_SETTINGS = {
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {"fetchNews": "false"},
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
}

NB = "window.jupyterapp.shell.currentWidget"
KERNEL_IDLE = f"{NB}?.sessionContext?.session?.kernel?.status === 'idle'"
ALL_CELLS_RAN = f"""() => {{
    const cells = {NB}.content.widgets.filter(c => c.model.type === 'code');
    return cells.length > 0 && {KERNEL_IDLE} && cells.every(
        c => c.model.executionCount !== null && !c.promptNode.textContent.includes('*'));
}}"""
# Every error output the notebook holds, with the cell's tags and the start of its source.
ERRORS = f"""() => {NB}.content.widgets.filter(c => c.model.type === 'code').flatMap(
    c => c.model.outputs.toJSON().filter(o => o.output_type === 'error').map(o => ({{
        tags: c.model.getMetadata('tags') || [],
        source: c.model.sharedModel.getSource().slice(0, 200),
        error: o.ename + ': ' + o.evalue,
    }})))"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[str]:
    """A JupyterLab server serving a copy of notebook 01; yields the URL that opens it."""
    if not NOTEBOOK.exists():
        pytest.fail(f"{NOTEBOOK} is missing")
    work, home = tmp_path / "work", tmp_path / "home"
    work.mkdir()
    shutil.copy(NOTEBOOK, work)
    for name, values in USER_SETTINGS.items():
        path = home / ".jupyter" / "lab" / "user-settings" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values))
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PYTEST_", "JUPYTER")) and k not in {"PYTHONPATH"}}
    env.update(HOME=str(home), JUPYTER_RUNTIME_DIR=str(tmp_path / "runtime"))
    port, token = free_port(), secrets.token_hex(16)
    log_path = tmp_path / "lab.log"
    with log_path.open("w") as log:
        server = subprocess.Popen(
            [sys.executable, "-m", "jupyterlab", "--no-browser", "--allow-root",
             "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}",
             "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}",
             f"--ServerApp.root_dir={work}",
             "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
             "--LabApp.expose_app_in_browser=True"],  # window.jupyterapp: read cell outputs
            cwd=work, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            request = urllib.request.Request(f"{base}/api/status",
                                             headers={"Authorization": f"token {token}"})
            try:
                with urllib.request.urlopen(request, timeout=5):
                    break
            except (urllib.error.URLError, ConnectionError):
                assert server.poll() is None, f"JupyterLab exited:\n{log_path.read_text()}"
                assert time.monotonic() < deadline, "JupyterLab did not answer within 90 s"
                time.sleep(0.5)
        yield f"{base}/lab/tree/{NOTEBOOK.name}?token={token}"
    finally:
        stop(server)


def stop(server: subprocess.Popen[bytes]) -> None:
    """SIGTERM: the server shuts its kernels down; anything still running then is killed."""
    import psutil

    try:
        left = psutil.Process(server.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        left = []
    server.send_signal(signal.SIGTERM)
    try:
        server.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(server.pid, signal.SIGKILL)
        server.wait()
    for proc in left:
        try:
            proc.kill()
        except psutil.NoSuchProcess:
            pass


def test_run_all_then_the_timing_explorer_draws_a_new_plot(lab: str) -> None:
    from playwright.sync_api import expect, sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=FLAGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(60_000)
            page.goto(lab)
            page.wait_for_function(f"() => window.jupyterapp && {KERNEL_IDLE}")

            # Run > Run All Cells, as a learner does.
            page.locator("#jp-MainMenu").get_by_text("Run", exact=True).click()
            page.locator('li.lm-Menu-item[data-command="runmenu:run-all"]').click()
            page.wait_for_function(ALL_CELLS_RAN, timeout=120_000)

            cell = page.locator(".jp-CodeCell").filter(has=page.locator(".widget-slider"))
            expect(cell).to_have_count(1)
            plot = cell.locator(".widget-output img")
            expect(plot).to_have_count(1)  # drawn once when the explorer was shown
            cell.scroll_into_view_if_needed()
            page.screenshot(path=ARTIFACTS / "browser-01-after-run-all.png")
            errors = page.evaluate(ERRORS)
            unexpected = [e for e in errors if "raises-exception" not in e["tags"]]
            assert unexpected == [], "cells show errors after Run All"
            assert errors, "the exercise stubs (raises-exception) should have raised"
            assert page.get_by_text("Error displaying widget").count() == 0

            # Move the "processes" slider with the keyboard, then press Run.
            slider = cell.locator(".widget-slider").filter(has_text="processes")
            readout = slider.locator(".widget-readout")
            before = int(readout.inner_text())
            slider.locator(".noUi-handle").focus()
            for _ in range(5):
                page.keyboard.press("ArrowRight")
            expect(readout).to_have_text(str(before + 5))
            old_src = plot.get_attribute("src")
            assert old_src is not None
            assert old_src.startswith("data:image/png")
            cell.locator(".widget-button").filter(has_text="Run").click()

            # The new run replaces the plot (a new image) and reports the new count.
            page.wait_for_function(
                """([cell, old]) => {
                    const imgs = cell.querySelectorAll('.widget-output img');
                    return imgs.length === 1 && imgs[0].src !== old && imgs[0].complete
                        && imgs[0].naturalWidth > 0;
                }""",
                arg=[cell.element_handle(), old_src],
            )
            expect(cell.locator(".widget-output")).to_contain_text(f"{before + 5} processes x")
            expect(cell.locator(".widget-button").filter(has_text="Run")).to_be_enabled()
            cell.scroll_into_view_if_needed()
            page.screenshot(path=ARTIFACTS / "browser-01-after-click.png")
            cell.screenshot(path=ARTIFACTS / "browser-01-explorer.png")

            assert "The run failed" not in cell.locator(".widget-output").inner_text()
            unexpected = [e for e in page.evaluate(ERRORS) if "raises-exception" not in e["tags"]]
            assert unexpected == [], "cells show errors after clicking Run"
        finally:
            browser.close()
