"""Kernel -> Interrupt while a cell awaits a long child ends that child's whole process group.

A real ipykernel (this environment's Python) is driven with jupyter_client, exactly as
JupyterLab does it: the cell is sent, the test waits until the child (and its grandchildren)
are running, then interrupts the kernel. The kit starts every child in its own session, so
the kernel's SIGINT never reaches it: only the kit's cancellation handling can end it. The
survivors are counted from this process with ``session_members``.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import sys
import time

import pytest

from asyncproc_kit.testing import descendants, session_members

jupyter_client = pytest.importorskip("jupyter_client")
from jupyter_client.kernelspec import KernelSpecManager  # noqa: E402
from jupyter_client.manager import KernelManager  # noqa: E402

STARTUP = 60.0  # seconds for a kernel to start on a loaded machine
SETTLE = 3.0  # seconds a SIGKILLed process may take to vanish once signalled


@pytest.fixture
def kernel(tmp_path_factory: pytest.TempPathFactory):
    """A fresh kernel of this environment's Python, a client connected to it, and a set to
    which a test adds the sessions it started (killed at the end if the test failed)."""
    kernels = tmp_path_factory.mktemp("kernels")
    (kernels / "asyncproc-test").mkdir()
    spec = {
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "asyncproc-kit test kernel",
        "language": "python",
    }
    (kernels / "asyncproc-test" / "kernel.json").write_text(json.dumps(spec))
    km = KernelManager(
        kernel_name="asyncproc-test",
        kernel_spec_manager=KernelSpecManager(kernel_dirs=[str(kernels)]),
    )
    km.start_kernel(cwd=str(tmp_path_factory.mktemp("cwd")))
    kc = km.client()
    kc.start_channels()
    started: set[int] = set()
    try:
        kc.wait_for_ready(timeout=STARTUP)
        reply, _ = execute(kc, "import asyncproc_kit as kit\nfrom asyncproc_kit.testing import *")
        assert reply["status"] == "ok", reply
        yield km, kc, started
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
        for pid in session_members(started):  # only after a failure: leave nothing behind
            os.kill(pid, signal.SIGKILL)


def execute(kc, code: str, timeout: float = 30.0) -> tuple[dict, str]:
    """Run ``code`` and return (the execute_reply content, everything it printed)."""
    msg_id = kc.execute(code)
    return wait_reply(kc, msg_id, timeout)


def wait_reply(kc, msg_id: str, timeout: float) -> tuple[dict, str]:
    try:
        return _wait_reply(kc, msg_id, timeout)
    except queue.Empty:
        pytest.fail(f"the cell did not finish within {timeout} s")


def _wait_reply(kc, msg_id: str, timeout: float) -> tuple[dict, str]:
    deadline = time.monotonic() + timeout
    printed = []
    idle = False
    while not idle:
        msg = kc.get_iopub_msg(timeout=max(0.1, deadline - time.monotonic()))
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        if msg["msg_type"] == "stream":
            printed.append(msg["content"]["text"])
        elif msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
            idle = True
    while True:
        reply = kc.get_shell_msg(timeout=max(0.1, deadline - time.monotonic()))
        if reply["parent_header"].get("msg_id") == msg_id:
            return reply["content"], "".join(printed)


def wait_for_children(kernel_pid: int, count: int, timeout: float = 20.0) -> list[int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = descendants(kernel_pid)
        if len(found) >= count:
            return found
        time.sleep(0.05)
    pytest.fail(f"the cell started {descendants(kernel_pid)}, expected {count} processes")


CELLS = {
    "run-sleep": ("await kit.run(SLEEP(60))", 1),
    "run-grandchildren": ("await kit.run(SPAWN_GRANDCHILDREN(2, 60))", 3),
    "stream-grandchildren": (
        "async with kit.open_stream(SPAWN_GRANDCHILDREN(3, 60)) as stream:\n"
        "    async for line in stream:\n"
        "        print(line.source, line.text)",
        4,
    ),
}


@pytest.mark.parametrize("cell", list(CELLS))
def test_interrupt_ends_the_childs_process_group(kernel, cell: str) -> None:
    km, kc, started = kernel
    code, processes = CELLS[cell]
    kernel_pid = km.provisioner.process.pid

    msg_id = kc.execute(code)
    children = wait_for_children(kernel_pid, processes)
    sessions = {os.getsid(pid) for pid in children}
    started.update(sessions)
    assert len(sessions) == 1, f"the child and its grandchildren share one session: {sessions}"
    assert os.getsid(kernel_pid) not in sessions, "the child must not share the kernel's session"
    assert session_members(sessions) == children

    started = time.monotonic()
    km.interrupt_kernel()
    try:
        reply, printed = _wait_reply(kc, msg_id, timeout=15.0)
    except queue.Empty:
        pytest.fail(f"Kernel -> Interrupt did not end `{code}` within 15 s: the cell kept "
                    f"waiting (its child {children} still ran)")
    took = time.monotonic() - started

    assert reply["status"] == "error", reply
    assert reply["ename"] in {"KeyboardInterrupt", "CancelledError"}, reply
    assert took < 10.0, f"the interrupt took {took:.1f} s to end the cell"

    deadline = time.monotonic() + SETTLE
    while session_members(sessions) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert session_members(sessions) == [], f"survivors of {cell} after the interrupt"
    assert descendants(kernel_pid) == []

    # The kernel lives on and runs the next cell normally.
    reply, printed = execute(kc, "print((await kit.run(python('print(6 * 7)'))).stdout)")
    assert reply["status"] == "ok", reply
    assert printed == "42\n\n"

