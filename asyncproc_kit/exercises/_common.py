"""What every check returns, so tests can assert on it and notebooks can display it."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ExerciseResult:
    """The verdict of a check: ``passed``, a one-line ``message`` and, when wrong, a ``hint``."""

    exercise: str
    passed: bool
    message: str
    hint: str = ""

    def __str__(self) -> str:
        if self.passed:
            return f"✅ {self.exercise}: {self.message}"
        text = f"❌ {self.exercise}: {self.message}"
        return f"{text}\n   Hint: {self.hint}" if self.hint else text

    def _repr_pretty_(self, printer, cycle) -> None:  # IPython shows str(), not the dataclass
        printer.text(str(self))

    def __bool__(self) -> bool:
        return self.passed
