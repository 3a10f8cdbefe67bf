"""cases.batch.process_files: atomic outputs, an identity-keyed journal, halts, retries, limits."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import anyio
import pytest
from helpers import eventually, nothing_left_behind  # noqa: F401

from asyncproc_kit import Progress, Timeline, read_joblog, run
from asyncproc_kit.cases.batch import (
    BatchReport,
    FileResult,
    journal_joblog,
    part_path,
    process_files,
    read_journal,
)
from asyncproc_kit.cases.fake_transcode import FAKE_TRANSCODE, fake_transcode

pytestmark = pytest.mark.anyio


def clips(folder: Path, *contents: str, suffix: str = ".txt") -> list[Path]:
    """One input file per content, named c0.txt, c1.txt, ..."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for number, content in enumerate(contents):
        path = folder / f"c{number}{suffix}"
        path.write_text(content)
        paths.append(path)
    return paths


def to_out(tmp_path: Path):
    return lambda p: tmp_path / "out" / f"{Path(p).stem}.vid"


def leftovers(tmp_path: Path) -> list[str]:
    """Part files anywhere under tmp_path (there must never be any after a call)."""
    return sorted(p.name for p in tmp_path.rglob("*.part*"))


def outputs(tmp_path: Path) -> list[str]:
    folder = tmp_path / "out"
    return sorted(p.name for p in folder.glob("*.vid")) if folder.exists() else []


def statuses(report: BatchReport) -> list[str]:
    return [item.status for item in report]


# -- outputs ---------------------------------------------------------------------------------


async def test_every_input_becomes_a_whole_output_and_no_part_file_is_left(tmp_path) -> None:
    """Outputs are renamed into place, in a folder that did not exist; results in input order."""
    inputs = clips(tmp_path / "in", "a", "b", "c")
    report = await process_files(inputs, fake_transcode, output_for=to_out(tmp_path),
                                 workers=2)
    assert statuses(report) == ["ok", "ok", "ok"]
    assert [item.input for item in report] == inputs
    assert report.ok
    assert report.counts == {"ok": 3, "failed": 0, "timeout": 0, "skipped": 0,
                                           "halted": 0}
    assert outputs(tmp_path) == ["c0.vid", "c1.vid", "c2.vid"]
    assert (tmp_path / "out" / "c1.vid").read_text().count("frame") == 5
    assert leftovers(tmp_path) == []
    first = report.items[0]
    assert isinstance(first, FileResult)
    assert first.attempts == 1
    assert first.returncode == 0
    assert first.duration > 0
    assert "muxing overhead" in first.stderr_tail
    assert len(report) == 3
    assert "3 ok" in str(report)


def test_the_part_file_sits_beside_the_output_and_keeps_its_suffix() -> None:
    """ffmpeg chooses the container from the suffix, so the part keeps it."""
    assert part_path("out/clip.mp4") == Path("out/.clip.part.mp4")
    assert part_path(Path("/a/b.tar.gz")) == Path("/a/.b.tar.part.gz")


async def test_a_failure_loses_nothing_else_and_leaves_no_half_output(tmp_path) -> None:
    """The failing item wrote half its frames to its part file: that file is deleted."""
    inputs = clips(tmp_path / "in", "a", "fail frames=6", "c")
    report = await process_files(inputs, fake_transcode, output_for=to_out(tmp_path))
    assert statuses(report) == ["ok", "failed", "ok"]
    assert not report.ok
    failed = report.items[1]
    assert failed.returncode == 1
    assert "Invalid data found" in failed.stderr_tail
    assert "exit code 1" in failed.reason
    assert outputs(tmp_path) == ["c0.vid", "c2.vid"]
    assert leftovers(tmp_path) == []


async def test_a_timeout_terminates_the_item_and_deletes_its_part(tmp_path) -> None:
    """A hanging command is ended at its per-attempt timeout; the others finish."""
    inputs = clips(tmp_path / "in", "hang frames=4", "b")
    report = await process_files(inputs, fake_transcode, output_for=to_out(tmp_path),
                                 timeout=1.0, grace=0.5)
    assert statuses(report) == ["timeout", "ok"]
    assert "1 s timeout" in report.items[0].reason
    assert report.items[0].returncode is not None
    assert report.items[0].returncode < 0
    assert outputs(tmp_path) == ["c1.vid"]
    assert leftovers(tmp_path) == []


async def test_an_exit_0_that_wrote_nothing_to_part_is_a_failure(tmp_path) -> None:
    """A command that ignores part cannot make an output appear from nowhere."""
    inputs = clips(tmp_path / "in", "a")

    def lazy(source: Path, part: Path) -> list[str]:
        return [sys.executable, "-c", "pass", str(part)]

    report = await process_files(inputs, lazy, output_for=to_out(tmp_path))
    assert statuses(report) == ["failed"]
    assert "wrote nothing to the part path" in report.items[0].reason
    assert outputs(tmp_path) == []


async def test_a_part_file_left_by_a_killed_run_is_removed_first(tmp_path) -> None:
    """ffmpeg would ask "Overwrite? [y/N]" on a stale part; the kit deletes it before."""
    inputs = clips(tmp_path / "in", "a")
    stale = part_path(to_out(tmp_path)(inputs[0]))
    stale.parent.mkdir(parents=True)
    stale.write_text("half a video")
    refuse = [sys.executable, "-c",
              "import os, sys; p = sys.argv[2]; "
              "sys.exit(3) if os.path.exists(p) else open(p, 'w').write('new')"]
    report = await process_files(inputs, lambda s, p: [*refuse, s, p],
                                 output_for=to_out(tmp_path))
    assert statuses(report) == ["ok"]
    assert (tmp_path / "out" / "c0.vid").read_text() == "new"


async def test_a_missing_input_fails_alone_and_spawns_nothing(tmp_path) -> None:
    """The reason names the file; the other items run."""
    inputs = clips(tmp_path / "in", "a")
    ghost = tmp_path / "in" / "ghost.txt"
    timeline = Timeline()
    report = await process_files([ghost, *inputs], fake_transcode,
                                 output_for=to_out(tmp_path), timeline=timeline)
    assert statuses(report) == ["failed", "ok"]
    assert "ghost.txt" in report.items[0].reason
    assert "does not exist" in report.items[0].reason
    assert report.items[0].attempts == 0
    assert len(timeline) == 1  # only the real input ran


async def test_real_outputs_appear_only_after_the_command_finished(tmp_path) -> None:
    """While a slow item is writing, its part exists and its output does not."""
    inputs = clips(tmp_path / "in", "frames=10 sleep=0.2")
    output = to_out(tmp_path)(inputs[0])
    part = part_path(output)
    seen: list[tuple[bool, bool]] = []

    async def watch() -> None:
        await eventually(lambda: part.exists() and part.stat().st_size > 0)
        seen.append((part.exists(), output.exists()))

    async with anyio.create_task_group() as tg:
        tg.start_soon(watch)
        report = await process_files(inputs, fake_transcode, output_for=lambda p: output)
    assert seen == [(True, False)]
    assert statuses(report) == ["ok"]
    assert output.exists()
    assert not part.exists()


# -- cancellation ----------------------------------------------------------------------------


async def test_cancellation_deletes_parts_keeps_finished_items_and_resumes_the_rest(
        tmp_path) -> None:
    """Cancelled mid-batch: finished items are journaled, a re-run runs exactly the rest."""
    inputs = clips(tmp_path / "in", "a", "b", "frames=50 sleep=0.1", "frames=50 sleep=0.1",
                   "e")
    journal = tmp_path / "journal.jsonl"
    out = to_out(tmp_path)
    with anyio.move_on_after(20) as scope:
        async with anyio.create_task_group() as tg:

            async def cancel_when_slow_ones_write() -> None:
                await eventually(lambda: all(part_path(out(p)).exists() for p in inputs[2:4]))
                tg.cancel_scope.cancel()

            tg.start_soon(cancel_when_slow_ones_write)
            await process_files(inputs, fake_transcode, output_for=out, journal=journal,
                                workers=2)
            pytest.fail("process_files returned although it was cancelled")
    assert not scope.cancelled_caught
    assert leftovers(tmp_path) == []
    assert outputs(tmp_path) == ["c0.vid", "c1.vid"]
    assert sorted(Path(r.input).name for r in read_journal(journal)) == ["c0.txt", "c1.txt"]
    for path in inputs[2:4]:  # make the re-run quick
        os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns))
    timeline = Timeline()
    report = await process_files(inputs, fake_transcode, output_for=out, journal=journal,
                                 workers=2, timeline=timeline)
    assert statuses(report) == ["skipped", "skipped", "ok", "ok", "ok"]
    assert sorted(span.label for span in timeline.spans) == ["c2.txt", "c3.txt", "c4.txt"]
    assert outputs(tmp_path) == [f"c{i}.vid" for i in range(5)]


# -- the journal -----------------------------------------------------------------------------


async def journaled_run(tmp_path: Path, inputs: list[Path],
                        **kwargs) -> tuple[BatchReport, list[str]]:
    """Run with the journal; return the report and the labels of what was spawned."""
    timeline = Timeline()
    report = await process_files(inputs, fake_transcode, output_for=to_out(tmp_path),
                                 journal=tmp_path / "journal.jsonl", timeline=timeline, **kwargs)
    return report, sorted(span.label for span in timeline.spans)


async def test_reordering_inputs_reruns_nothing(tmp_path) -> None:
    """The journal is keyed by identity: a reversed list is all skipped, nothing spawned."""
    inputs = clips(tmp_path / "in", "a", "b", "c")
    first, ran = await journaled_run(tmp_path, inputs)
    assert statuses(first) == ["ok"] * 3
    assert ran == ["c0.txt", "c1.txt", "c2.txt"]
    again, ran = await journaled_run(tmp_path, inputs[::-1])
    assert statuses(again) == ["skipped"] * 3
    assert ran == []
    assert [item.input for item in again] == inputs[::-1]
    assert again.ok


async def test_prepending_an_input_runs_only_the_new_one(tmp_path) -> None:
    """GNU parallel --resume would skip the new first job and re-run the old last one."""
    inputs = clips(tmp_path / "in", "a", "b", "c")
    await journaled_run(tmp_path, inputs)
    new = tmp_path / "in" / "new.txt"
    new.write_text("new")
    report, ran = await journaled_run(tmp_path, [new, *inputs])
    assert statuses(report) == ["ok", "skipped", "skipped", "skipped"]
    assert ran == ["new.txt"]


async def test_touching_an_input_or_deleting_an_output_reruns_just_that_item(tmp_path) -> None:
    """A changed mtime_ns or size is a new item; a missing output is redone."""
    inputs = clips(tmp_path / "in", "a", "b", "c")
    await journaled_run(tmp_path, inputs)
    stat = inputs[0].stat()
    os.utime(inputs[0], ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    (tmp_path / "out" / "c2.vid").unlink()
    report, ran = await journaled_run(tmp_path, inputs)
    assert statuses(report) == ["ok", "skipped", "ok"]
    assert ran == ["c0.txt", "c2.txt"]
    inputs[1].write_text("b, longer now")
    report, ran = await journaled_run(tmp_path, inputs)
    assert ran == ["c1.txt"]


async def test_another_command_or_output_is_another_item(tmp_path) -> None:
    """Changing the arguments or the output re-runs everything; the same ones skip."""
    inputs = clips(tmp_path / "in", "a", "b")
    await journaled_run(tmp_path, inputs)
    report, ran = await journaled_run(tmp_path, inputs)
    assert statuses(report) == ["skipped", "skipped"]
    assert ran == []

    def with_utf8_mode(source: Path, part: Path) -> list[str]:
        return [sys.executable, "-X", "utf8", FAKE_TRANSCODE[1], str(source), str(part)]

    report = await process_files(inputs, with_utf8_mode, output_for=to_out(tmp_path),
                                 journal=tmp_path / "journal.jsonl")
    assert statuses(report) == ["ok", "ok"]
    report = await process_files(inputs, with_utf8_mode,
                                 output_for=lambda p: tmp_path / "out" / f"{p.stem}.v2.vid",
                                 journal=tmp_path / "journal.jsonl")
    assert statuses(report) == ["ok", "ok"]


async def test_failed_items_are_journaled_and_run_again(tmp_path) -> None:
    """Only an ok record skips; a failure is recorded (for the joblog) and retried next run."""
    inputs = clips(tmp_path / "in", "fail", "b")
    await journaled_run(tmp_path, inputs)
    records = read_journal(tmp_path / "journal.jsonl")
    assert sorted((Path(r.input).name, r.status) for r in records) == [
        ("c0.txt", "failed"), ("c1.txt", "ok")]
    assert all("{part}" in r.argv for r in records)
    report, ran = await journaled_run(tmp_path, inputs)
    assert statuses(report) == ["failed", "skipped"]
    assert ran == ["c0.txt"]


async def test_a_journal_line_cut_short_is_ignored_and_not_glued_to(tmp_path) -> None:
    """A crash mid-append leaves half a line: that item runs again, the next record is whole."""
    inputs = clips(tmp_path / "in", "a", "b")
    await journaled_run(tmp_path, inputs)
    journal = tmp_path / "journal.jsonl"
    lines = journal.read_text().splitlines()
    journal.write_text(lines[0] + "\n" + lines[1][: len(lines[1]) // 2])
    _report, ran = await journaled_run(tmp_path, inputs)
    assert len(ran) == 1
    assert len(read_journal(journal)) == 2
    for line in journal.read_text().splitlines()[2:]:
        json.loads(line)


async def test_a_file_that_is_not_a_journal_is_refused_before_anything_runs(tmp_path) -> None:
    """Never append records to someone's video: the error names the file and the line."""
    inputs = clips(tmp_path / "in", "a")
    wrong = tmp_path / "notes.txt"
    wrong.write_text("my notes\nmore notes\n")
    with pytest.raises(ValueError, match=r"notes\.txt.*line 1 is not a process_files record"):
        await process_files(inputs, fake_transcode, output_for=to_out(tmp_path), journal=wrong)
    assert wrong.read_text() == "my notes\nmore notes\n"
    assert outputs(tmp_path) == []
    broken = tmp_path / "broken.jsonl"
    for bad, why in [('{"v": 1}', "the field 'input' is missing"),
                     ('{"v": 1, "input": 3, "size": 1, "mtime_ns": 1, "output": "o", '
                      '"argv": [], "status": "ok", "returncode": 0, "attempts": 1, '
                      '"started": 0, "duration": NaN}', "wrong type or value"),
                     ("[1, 2]", "not a version-1 journal record")]:
        broken.write_text(bad + "\n" + bad + "\n")
        with pytest.raises(ValueError, match=rf"line 1 .*{re.escape(why)}"):
            read_journal(broken)
    with pytest.raises(ValueError, match="is a folder"):
        await process_files(inputs, fake_transcode, output_for=to_out(tmp_path),
                            journal=tmp_path)


async def test_the_journal_exports_as_a_gnu_parallel_joblog(tmp_path) -> None:
    """Every record becomes one joblog line that the kit's reader parses."""
    inputs = clips(tmp_path / "in", "a", "fail")
    report, _ = await journaled_run(tmp_path, inputs)
    entries = read_joblog(journal_joblog(tmp_path / "journal.jsonl"))
    assert sorted(e.exitval for e in entries) == [0, 1]
    assert all("{part}" in e.command for e in entries)
    assert len(read_joblog(report.joblog())) == 2


# -- retries and halting ---------------------------------------------------------------------


async def test_retries_rerun_a_failure_until_it_succeeds(tmp_path) -> None:
    """flaky=2 fails twice: retries=2 makes it ok on attempt 3; retries=1 gives up after 2."""
    inputs = clips(tmp_path / "in", "flaky=2")
    report = await process_files(inputs, fake_transcode, output_for=to_out(tmp_path),
                                 retries=2)
    assert statuses(report) == ["ok"]
    assert report.items[0].attempts == 3
    assert "after 3 attempts" in report.items[0].reason
    other = clips(tmp_path / "in2", "flaky=2")
    report = await process_files(other, fake_transcode, output_for=to_out(tmp_path / "x"),
                                 retries=1)
    assert statuses(report) == ["failed"]
    assert report.items[0].attempts == 2
    assert leftovers(tmp_path) == []


async def test_a_timeout_is_retried_too(tmp_path) -> None:
    """Each attempt has its own timeout; attempts counts them."""
    inputs = clips(tmp_path / "in", "hang")
    report = await process_files(inputs, fake_transcode, output_for=to_out(tmp_path),
                                 timeout=0.5, grace=0.2, retries=1)
    assert statuses(report) == ["timeout"]
    assert report.items[0].attempts == 2
    assert leftovers(tmp_path) == []


async def test_a_missing_program_is_never_retried(tmp_path) -> None:
    """SpawnError would fail the same way every time: one attempt, whatever retries says."""
    inputs = clips(tmp_path / "in", "a", "b")
    timeline = Timeline()
    report = await process_files(inputs, lambda s, p: ["no-such-transcoder-09", s, p],
                                 output_for=to_out(tmp_path), retries=3, timeline=timeline)
    assert statuses(report) == ["failed", "failed"]
    assert [item.attempts for item in report] == [1, 1]
    assert len(timeline) == 2
    assert "could not start" in report.items[0].reason
    assert "not retried" in report.items[0].reason


async def test_halt_first_terminates_running_items_and_marks_the_rest(tmp_path) -> None:
    """The running hang is terminated (halted, "terminated"); queued ones never start."""
    inputs = clips(tmp_path / "in", "hang frames=2", "frames=2 sleep=0.3 fail", "a", "b")
    report = await process_files(inputs, fake_transcode, output_for=to_out(tmp_path),
                                 workers=2, halt="first", grace=0.5)
    assert statuses(report) == ["halted", "failed", "halted", "halted"]
    assert "terminated while running" in report.items[0].reason
    assert "c1.txt failed and halt='first'" in report.items[0].reason
    assert "never started" in report.items[2].reason
    assert report.halt_reason == "c1.txt failed and halt='first'"
    assert outputs(tmp_path) == []
    assert leftovers(tmp_path) == []
    assert not report.ok


async def test_halt_at_a_share_of_all_items(tmp_path) -> None:
    """halt='20%' of 10 items: the second failure stops the batch, not the first."""
    inputs = clips(tmp_path / "in", "a", "fail", "b", "fail", *"cdefgh")
    report = await process_files(inputs, fake_transcode, output_for=to_out(tmp_path),
                                 workers=1, halt="20%")
    got = statuses(report)
    assert got[:4] == ["ok", "failed", "ok", "failed"]
    assert set(got[4:]) == {"halted"}
    assert "2 of 10 items failed" in report.items[9].reason
    assert leftovers(tmp_path) == []


async def test_halt_never_runs_everything(tmp_path) -> None:
    """The default: every failure is kept, nothing is halted."""
    inputs = clips(tmp_path / "in", "fail", "fail", "a")
    report = await process_files(inputs, fake_transcode, output_for=to_out(tmp_path))
    assert statuses(report) == ["failed", "failed", "ok"]


# -- limits ----------------------------------------------------------------------------------


async def test_at_most_workers_run_and_they_start_in_input_order(tmp_path) -> None:
    """The pool's timeline shows the cap and the order."""
    inputs = clips(tmp_path / "in", *["frames=3 sleep=0.05"] * 6)
    timeline = Timeline()
    report = await process_files(inputs, fake_transcode, output_for=to_out(tmp_path),
                                 workers=2, timeline=timeline)
    assert report.ok
    assert timeline.peak_concurrency() <= 2
    started = sorted(timeline.spans, key=lambda s: s.started)
    assert [s.label for s in started] == [p.name for p in inputs]


# -- progress --------------------------------------------------------------------------------


async def test_progress_off_a_terminal_is_one_line_per_item(tmp_path, capsys) -> None:
    """In a CI log (stderr not a tty): plain lines, never a carriage return."""
    inputs = clips(tmp_path / "in", "a", "fail", "c")
    await process_files(inputs, fake_transcode, output_for=to_out(tmp_path), progress=True)
    err = capsys.readouterr().err
    assert "\r" not in err
    lines = err.splitlines()
    assert len(lines) == 3
    assert sorted(line.split()[1] for line in lines) == ["failed", "ok", "ok"]


async def test_a_progress_of_your_own_keeps_the_counts(tmp_path) -> None:
    """Skipped items count as done; failures as failed."""
    inputs = clips(tmp_path / "in", "a", "fail")
    progress = Progress(bar=False)
    await process_files(inputs, fake_transcode, output_for=to_out(tmp_path), progress=progress)
    assert (progress.done, progress.failed, progress.running, progress.total) == (1, 1, 0, 2)


async def test_on_result_sees_each_item_as_it_finishes_and_can_interrupt(tmp_path) -> None:
    """A callback that cancels after the first result stops the batch like an interrupt."""
    inputs = clips(tmp_path / "in", "a", "frames=50 sleep=0.1", "c")
    seen: list[str] = []
    with anyio.CancelScope() as scope:

        def first_only(result: FileResult) -> None:
            seen.append(result.status)
            scope.cancel()

        await process_files(inputs, fake_transcode, output_for=to_out(tmp_path), workers=1,
                            on_result=first_only)
    assert scope.cancelled_caught
    assert seen == ["ok"]
    assert outputs(tmp_path) == ["c0.vid"]
    assert leftovers(tmp_path) == []


async def test_an_error_in_on_result_ends_the_batch_cleanly(tmp_path) -> None:
    """The callback's own bug stops the batch; running commands end, no part survives."""
    inputs = clips(tmp_path / "in", "a", "frames=50 sleep=0.1", "frames=50 sleep=0.1")

    def broken(result: FileResult) -> None:
        raise RuntimeError("bug in the callback")

    with pytest.raises(ExceptionGroup) as caught:
        await process_files(inputs, fake_transcode, output_for=to_out(tmp_path), workers=3,
                            on_result=broken)
    assert caught.group_contains(RuntimeError, match="bug in the callback")
    assert leftovers(tmp_path) == []


# -- bad arguments ---------------------------------------------------------------------------


@pytest.mark.parametrize(("kwargs", "error", "match"), [
    ({"workers": 0}, ValueError, "workers=0"),
    ({"workers": "4"}, TypeError, "workers must be a whole number"),
    ({"halt": "sometimes"}, ValueError, "halt='sometimes' is not a halt policy"),
    ({"halt": "0%"}, ValueError, "not a halt policy"),
    ({"halt": "150%"}, ValueError, "not a halt policy"),
    ({"retries": -1}, ValueError, "retries must be"),
    ({"timeout": 0}, ValueError, "timeout must be"),
    ({"progress": "yes"}, TypeError, "progress must be"),
    ({"on_result": "print"}, TypeError, "on_result must be a function"),
    ({"command": "ffmpeg -i in out"}, TypeError, "command must be a function"),
    ({"command": lambda s, p: f"cat {s} > {p}"}, TypeError, "non-empty list"),
    ({"command": lambda s, p: ["cp", s, "elsewhere.vid"]}, ValueError, "never mentions the part"),
    ({"output_for": lambda p: "same.vid"}, ValueError, "would both write"),
    ({"output_for": lambda p: p}, ValueError, "the input itself"),
])
async def test_bad_arguments_raise_before_anything_starts(tmp_path, kwargs, error,
                                                          match) -> None:
    """Each names the argument and the fix; no output folder, no child, no part file."""
    inputs = clips(tmp_path / "in", "a", "b")
    options = {"command": fake_transcode, "output_for": to_out(tmp_path), **kwargs}
    command = options.pop("command")
    timeline = Timeline()
    with pytest.raises(error, match=match):
        await process_files(inputs, command, timeline=timeline, **options)
    assert len(timeline) == 0
    assert outputs(tmp_path) == []
    assert leftovers(tmp_path) == []


async def test_one_path_is_not_a_list_of_inputs(tmp_path) -> None:
    """A str would be iterated letter by letter: refused with the fix."""
    with pytest.raises(TypeError, match=r"wrap it in a list"):
        await process_files(str(tmp_path / "a.txt"), fake_transcode)


# -- the real thing --------------------------------------------------------------------------


def ffmpeg() -> str:
    imageio_ffmpeg = pytest.importorskip(
        "imageio_ffmpeg", reason="imageio-ffmpeg (the notebooks extra) provides ffmpeg")
    return imageio_ffmpeg.get_ffmpeg_exe()


async def test_real_ffmpeg_converts_clips_and_a_broken_one_fails_cleanly(tmp_path) -> None:
    """Two generated .avi clips become .mp4 (the part keeps the suffix ffmpeg needs)."""
    exe = ffmpeg()
    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("a", "b"):
        await run([exe, "-v", "error", "-f", "lavfi", "-i",
                   "testsrc=duration=0.5:size=64x48:rate=10", "-c:v", "mpeg4",
                   str(folder / f"{name}.avi")])
    (folder / "broken.avi").write_text("not a video")

    def transcode(clip: Path, part: Path) -> list[str]:
        return [exe, "-nostdin", "-y", "-v", "error", "-i", clip, "-c:v", "libx264",
                "-preset", "ultrafast", part]

    inputs = sorted(folder.glob("*.avi"))
    report = await process_files(inputs, transcode,
                                 output_for=lambda p: tmp_path / "out" / f"{p.stem}.mp4",
                                 workers=2)
    assert statuses(report) == ["ok", "ok", "failed"]
    assert "Invalid data" in report.items[2].stderr_tail
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.mp4", "b.mp4"]
    probe = await run([exe, "-v", "error", "-i", str(tmp_path / "out" / "a.mp4"),
                       "-f", "null", "-"], check=False)
    assert probe.returncode == 0, probe.stderr


def test_fake_transcode_runs_as_a_module_too(tmp_path) -> None:
    """``python -m asyncproc_kit.cases.fake_transcode IN OUT`` as the issue promises."""
    source = tmp_path / "in.txt"
    source.write_text("frames=2")
    done = subprocess.run([sys.executable, "-m", "asyncproc_kit.cases.fake_transcode",
                           str(source), str(tmp_path / "out.vid")], capture_output=True,
                          text=True, check=False, env={**os.environ, "PYTHONPATH": str(
                              Path(__file__).resolve().parents[1])})
    assert done.returncode == 0, done.stderr
    assert "frame=    2" in done.stderr
    assert len((tmp_path / "out.vid").read_text().splitlines()) == 2
