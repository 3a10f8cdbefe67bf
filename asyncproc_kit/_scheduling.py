"""The order in which a pool starts queued work: smaller priority first, FIFO among equals.

The original tutorial's priority heap (seed §3.6) says "high priority first" in a comment,
pops *smaller* numbers first in fact, and breaks ties by popping the *newest* task first, so
a steady stream of equal-priority work can starve the oldest job forever. Here the
convention is stated once and the tie-break is a sequence number, so among equal priorities
the job submitted first starts first::

    queue = JobQueue()
    queue.push("b", priority=1)
    queue.push("a", priority=0)
    queue.push("c", priority=1)
    [queue.pop() for _ in range(len(queue))]    # ['a', 'b', 'c']
"""

from __future__ import annotations

import heapq
import itertools
from typing import Any, Generic, TypeVar

T = TypeVar("T")


def check_priority(priority: Any) -> int:
    """Priorities are plain integers (smaller runs first); anything else is a mistake."""
    if isinstance(priority, bool) or not isinstance(priority, int):
        raise TypeError(
            f"priority must be an int (smaller numbers run first, 0 is the default), "
            f"not {type(priority).__name__} {priority!r}: use round() or int() if you meant it"
        )
    return priority


class JobQueue(Generic[T]):
    """A priority queue with FIFO order among equal priorities (not thread-safe, no waiting).

    Entries are ``(priority, sequence, item)``: the sequence number is unique, so the heap
    never compares two items, and among equal priorities the older entry wins.
    """

    def __init__(self) -> None:
        self._heap: list[tuple[int, int, T]] = []
        self._counter = itertools.count()

    def push(self, item: T, *, priority: int = 0) -> int:
        """Add ``item``; return its sequence number (0, 1, 2, ... in submission order)."""
        seq = next(self._counter)
        heapq.heappush(self._heap, (check_priority(priority), seq, item))
        return seq

    def pop(self) -> T:
        """Remove and return the item with the smallest (priority, sequence)."""
        return heapq.heappop(self._heap)[2]

    def drain(self) -> list[T]:
        """Remove and return every item, in the order they would have been popped."""
        items = [entry[2] for entry in sorted(self._heap)]
        self._heap.clear()
        return items

    def __len__(self) -> int:
        return len(self._heap)

    def __bool__(self) -> bool:
        return bool(self._heap)
