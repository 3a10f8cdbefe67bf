"""Progress for long batches: how many are done, how many failed, how many run right now.

Pass ``progress=True`` to :func:`map_limited` or :class:`ProcessPool` for a bar that suits
where you are (a widget in Jupyter, a text line in a terminal; drawn by ``tqdm``), or make
one yourself to choose where it goes and read the counts afterwards::

    progress = Progress(description="thumbnails")
    results = await map_limited(commands, limit=8, progress=progress)
    print(progress)     # thumbnails: 98 done, 2 failed, 0 running (of 100)

Without tqdm installed (it comes with the ``notebooks`` extra) the counts still work; only
the bar is missing.
"""

from __future__ import annotations

from typing import IO, Any


class Progress:
    """Counts of a batch (``done``, ``failed``, ``running``, ``total``), shown as a bar.

    ``done`` counts commands that succeeded, ``failed`` those that ended with an error
    (non-zero exit, spawn error, timeout, cancelled); the bar advances on both.
    ``total`` may be ``None`` and grow as work is added (a pool does that on each submit).

    ``bar=False`` keeps only the counts; ``file=`` sends a text bar to a stream (e.g.
    ``sys.stderr``) even inside Jupyter. Use it as a context manager, or call
    :meth:`close`, so the bar shows its final state.
    """

    def __init__(self, total: int | None = None, *, description: str = "processes",
                 bar: bool = True, file: IO[str] | None = None, leave: bool = True):
        if total is not None and (isinstance(total, bool) or not isinstance(total, int)
                                  or total < 0):
            raise ValueError(f"total must be a whole number of commands or None, not {total!r}")
        self.total = total
        self.description = description
        self.done = 0
        self.failed = 0
        self.running = 0
        self._bar: Any = _make_bar(total, description, file, leave) if bar else None

    @property
    def finished(self) -> int:
        """Commands that ended either way (``done + failed``)."""
        return self.done + self.failed

    def add(self, count: int = 1) -> None:
        """``count`` more commands belong to the batch (the total grows)."""
        self.total = (self.total or 0) + count
        if self._bar is not None:
            self._bar.total = self.total
            self._refresh()

    def started(self) -> None:
        """One command started running."""
        self.running += 1
        self._refresh()

    def ended(self, ok: bool, *, ran: bool = True) -> None:
        """One command ended, successfully (``ok``) or not; ``ran=False`` for one that never
        started (it was still queued when its batch was cancelled)."""
        if ran:
            self.running = max(0, self.running - 1)
        if ok:
            self.done += 1
        else:
            self.failed += 1
        if self._bar is not None:
            self._bar.set_postfix_str(self._postfix(), refresh=False)
            self._bar.update(1)

    def _refresh(self) -> None:
        if self._bar is not None:
            self._bar.set_postfix_str(self._postfix(), refresh=False)

    def _postfix(self) -> str:
        return f"done={self.done} failed={self.failed} running={self.running}"

    def close(self) -> None:
        """Draw the final state and stop updating the bar."""
        if self._bar is not None:
            self._bar.set_postfix_str(self._postfix(), refresh=False)
            self._bar.close()
            self._bar = None

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __str__(self) -> str:
        of = f" (of {self.total})" if self.total is not None else ""
        return (f"{self.description}: {self.done} done, {self.failed} failed, "
                f"{self.running} running{of}")

    def __repr__(self) -> str:
        return (f"<Progress {self.description!r} done={self.done} failed={self.failed} "
                f"running={self.running} total={self.total}>")


def _make_bar(total: int | None, description: str, file: IO[str] | None, leave: bool) -> Any:
    try:
        if file is None:
            from tqdm.auto import tqdm
        else:
            from tqdm import tqdm
    except ImportError:  # the counts still work without the notebooks extra
        return None
    return tqdm(total=total, desc=description, unit="proc", file=file, leave=leave,
                mininterval=0.2)


def check_progress(progress: object) -> None:
    """``progress=`` must be True, False, None or a :class:`Progress`."""
    if progress is not None and not isinstance(progress, bool | Progress):
        raise TypeError(f"progress must be True, False, None or a Progress, not {progress!r}")


def make_progress(progress: Progress | bool | None, total: int | None,
                  description: str) -> tuple[Progress | None, bool]:
    """``progress=`` as the helpers accept it -> (the Progress, whether we must close it).

    A Progress made by the caller without a total gets ``total`` added; one with a total
    is trusted as it is.
    """
    if progress is None or progress is False:
        return None, False
    if progress is True:
        return Progress(total, description=description), True
    if isinstance(progress, Progress):
        if progress.total is None and total is not None:
            progress.add(total)
        return progress, False
    raise TypeError(f"progress must be True, False, None or a Progress, not {progress!r}")
