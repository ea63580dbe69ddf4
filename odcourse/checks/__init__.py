"""Visible checks: the tests a student runs in the notebook.

Each check calls the student's function on small, visible inputs and prints one line per
finding in words about the concept, e.g. ``pick_device: 3/3 visible checks passed``. When
something is wrong it raises :class:`CheckFailed` (an AssertionError, so nbgrader and pytest
count it as a failure) whose message lists every finding, never a bare assertion.
"""
from __future__ import annotations

import traceback
from typing import Any, Callable


class CheckFailed(AssertionError):
    """Raised by a visible check that found at least one problem."""


class NotImplementedYet(CheckFailed):
    """Raised when the function is still the stub."""


class Report:
    """Collects the findings of one visible check.

    Use it as a context manager::

        with Report("pick_device") as report:
            device = report.call(fn)
            report.expect(isinstance(device, torch.device), "must return a torch.device")
    """

    def __init__(self, name: str):
        self.name = name
        self.total = 0
        self.problems: list[str] = []
        self.notes: list[str] = []
        self.pictures: list[Callable] = []

    def expect(self, ok: bool, problem: str) -> bool:
        """Count one check; remember `problem` (a sentence) when `ok` is false."""
        self.total += 1
        if not ok:
            self.problems.append(problem)
        return bool(ok)

    def note(self, advice: str) -> None:
        """Remember a piece of advice that is not a failure (it costs no point), printed after the
        result of the checks."""
        self.notes.append(advice)

    def illustrate(self, draw: Callable) -> None:
        """Remember `draw() -> Figure`, a picture of the inputs, shown only if the check fails."""
        self.pictures.append(draw)

    def _show_pictures(self) -> None:
        from IPython.display import display
        import matplotlib.pyplot as plt

        for draw in self.pictures:
            try:
                figure = draw()
            except Exception:  # a picture must never hide the findings
                continue
            display(figure)
            plt.close(figure)

    def call(self, fn: Callable, *args: Any, **kwargs: Any) -> Any:
        """Call the student's function; a raised exception becomes a finding and stops the check."""
        try:
            return fn(*args, **kwargs)
        except NotImplementedError:
            raise NotImplementedYet(
                f"{self.name}: not implemented yet (the stub still raises NotImplementedError)."
            ) from None
        except Exception as error:  # the student's bug, reported in words
            where = traceback.extract_tb(error.__traceback__)[-1]
            raise CheckFailed(
                f"{self.name} raised {type(error).__name__}: {error} "
                f"(line {where.lineno} of {where.name}). Fix that first."
            ) from None

    def __enter__(self) -> "Report":
        return self

    def __exit__(self, kind, error, tb) -> bool:
        if kind is not None:
            return False  # CheckFailed from call(), or a bug in the check itself
        if self.problems:
            self._show_pictures()
            lines = [f"{self.name}: {len(self.problems)} of {self.total} visible checks failed:"]
            lines += [f"  - {problem}" for problem in self.problems]
            lines += [f"  note (not a failure): {advice}" for advice in self.notes]
            raise CheckFailed("\n".join(lines))
        print(f"{self.name}: {self.total}/{self.total} visible checks passed")
        for advice in self.notes:
            print(f"  note (not a failure): {advice}")
        return False


__all__ = ["CheckFailed", "NotImplementedYet", "Report"]
