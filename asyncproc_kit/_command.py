"""Turning what the caller passed into something safe to hand to ``exec``.

A command is a *sequence of arguments*. Strings are refused on purpose: ``"sleep 100"`` is
one program name with a space in it (the bug in the original tutorial's
``Command::new("sleep 100")``), and splitting it for you would mean guessing at shell quoting.
Nothing here ever starts a shell; write ``["sh", "-c", "..."]`` when you want one.
"""

from __future__ import annotations

import errno
import os
import resource
import shlex
import shutil
from collections.abc import Mapping, Sequence
from typing import Any

from ._errors import SpawnError, format_command

Command = Sequence[str | bytes | os.PathLike[str]]

_FD_TARGET = 65536  # soft RLIMIT_NOFILE we aim for: ~16k children with three pipes each
_fd_limit_checked = False


def check_command(cmd: Any) -> list[str | bytes]:
    """Validate ``cmd`` and return it as a list; raise ``TypeError``/``ValueError`` otherwise."""
    if isinstance(cmd, str | bytes):
        text = cmd.decode(errors="replace") if isinstance(cmd, bytes) else cmd
        raise TypeError(
            f"a command is a list of arguments, not a string: write {_list_form(text)} "
            f"(or shlex.split({text!r})); for shell syntax write ['sh', '-c', {text!r}]"
        )
    try:
        args = [os.fspath(a) if isinstance(a, os.PathLike) else a for a in cmd]
    except TypeError:
        raise TypeError(
            f"a command is a list of arguments such as ['echo', 'hi'], not {type(cmd).__name__}"
        ) from None
    if not args:
        raise ValueError("the command is empty: give at least the program, e.g. ['true']")
    for i, arg in enumerate(args):
        if not isinstance(arg, str | bytes):
            raise TypeError(
                f"argument {i} of the command is {type(arg).__name__} ({arg!r}); every argument "
                f"must be str, bytes or a path: use str({arg!r})"
            )
        if (b"\0" if isinstance(arg, bytes) else "\0") in arg:
            raise ValueError(f"argument {i} of the command contains a NUL byte")
    return args


def _list_form(text: str) -> str:
    try:
        return repr(shlex.split(text))
    except ValueError:
        return repr(text.split())


def check_env(env: Any) -> dict[str, str] | None:
    if env is None:
        return None
    if not isinstance(env, Mapping):
        raise TypeError(f"env must be a mapping of str to str, not {type(env).__name__}")
    for key, value in env.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise TypeError(f"env[{key!r}] = {value!r}: environment keys and values must be str")
    return dict(env)


def check_cwd(cmd: Sequence[object], cwd: Any) -> str | None:
    if cwd is None:
        return None
    path = os.fspath(cwd)
    if not os.path.exists(path):
        raise SpawnError(cmd, f"the working directory {path!r} does not exist",
                         "Create it first, or pass an existing cwd=.", errno.ENOENT)
    if not os.path.isdir(path):
        raise SpawnError(cmd, f"the working directory {path!r} is not a directory",
                         "Pass the folder that contains it as cwd=.", errno.ENOTDIR)
    return path


def check_seconds(name: str, value: Any, *, allow_none: bool = True, allow_zero: bool = False):
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{name} must be a number of seconds, not {type(value).__name__}")
    if value != value or value < 0 or (value == 0 and not allow_zero):
        bound = "zero or more" if allow_zero else "more than zero"
        raise ValueError(f"{name} must be {bound} seconds, not {value!r}")
    return float(value)


def raise_fd_limit() -> None:
    """Raise the soft open-file limit towards the hard limit, once per interpreter.

    Each running child holds up to four descriptors (three pipes and a pidfd). The common
    soft limit of 1024 therefore caps a program at ~250 children, far below what the machine
    can do; the hard limit is what the administrator really set.
    """
    global _fd_limit_checked
    if _fd_limit_checked:
        return
    _fd_limit_checked = True
    try:
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        want = _FD_TARGET if hard == resource.RLIM_INFINITY else min(hard, _FD_TARGET)
        if soft != resource.RLIM_INFINITY and soft < want:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    except (ValueError, OSError):  # not allowed here: keep the limit and explain EMFILE later
        pass


def fd_limit_error(cmd: Sequence[object], exc: OSError) -> SpawnError:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    at_once = max(1, soft // 8) if soft != resource.RLIM_INFINITY else 50
    if soft == hard:  # the soft limit is already as high as it may go: only root can help
        raise_it = ("ask for a higher hard limit (as root: ulimit -Hn 65536, or LimitNOFILE= "
                    "for a systemd service)")
    else:
        raise_it = f"raise the limit (ulimit -n {hard} in the shell that starts Python)"
    return SpawnError(
        cmd,
        f"too many open files (the limit is {soft}, hard limit {hard}; each running child "
        "uses up to 4)",
        f"Run fewer at once (map_limited(..., limit={at_once})) or {raise_it}.",
        exc.errno,
    )


def spawn_error(cmd: Sequence[str | bytes], exc: OSError,
                env: Mapping[str, str] | None) -> SpawnError:
    """Translate the ``OSError`` from ``exec`` into a message that names the cause and the fix."""
    program = os.fsdecode(cmd[0])
    if exc.errno in (errno.EMFILE, errno.ENFILE):
        return fd_limit_error(cmd, exc)
    if exc.errno == errno.ENOENT:
        if "/" in program:
            return SpawnError(cmd, f"{program!r} does not exist",
                              "Check the path (relative paths start from cwd).", exc.errno)
        first = program.split()[0] if program.strip() else program
        path = (env or os.environ).get("PATH", os.defpath)
        if " " in program and shutil.which(first, path=path):
            return SpawnError(
                cmd,
                f"there is no program called {program!r} (a whole command line was given as "
                "one argument)",
                f"Split it into arguments: {_list_form(program)}.",
                exc.errno,
            )
        return SpawnError(
            cmd, f"command not found: {program!r} is not on PATH",
            f"Install it, fix the spelling, or give its full path "
            f"(shutil.which({program!r}) finds it if it is on PATH).",
            exc.errno,
        )
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EISDIR):
        resolved = program if "/" in program else shutil.which(program) or program
        if os.path.isdir(resolved):
            return SpawnError(cmd, f"{program!r} is a directory, not a program",
                              "Name the program inside it.", exc.errno)
        return SpawnError(cmd, f"{program!r} is not executable (permission denied)",
                          f"Make it executable (chmod +x {shlex.quote(resolved)}) or run it "
                          "through its interpreter, e.g. ['sh', 'script.sh'].", exc.errno)
    if exc.errno == errno.ENOEXEC:
        return SpawnError(cmd, f"{program!r} is not a program this system can run",
                          "Add a #! line to the script or run it through its interpreter.",
                          exc.errno)
    if exc.errno == errno.ENOTDIR:
        return SpawnError(cmd, f"a part of the path {program!r} is not a directory",
                          "Check the path.", exc.errno)
    return SpawnError(cmd, f"{exc.strerror or exc}", "See the chained OSError for details.",
                      exc.errno)


def describe(cmd: Sequence[object]) -> str:
    return format_command(cmd)
