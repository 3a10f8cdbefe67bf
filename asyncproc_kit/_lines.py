"""Splitting a byte stream into lines: exact, bounded, and fast.

``asyncio``'s ``readline`` raises on a line over 64 KiB; anyio's ``receive_until`` also
raises, and loses a last line without a newline. This splitter decodes whole chunks at once
(an incremental decoder keeps a UTF-8 character cut between two reads intact), splits them
with ``str.split`` in C, and keeps only the unfinished tail. A line longer than ``limit``
comes out in pieces marked ``split=True``; nothing is dropped and memory stays bounded.

In text mode ``\r\n`` ends a line like ``\n`` (the line has no ``\r``), as in
``subprocess``'s text mode; a lone ``\r`` (a progress bar redrawing) is kept. Bytes are exact.
"""

from __future__ import annotations

import codecs


class LineSplitter:
    """Feed it chunks, get complete lines back; ``finish()`` returns the unterminated tail.

    ``feed`` and ``finish`` return ``(lines, flags)``: ``flags`` is ``None`` when every line is
    whole (the fast, common case), else a list of booleans, ``True`` for a piece that the next
    piece continues.
    """

    def __init__(self, *, limit: int = 65536, text: bool = True, encoding: str = "utf-8",
                 errors: str = "replace") -> None:
        if isinstance(limit, bool) or not isinstance(limit, int):
            raise TypeError("limit must be an int (characters per line), "
                            f"not {type(limit).__name__}")
        if limit < 1:
            raise ValueError(f"limit must be at least 1, not {limit}")
        self.limit = limit
        self._decoder = codecs.getincrementaldecoder(encoding)(errors) if text else None
        self._newline: str | bytes = "\n" if text else b"\n"
        self._pending: str | bytes = "" if text else b""

    def feed(self, chunk: bytes) -> tuple[list, list[bool] | None]:
        data = self._decoder.decode(chunk) if self._decoder is not None else chunk
        if not data:
            return [], None
        if self._pending:
            data = self._pending + data
        if self._decoder is not None and "\r\n" in data:  # type: ignore[operator]
            data = data.replace("\r\n", "\n")  # type: ignore[arg-type]  # a CRLF line end
        lines = data.split(self._newline)  # type: ignore[arg-type]
        self._pending = lines.pop()
        if len(data) <= self.limit or self._fits(data):
            return lines, None
        return self._cut(lines, keep_tail=True)

    def _fits(self, data: str | bytes) -> bool:
        """True if no line in ``data`` (nor its unfinished tail) is longer than the limit.

        Jumps from newline to newline at most ``limit`` characters apart with ``rfind``, so a
        64 KiB chunk costs a couple of C scans instead of one ``len`` per line.
        """
        limit, newline, start, end = self.limit, self._newline, 0, len(data)
        while end - start > limit:
            found = data.rfind(newline, start, start + limit + 1)  # type: ignore[arg-type]
            if found < 0:
                return False
            start = found + 1
        return True

    def finish(self) -> tuple[list, list[bool] | None]:
        tail = self._decoder.decode(b"", final=True) if self._decoder is not None else b""
        rest = self._pending + tail  # type: ignore[operator]
        self._pending = rest[:0]
        if not rest:
            return [], None
        if len(rest) <= self.limit:
            return [rest], None
        return self._cut([rest], keep_tail=False)

    def _cut(self, lines: list, keep_tail: bool) -> tuple[list, list[bool] | None]:
        limit = self.limit
        out: list = []
        flags: list[bool] = []
        for line in lines:
            while len(line) > limit:
                out.append(line[:limit])
                flags.append(True)
                line = line[limit:]
            out.append(line)
            flags.append(False)
        if keep_tail:
            pending = self._pending
            while len(pending) > limit:  # a line still growing: hand out what we have
                out.append(pending[:limit])
                flags.append(True)
                pending = pending[limit:]
            self._pending = pending
        return out, (flags if any(flags) else None)
