"""Turning what the caller passed into something safe to hand to ``exec``.

A command is a *sequence of arguments*. Strings are refused on purpose: ``"sleep 100"`` is
one program name with a space in it (the bug in the original tutorial's
``Command::new("sleep 100")``), and splitting it for you would mean guessing at shell quoting.
Nothing here ever starts a shell; write ``["sh", "-c", "..."]`` when you want one.
"""

from __future__ import annotations

import codecs
import errno
import os
import resource
import shlex
import shutil
from collections.abc import Mapping, Sequence, Set
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
    if isinstance(cmd, Set | Mapping):
        raise TypeError(
            f"a command is a list of arguments such as ['echo', 'hi'], not a "
            f"{type(cmd).__name__}: its arguments have no order (write a list)")
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
    if not args[0]:
        raise ValueError(f"the program name is empty: argument 0 of {format_command(args)} "
                         "is ''; put the program first, e.g. ['echo', 'hi']")
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
        if "\0" in key or "\0" in value:
            raise ValueError(f"env[{key!r}] contains a NUL byte, which no environment can "
                             "hold: remove it")
        if "=" in key or not key:
            raise ValueError(f"env[{key!r}]: a variable name must be non-empty and cannot "
                             "contain '='")
    return dict(env)


def check_cwd_path(cwd: Any) -> str | bytes | None:
    """``cwd`` as a path, checked for type and NUL bytes (not for existence)."""
    if cwd is None:
        return None
    if not isinstance(cwd, str | bytes | os.PathLike):
        raise TypeError(f"cwd must be a path (str, bytes or pathlib.Path), not "
                        f"{type(cwd).__name__} {cwd!r}")
    path = os.fspath(cwd)
    if (b"\0" if isinstance(path, bytes) else "\0") in path:
        raise ValueError(f"cwd contains a NUL byte ({path!r}), which no path can hold")
    return path


def check_cwd(cmd: Sequence[object], cwd: Any) -> str | bytes | None:
    path = check_cwd_path(cwd)
    if path is None:
        return None
    if not os.path.exists(path):
        raise SpawnError(cmd, f"the working directory {path!r} does not exist",
                         "Create it first, or pass an existing cwd=.", errno.ENOENT)
    if not os.path.isdir(path):
        raise SpawnError(cmd, f"the working directory {path!r} is not a directory",
                         "Pass the folder that contains it as cwd=.", errno.ENOTDIR)
    return path


def check_seconds(name: str, value: Any, *, allow_none: bool = True, allow_zero: bool = False,
                  finite: bool = False):
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{name} must be a number of seconds, not {type(value).__name__}")
    if value != value or value < 0 or (value == 0 and not allow_zero):
        bound = "zero or more" if allow_zero else "more than zero"
        raise ValueError(f"{name} must be {bound} seconds, not {value!r}")
    if finite and value == float("inf"):
        raise ValueError(f"{name} must be finite: with {name}=inf a child that ignores "
                         "SIGTERM would never be killed; give a number of seconds")
    return float(value)


def check_grace(grace: Any) -> float:
    return check_seconds("grace", grace, allow_none=False, allow_zero=True, finite=True)


def check_encoding(encoding: Any, errors: Any) -> None:
    """Look the codec and the error handler up now, so a typo fails before anything runs
    (its output would be lost otherwise), as ``subprocess.run`` does."""
    try:
        codecs.lookup(encoding)
    except (LookupError, TypeError):
        raise LookupError(f"unknown encoding {encoding!r}: name a codec Python knows, e.g. "
                          "'utf-8', 'latin-1' or 'cp1252'") from None
    try:
        codecs.lookup_error(errors)
    except (LookupError, TypeError):
        raise LookupError(f"unknown error handler errors={errors!r}: use 'replace', "
                          "'strict', 'ignore' or 'backslashreplace'") from None


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
    if exc.errno == errno.EAGAIN:
        return process_limit_error(cmd, exc)
    if exc.errno == errno.E2BIG:
        return _too_long(cmd, exc, env)
    if exc.errno == errno.ENOENT:
        path = (env or os.environ).get("PATH", os.defpath)
        found = program if "/" in program else shutil.which(program, path=path)
        if found and os.path.isfile(found) and (bad := _bad_shebang(cmd, found, exc)):
            return bad
        if "/" in program:
            return SpawnError(cmd, f"{program!r} does not exist",
                              "Check the path (relative paths start from cwd).", exc.errno)
        first = program.split()[0] if program.strip() else program
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


def process_limit_error(cmd: Sequence[object], exc: OSError) -> SpawnError:
    """EAGAIN from fork: the per-user process limit (``ulimit -u``) or a container's."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NPROC)
    if soft == resource.RLIM_INFINITY:
        return SpawnError(
            cmd, "the system refused to create another process (too many processes; there "
            "is no per-user limit, so it is probably the container's pids limit or memory)",
            "Run fewer at once (map_limited(..., limit=4)); a container's limit is in "
            "/sys/fs/cgroup/pids.max.", exc.errno)
    if soft == hard:
        raise_it = ("ask for a higher hard limit (as root: ulimit -Hu, or TasksMax= for a "
                    "systemd service)")
    else:
        raise_it = f"raise the limit (ulimit -u {hard} in the shell that starts Python)"
    return SpawnError(
        cmd,
        f"the system refused to create another process (too many processes: the limit is "
        f"{soft} per user, hard limit {hard}, counting every process of yours, not just "
        "these)",
        f"Run fewer at once (map_limited(..., limit={max(1, soft // 8)})) or {raise_it}.",
        exc.errno,
    )


def _too_long(cmd: Sequence[str | bytes], exc: OSError,
              env: Mapping[str, str] | None) -> SpawnError:
    size = sum(len(os.fsencode(arg)) + 1 for arg in cmd)
    size += sum(len(k) + len(v) + 2 for k, v in (env or os.environ).items())
    return SpawnError(
        cmd,
        f"the argument list is too long ({len(cmd):,} arguments, {size:,} bytes with the "
        f"environment; the system's limit is {os.sysconf('SC_ARG_MAX'):,} bytes, and "
        "131,072 for any one argument)",
        "Pass fewer arguments per command (run it on batches of them, e.g. with "
        "map_limited over chunks) or hand them over on stdin or in a file.",
        exc.errno,
    )


def _bad_shebang(cmd: Sequence[object], found: str, exc: OSError) -> SpawnError | None:
    """The script exists, so ENOENT is about the interpreter its ``#!`` line names."""
    try:
        with open(found, "rb") as f:
            head = f.read(256)
    except OSError:
        return None
    if not head.startswith(b"#!"):
        return None
    line = head.split(b"\n", 1)[0].decode(errors="replace")
    if line.endswith("\r"):
        return SpawnError(
            cmd, f"its #! line {line!r} ends with a Windows carriage return (\\r), so the "
            f"system looks for an interpreter called {line[2:].strip(' ')!r}",
            f"Convert the file to Unix line ends (dos2unix {shlex.quote(found)}, or your "
            "editor's LF setting).", exc.errno)
    return SpawnError(
        cmd, f"{found!r} exists, but its #! line {line!r} names an interpreter that is not "
        "installed", "Install that interpreter, correct the #! line, or run the script "
        f"through one you have, e.g. ['sh', {found!r}].", exc.errno)


def describe(cmd: Sequence[object]) -> str:
    return format_command(cmd)
