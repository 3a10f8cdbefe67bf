"""The notebook pipeline: what the sanitize patterns hide, the generated navigation, and the
shape of every source. (tests/test_sanitize.py checks the file's format and pair count.)"""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

import nbformat
import pytest
from nbval.plugin import get_sanitize_patterns

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
SANITIZE = NOTEBOOKS / "sanitize.cfg"


def load_build():
    spec = importlib.util.spec_from_file_location("notebooks_build", NOTEBOOKS / "build.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while defining
    spec.loader.exec_module(module)
    return module


build = load_build()
SOURCES = sorted((NOTEBOOKS / "src").glob("[0-9][0-9]-*.py"))


def sanitize(text: str) -> str:
    for regex, replace in get_sanitize_patterns(SANITIZE.read_text(encoding="ascii")):
        text = re.sub(regex, replace, text)
    return text


@pytest.mark.parametrize(("raw", "clean"), [
    ("took 0.23 s", "took <T> s"),
    ("run took 12.5 s and 800 ms", "run took <T> s and <T> s"),
    ("pid 48213 ran", "pid <PID> ran"),
    ("<object at 0x7f3a2c1b2d90>", "<object at 0x<ADDR>>"),
    ("wrote /tmp/tmpab12_cd/out.txt.", "wrote <TMPDIR>."),
    ("cwd='/tmp/tmpx9/work'", "cwd='<TMPDIR>'"),
    ("listening on 127.0.0.1:43211", "listening on 127.0.0.1:<PORT>"),
    ("10 processes, exit status: -15", "10 processes, exit status: -15"),
])
def test_sanitize_patterns_hide_only_what_varies(raw: str, clean: str) -> None:
    """Durations, pids, addresses, temp paths and ports are masked; counts are not."""
    assert sanitize(raw) == clean


def test_footer_links_previous_index_and_next() -> None:
    """The generated footer of a middle notebook links all three; 00 has only next."""
    middle = build.footer_markdown(2)
    assert "**Previous:** [01 · " in middle
    assert "(01-why-async.ipynb)" in middle
    assert "**Index:** [00 · Welcome](00-welcome.ipynb)" in middle
    assert "**Next:** [03 · " in middle
    first = build.footer_markdown(0)
    assert "Previous" not in first
    assert "Index" not in first
    last = build.footer_markdown(len(build.CATALOGUE) - 1)
    assert "Next" not in last


def test_index_lists_every_catalogue_entry() -> None:
    """The index in 00 has one row per notebook, a link when its source exists."""
    index = build.index_markdown()
    for entry in build.CATALOGUE:
        row = next(line for line in index.splitlines() if line.startswith(f"| {entry.number} |"))
        if build.source_of(entry) is None:
            assert "(coming)" in row
        else:
            assert f"({build.source_of(entry).stem}.ipynb)" in row


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.stem)
def test_source_has_the_workbook_shape(source: Path) -> None:
    """H1 with seed sections, goals, recap, >= 2 exercises (stub + hidden solution)."""
    nb = build.jupytext.read(source, fmt="py:percent")
    text = "\n".join(cell.source for cell in nb.cells if cell.cell_type == "markdown")
    assert re.match(r"# .+\(.*(§|学习目标|case).*\)", nb.cells[0].source), "H1 with seed sections"
    assert "You will be able to" in text
    assert "## Recap" in text
    assert "## Exercises" in text
    if not source.name.startswith("00-"):
        assert "What the original gets wrong" in text
    cells = nb.cells
    stubs = [i for i, c in enumerate(cells) if "raises-exception" in c.metadata.get("tags", [])
             and "NotImplementedError" in c.source]
    assert len(stubs) >= 2, "at least two exercises"
    for i in stubs:
        solution = cells[i + 1]
        assert solution.metadata.get("jupyter", {}).get("source_hidden") is True
        assert "exercises.check_" in solution.source
    assert build.FOOTER_MARK not in "\n".join(c.source for c in cells), "footer is generated"


def generated(cell) -> bool:
    return build.FOOTER_MARK in cell.source or build.INDEX_MARK in cell.source


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.stem)
def test_stored_notebook_matches_its_source(source: Path) -> None:
    """The committed .ipynb was built (and executed) from the current source."""
    stored_path = NOTEBOOKS / f"{source.stem}.ipynb"
    rebuild = f"run: .venv/bin/python notebooks/build.py {source.name[:2]}"
    assert stored_path.exists(), rebuild
    entry = next(e for e in build.CATALOGUE if e.number == source.name[:2])
    fresh = build.assemble(entry, build.CATALOGUE.index(entry))
    stored = nbformat.read(stored_path, as_version=4)
    stale = f"{stored_path.name} is stale: {rebuild}"
    assert [c.source for c in stored.cells if not generated(c)] == [
        c.source for c in fresh.cells if not generated(c)], stale
    assert any(c.get("outputs") for c in stored.cells), f"{stored_path.name} was not executed"
    for cell in stored.cells:
        assert "execution" not in cell.metadata


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.stem)
def test_stored_navigation_is_current(source: Path) -> None:
    """Footer (and the index in 00) link every notebook that exists now."""
    stored_path = NOTEBOOKS / f"{source.stem}.ipynb"
    if not stored_path.exists():
        pytest.skip("not built yet (see test_stored_notebook_matches_its_source)")
    entry = next(e for e in build.CATALOGUE if e.number == source.name[:2])
    fresh = build.assemble(entry, build.CATALOGUE.index(entry))
    stored = nbformat.read(stored_path, as_version=4)
    assert [c.source for c in stored.cells if generated(c)] == [
        c.source for c in fresh.cells if generated(c)], \
        "navigation is out of date: run .venv/bin/python notebooks/build.py --nav"
