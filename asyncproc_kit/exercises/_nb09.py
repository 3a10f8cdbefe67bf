"""Checks for notebook 09 (a batch processor): the ``command`` callable; what a resume runs.

The command is tried for real: ``process_files`` with the learner's function turns two
generated clips into ``.mp4`` files with the ffmpeg of ``imageio-ffmpeg``, and the outputs
are probed. The resume prediction is compared with what a real resume runs, on files
prepared as the exercise describes (with the kit's fake transcoder, so it takes a second).
``NotImplementedError`` passes through.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from .. import Timeline, map_limited, run
from ..cases.batch import process_files
from ..cases.fake_transcode import fake_transcode
from ._common import ExerciseResult

COMMAND = "09.1 a command that writes to the part file"
RESUME = "09.2 what a resume runs"

RESUME_FILES = ("a.avi", "b.avi", "c.avi", "d.avi")
"""The first run of exercise 09.2, in this order; c.avi fails."""


def _ffmpeg() -> str | None:
    try:
        import imageio_ffmpeg
    except ImportError:
        return None
    return imageio_ffmpeg.get_ffmpeg_exe()


async def check_transcode_command(transcode: Callable[[Path, Path], Any]) -> ExerciseResult:
    """``transcode(clip, part)`` returns the ffmpeg command that converts ``clip`` to H.264
    and writes it to ``part`` (the output's temporary name: ffmpeg picks MP4 from its
    suffix)."""
    if not callable(transcode):
        return ExerciseResult(COMMAND, False, f"expected a function, got {transcode!r}",
                              "Pass the function itself (its name, without calling it).")
    ffmpeg = _ffmpeg()
    if ffmpeg is None:
        return ExerciseResult(COMMAND, False, "imageio-ffmpeg is not installed",
                              "Install the notebooks extra, which brings ffmpeg: "
                              "pip install 'asyncproc-kit[notebooks]'.")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        clips = [folder / f"check{n}.avi" for n in (1, 2)]
        try:
            argv = transcode(clips[0], folder / "out" / ".check1.part.mp4")
        except NotImplementedError:
            raise
        except Exception as exc:
            return ExerciseResult(COMMAND, False, f"transcode raised {type(exc).__name__}: "
                                  f"{exc}", "Build and return the list; do not run anything.")
        if isinstance(argv, str):
            return ExerciseResult(COMMAND, False, f"it returned a string: {argv!r}",
                                  "Return a list of arguments, e.g. [FFMPEG, '-i', clip, ...]: "
                                  "no shell splits it for you.")
        made = await map_limited([[ffmpeg, "-v", "error", "-f", "lavfi", "-i",
                                   "testsrc=duration=0.5:size=64x48:rate=10", "-c:v", "mpeg4",
                                   str(clip)] for clip in clips], limit=2)
        if any(isinstance(m, Exception) for m in made):
            return ExerciseResult(COMMAND, False, f"could not make test clips: {made}",
                                  "Run the notebook's first cells again.")
        try:
            report = await process_files(clips, transcode,
                                         output_for=lambda p: folder / "out" / f"{p.stem}.mp4",
                                         workers=2, timeout=60)
        except NotImplementedError:
            raise
        except (TypeError, ValueError) as exc:
            if "never mentions the part path" in str(exc):
                return ExerciseResult(COMMAND, False, "its arguments never mention the part "
                                      "path", "Write to `part`, not to the final name: the "
                                      "kit renames part into place only after ffmpeg "
                                      "succeeded.")
            return ExerciseResult(COMMAND, False, f"process_files refused it: {exc}",
                                  "Return a non-empty list of str or Path arguments.")
        bad = [item for item in report if item.status != "ok"]
        if bad:
            item = bad[0]
            tail = item.stderr_tail.splitlines()[-1] if item.stderr_tail else item.reason
            return ExerciseResult(COMMAND, False, f"{item.input.name} {item.status}: {tail}",
                                  "Start with FFMPEG, then '-i', clip, then the codec "
                                  "options, and end with part. Add '-y' and '-nostdin' so "
                                  "ffmpeg never waits for an answer.")
        probe = await run([ffmpeg, "-hide_banner", "-i", str(folder / "out" / "check1.mp4")],
                          check=False)
        if "Video: h264" not in probe.stderr:
            found = [line.split("Video:")[1].split()[0] for line in probe.stderr.splitlines()
                     if "Video:" in line]
            return ExerciseResult(COMMAND, False, "the output is not H.264 video: "
                                  f"{'it is ' + found[0] if found else 'no video stream'}",
                                  "Choose the codec with '-c:v', 'libx264' (the seed's "
                                  "'-codec:v libx264').")
        leftovers = [p.name for p in (folder / "out").iterdir() if ".part" in p.name]
        if leftovers:
            return ExerciseResult(COMMAND, False, f"part files were left: {leftovers}",
                                  "Write only to `part`; do not make other files.")
    return ExerciseResult(COMMAND, True, "both clips became H.264 .mp4 files, renamed into "
                          "place from their part files.")


async def check_resume_prediction(will_run: Iterable[str] | None) -> ExerciseResult:
    """``will_run`` names the files the second run of exercise 09.2 starts a command for.

    First run, with a journal: a.avi, b.avi, c.avi (fails), d.avi. Then ``e.avi`` is added
    at the *front* of the list, ``b.avi`` is edited, and ``d.mp4`` is deleted.
    """
    if will_run is None:
        return ExerciseResult(RESUME, False, "will_run is None", "Assign a set of file names.")
    if isinstance(will_run, str):
        return ExerciseResult(RESUME, False, f"will_run is one string: {will_run!r}",
                              "Use a set of names, e.g. {'a.avi', 'b.avi'}.")
    try:
        named = {Path(os.fspath(name)).name for name in will_run}
    except TypeError:
        return ExerciseResult(RESUME, False, f"will_run must hold file names, got {will_run!r}",
                              "Use a set of names, e.g. {'a.avi', 'b.avi'}.")
    ran = await _second_run()
    if named == ran:
        return ExerciseResult(RESUME, True, "exactly those run: new, changed, failed and "
                              "missing outputs; a.avi is skipped wherever it sits.")
    hints = []
    unknown = named - set(RESUME_FILES) - {"e.avi"}
    if unknown:
        hints.append(f"there is no {sorted(unknown)[0]} in this exercise")
    if "a.avi" in named:
        hints.append("a.avi is unchanged and a.mp4 is there: the journal skips it (it looks "
                     "items up by path, size and mtime, not by position)")
    if "c.avi" not in named and "c.avi" in ran:
        hints.append("c.avi failed the first time: only an 'ok' record skips an item")
    if "d.avi" not in named and "d.avi" in ran:
        hints.append("d.mp4 was deleted: an ok record counts only while its output exists")
    if "e.avi" not in named and "e.avi" in ran:
        hints.append("e.avi is new: nothing in the journal matches it")
    if "b.avi" not in named and "b.avi" in ran:
        hints.append("b.avi was edited: its size and mtime changed, so it is another item")
    return ExerciseResult(RESUME, False, f"you said {sorted(named)}; that is not what the "
                          "resume runs", "; ".join(hints[:2]) or "Go through the files one by "
                          "one: new? changed? failed? output gone?")


async def _second_run() -> set[str]:
    """Do exercise 09.2 for real; return the names the second run spawned a command for."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        journal = folder / "journal.jsonl"

        def mp4(p: Path) -> Path:
            return folder / "out" / f"{p.stem}.mp4"

        for name in RESUME_FILES:
            (folder / name).write_text("fail" if name == "c.avi" else f"clip {name}")
        await process_files([folder / n for n in RESUME_FILES], fake_transcode,
                            output_for=mp4, journal=journal, workers=2)
        (folder / "e.avi").write_text("clip e.avi")
        (folder / "b.avi").write_text("clip b.avi, edited")
        (folder / "out" / "d.mp4").unlink()
        timeline = Timeline()
        await process_files([folder / n for n in ("e.avi", *RESUME_FILES)], fake_transcode,
                            output_for=mp4, journal=journal, workers=2, timeline=timeline)
        return {span.label for span in timeline.spans}
