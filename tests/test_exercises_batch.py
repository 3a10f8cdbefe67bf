"""The checks of notebook 09 accept right answers and explain wrong ones."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import nothing_left_behind  # noqa: F401

from asyncproc_kit.exercises import check_resume_prediction, check_transcode_command

pytestmark = pytest.mark.anyio


@pytest.fixture
def ffmpeg() -> str:
    imageio_ffmpeg = pytest.importorskip(
        "imageio_ffmpeg", reason="imageio-ffmpeg (the notebooks extra) provides ffmpeg")
    return imageio_ffmpeg.get_ffmpeg_exe()


# -- 09.1 the command callable ---------------------------------------------------------------


async def test_a_transcode_command_written_two_ways_is_accepted(ffmpeg) -> None:
    """Paths or strings, the seed's -codec:v or -c:v, with or without a preset."""

    def short(clip, part):
        return [ffmpeg, "-nostdin", "-y", "-i", clip, "-c:v", "libx264", part]

    def seed_like(clip: Path, part: Path) -> list[str]:
        return [ffmpeg, "-y", "-v", "error", "-i", str(clip), "-codec:v", "libx264",
                "-preset", "ultrafast", str(part)]

    for answer in (short, seed_like):
        result = await check_transcode_command(answer)
        assert result, result
        assert "both clips became H.264" in result.message


async def test_writing_to_the_final_name_is_rejected_with_the_reason(ffmpeg) -> None:
    """The output's own name instead of part: the hint explains the rename."""

    def direct(clip, part):
        final = Path(part).parent / f"{Path(clip).stem}.mp4"
        return [ffmpeg, "-nostdin", "-y", "-i", clip, "-c:v", "libx264", final]

    result = await check_transcode_command(direct)
    assert not result
    assert "never mention the part path" in result.message
    assert "renames part into place" in result.hint


async def test_another_codec_is_rejected_naming_the_option(ffmpeg) -> None:
    """mpeg4 makes a valid file, but not H.264."""

    def mpeg4(clip, part):
        return [ffmpeg, "-nostdin", "-y", "-i", clip, "-c:v", "mpeg4", part]

    result = await check_transcode_command(mpeg4)
    assert not result
    assert "not H.264" in result.message
    assert "'-c:v', 'libx264'" in result.hint


async def test_a_command_ffmpeg_rejects_shows_its_message(ffmpeg) -> None:
    """Forgetting -i: ffmpeg fails, the result quotes its stderr and says where -i goes."""

    def no_input_flag(clip, part):
        return [ffmpeg, "-nostdin", "-y", clip, "-c:v", "libx264", part]

    result = await check_transcode_command(no_input_flag)
    assert not result
    assert "failed" in result.message
    assert "'-i', clip" in result.hint


async def test_a_shell_string_is_rejected(ffmpeg) -> None:
    """No shell splits a string: the hint asks for a list."""
    result = await check_transcode_command(lambda clip, part: f"{ffmpeg} -i {clip} {part}")
    assert not result
    assert "a string" in result.message
    assert "list of arguments" in result.hint


async def test_the_stub_passes_through_and_a_non_function_is_named() -> None:
    """NotImplementedError is the unfinished stub: the cell shows it as it is."""

    def stub(clip, part):
        raise NotImplementedError("return the list of arguments")

    with pytest.raises(NotImplementedError):
        await check_transcode_command(stub)
    result = await check_transcode_command("ffmpeg")
    assert not result
    assert "expected a function" in result.message


# -- 09.2 what a resume runs -----------------------------------------------------------------


@pytest.mark.parametrize("answer", [
    {"e.avi", "b.avi", "c.avi", "d.avi"},
    ["d.avi", "c.avi", "b.avi", "e.avi"],
    (Path("videos/e.avi"), Path("b.avi"), "c.avi", "d.avi"),
])
async def test_the_right_prediction_is_accepted_however_written(answer) -> None:
    """A set, a list, paths with folders: only the names count."""
    result = await check_resume_prediction(answer)
    assert result, result


@pytest.mark.parametrize(("answer", "hint"), [
    ({"a.avi", "b.avi", "c.avi", "d.avi", "e.avi"}, "not by position"),
    ({"e.avi", "b.avi", "d.avi"}, "only an 'ok' record skips"),
    ({"e.avi", "b.avi", "c.avi"}, "d.mp4 was deleted"),
    ({"b.avi", "c.avi", "d.avi"}, "e.avi is new"),
    ({"e.avi", "c.avi", "d.avi"}, "b.avi was edited"),
    ({"e.avi", "d.avi"}, "b.avi was edited"),  # what GNU parallel --resume would run
])
async def test_a_wrong_prediction_gets_the_hint_for_its_mistake(answer, hint) -> None:
    """Each wrong answer names the rule it missed, without giving the answer away."""
    result = await check_resume_prediction(answer)
    assert not result
    assert hint in result.hint
    assert "you said" in result.message


async def test_a_string_or_none_is_not_a_prediction() -> None:
    """One name as a string would be iterated letter by letter."""
    assert "one string" in (await check_resume_prediction("e.avi")).message
    assert "None" in (await check_resume_prediction(None)).message
