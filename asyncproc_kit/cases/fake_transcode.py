"""A stand-in for ffmpeg: ``python -m asyncproc_kit.cases.fake_transcode IN OUT``.

It "transcodes" a small text file: it writes ``OUT`` a frame at a time (so a half-written
output really exists while it runs) and prints ffmpeg-like status lines on stderr::

    frame=    3 fps=0.0 q=28.0 size=       0kB time=00:00:00.30 bitrate=N/A speed=1.0x

It is deterministic, and the *content* of ``IN`` decides what happens, so a test or a demo
makes a failing or a hanging file just by writing it:

- ``frames=N``: how many frames to write (default 5); ``sleep=S``: seconds per frame
  (default 0);
- ``fail``: write half the frames, then print ffmpeg's "Invalid data found when processing
  input" and exit 1;
- ``hang``: write half the frames, then sleep for an hour (only a timeout ends it);
- ``flaky=N``: fail the first N runs, then succeed (runs are counted in ``IN.runs``).

Like ffmpeg it refuses a missing input (exit 1, "No such file or directory") and writes the
output only where it is told. The file imports nothing from the kit, so running it by path
(``FAKE_TRANSCODE``) starts as fast as Python can.
"""

from __future__ import annotations

import re
import sys
import time
from pathlib import Path

FAKE_TRANSCODE = [sys.executable, str(Path(__file__).resolve())]
"""The fake as a command prefix: ``[*FAKE_TRANSCODE, input, output]``."""


def fake_transcode(source: str | Path, part: str | Path) -> list[str]:
    """A ``command`` for ``process_files``: the fake transcoder from ``source`` to ``part``."""
    return [*FAKE_TRANSCODE, str(source), str(part)]


def _setting(text: str, name: str, default: float) -> float:
    found = re.search(rf"\b{name}=([0-9.]+)", text)
    return float(found.group(1)) if found else default


def _status(frame: int, size: int) -> str:
    seconds = frame / 10
    return (f"frame={frame:5d} fps=0.0 q=28.0 size={size // 1024:8d}kB "
            f"time=00:00:{seconds:05.2f} bitrate=N/A speed=1.0x")


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: fake_transcode IN OUT", file=sys.stderr)
        return 2
    source, target = Path(argv[0]), Path(argv[1])
    try:
        text = source.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        print(f"{source}: {exc.strerror}", file=sys.stderr)
        return 1
    frames = int(_setting(text, "frames", 5))
    delay = _setting(text, "sleep", 0.0)
    failing = re.search(r"\bfail\b", text) is not None
    hanging = re.search(r"\bhang\b", text) is not None
    flaky = int(_setting(text, "flaky", 0))
    if flaky:
        counter = source.with_name(source.name + ".runs")
        runs = int(counter.read_text()) if counter.exists() else 0
        counter.write_text(str(runs + 1))
        failing = runs < flaky
    print(f"Input #0, fake, from '{source}':", file=sys.stderr)
    print(f"Output #0, fake, to '{target}':", file=sys.stderr, flush=True)
    stop = frames // 2 if (failing or hanging) else frames
    size = 0
    with open(target, "w", encoding="utf-8") as out:
        for frame in range(1, stop + 1):
            line = f"frame {frame} of {source.name}: {text.strip()[:40]}\n"
            out.write(line)
            out.flush()
            size += len(line)
            sys.stderr.write(_status(frame, size) + "\r")
            sys.stderr.flush()
            if delay:
                time.sleep(delay)
        if hanging:
            sys.stderr.write("\n")
            sys.stderr.flush()
            time.sleep(3600)
        if failing:
            print(f"\n{source}: Invalid data found when processing input", file=sys.stderr)
            return 1
    print(f"\nvideo:{size // 1024}kB audio:0kB muxing overhead: 0.000000%", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
