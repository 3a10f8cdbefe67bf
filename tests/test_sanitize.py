"""The nbval sanitize file says what it means: nbval drops a badly formed pair silently.

nbval reads ``notebooks/sanitize.cfg`` with a regular expression that only finds a
``regex: ...`` line directly followed by a ``replace: ...`` line (one space after each colon),
and keeps the pairs in a dict keyed by the regex. A missing space, a blank line between the
two, or a repeated regex simply disappears, and the notebook check then fails (or passes) for
a reason nobody can see. These tests parse the file the way nbval does and compare.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from nbval.plugin import get_sanitize_patterns

SANITIZE = Path(__file__).resolve().parent.parent / "notebooks" / "sanitize.cfg"
EXPECTED_PAIRS = 10  # raise it when you add a pair to the file (notebooks/README.md)

TEXT = SANITIZE.read_text(encoding="utf-8") if SANITIZE.exists() else ""
LINES = TEXT.splitlines()
PAIRS = get_sanitize_patterns(TEXT)


def test_the_file_exists() -> None:
    assert SANITIZE.is_file(), "pyproject.toml passes it to nbval with --nbval-sanitize-with"


def test_the_file_is_ascii_with_unix_line_ends() -> None:
    bad = [(n, line) for n, line in enumerate(LINES, 1) if not line.isascii()]
    assert bad == [], "non-ASCII lines (write \\uXXXX or a character class instead)"
    assert "\r" not in TEXT, "CRLF line ends: nbval's pattern would keep the \\r in each regex"


def test_every_regex_line_becomes_a_pair() -> None:
    regex_lines = [line for line in LINES if line.lstrip().startswith("regex:")]
    replace_lines = [line for line in LINES if line.lstrip().startswith("replace:")]
    assert len(PAIRS) == EXPECTED_PAIRS, f"nbval reads {len(PAIRS)} pairs, not {EXPECTED_PAIRS}"
    assert len(PAIRS) == len(regex_lines) == len(replace_lines), (
        f"{len(regex_lines)} regex lines, {len(replace_lines)} replace lines, but nbval "
        f"reads {len(PAIRS)} pairs"
    )


def test_each_pair_is_two_adjacent_well_formed_lines() -> None:
    for n, line in enumerate(LINES):
        if line.lstrip().startswith("regex:"):
            assert line.startswith("regex: "), (
                f"line {n + 1}: write `regex: PATTERN` (one space, no indent): {line!r}"
            )
            assert line.strip() != "regex:", f"line {n + 1}: an empty regex"
            following = LINES[n + 1] if n + 1 < len(LINES) else ""
            assert following.startswith("replace: "), (
                f"line {n + 2}: the line after a regex must be `replace: TEXT` (an empty "
                f"replacement keeps its trailing space): {following!r}"
            )
        elif line.lstrip().startswith("replace:"):
            assert n > 0, "the file starts with a replace line"
            assert LINES[n - 1].startswith("regex: "), f"line {n + 1}: a replace without a regex"
        else:
            assert line == "" or line.startswith(("#", "[")), (
                f"line {n + 1}: only pairs, comments (#) and [section] headings: {line!r}"
            )


def test_no_regex_is_repeated() -> None:
    """nbval keeps the pairs in a dict: a repeated regex silently replaces the earlier one."""
    regexes = [regex for regex, _ in PAIRS]
    repeated = sorted({r for r in regexes if regexes.count(r) > 1})
    assert repeated == []


@pytest.mark.parametrize(("regex", "replace"), PAIRS, ids=[r for r, _ in PAIRS])
def test_each_pair_compiles_and_cannot_match_nothing(regex: str, replace: str) -> None:
    pattern = re.compile(regex)
    assert pattern.match("") is None, "a regex that matches the empty string rewrites everything"
    pattern.sub(replace, "pid 1234 took 0.123 s in /tmp/tmpabc123")  # the replacement is valid


def sanitize(text: str) -> str:
    """What nbval does to every output: each pair in file order (a repeated regex keeps its
    first position and its last replacement, as in nbval's dict)."""
    for regex, replace in dict(PAIRS).items():
        text = re.sub(regex, replace, text)
    return text


# Outputs that differ only in what changes from run to run, or from checkout to checkout
# (CI clones the repository into some other folder, possibly under /tmp), must compare equal.
SAME = {
    "pid": ["ProcessResult(pid=4242)", "ProcessResult(pid=987654)"],
    "pid words": ["child pid 4242 exited", "child pid 31337 exited"],
    "duration": ["took 0.21 s", "took 12.345 s"],
    "address": ["<Child at 0x7f3a2c1b2d90>", "<Child at 0x55d0c0ffee00>"],
    "temp path": ["wrote /tmp/tmpab12cd/out.txt", "wrote /tmp/tmp9_x7yz/out.txt"],
    "port": ["listening on 127.0.0.1:43211", "listening on 127.0.0.1:5000"],
    "time of day": ["at 20:31:07", "at 09:02:59.123"],
    "interpreter": [
        f"[{prefix}/.venv/bin/python', '-u', '-c', 'import time; time.sleep(10.0)'] timed out"
        for prefix in ("'/work/main", "'/tmp/ci-check", "'/home/me/src/asyncproc-kit")
    ],
}
# ... and outputs that differ in a fact must still differ.
DIFFERENT = {
    "exit code": ["exit code 3", "exit code 4"],
    "returncode": ["returncode=0", "returncode=1"],
    "count": ["10 processes", "15 processes"],
}


@pytest.mark.parametrize("case", list(SAME))
def test_run_to_run_differences_disappear(case: str) -> None:
    first, *others = SAME[case]
    for other in others:
        assert sanitize(other) == sanitize(first), f"{other!r} vs {first!r}"


@pytest.mark.parametrize("case", list(DIFFERENT))
def test_facts_survive(case: str) -> None:
    first, second = DIFFERENT[case]
    assert sanitize(first) != sanitize(second)
