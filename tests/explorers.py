"""Helpers for the tests that drive the chapters' explorers (odcourse.widgets) as a student does."""
from __future__ import annotations


def set_controls(explorer, **values) -> None:
    for name, value in values.items():
        explorer.controls[name].value = value  # what a student moving a control does


def shown_statically(monkeypatch, show) -> list:
    """What `show()` displays while the book builds (ODCOURSE_STATIC=1), in order."""
    monkeypatch.setenv("ODCOURSE_STATIC", "1")
    shown = []
    monkeypatch.setattr("odcourse.widgets.display", shown.append)
    show()
    return shown
