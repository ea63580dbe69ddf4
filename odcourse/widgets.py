"""Explorers: a matplotlib figure driven by ipywidgets controls.

In Jupyter and Colab an explorer shows its controls and redraws when one changes. While the
book is built (``ODCOURSE_STATIC=1``) it shows the figure for its current values only, so the
site needs no kernel and no widget JavaScript from the network. Tests drive an explorer by
setting ``explorer.controls[name].value`` and reading ``explorer.figure``.
"""
from __future__ import annotations

from typing import Any

import ipywidgets as widgets
from IPython.display import display
from matplotlib.figure import Figure

from .runtime import static_figures


class Explorer:
    """Base class: subclasses build ``controls`` and implement :meth:`draw`."""

    def __init__(self, controls: dict[str, widgets.ValueWidget]):
        self.controls = controls
        self.output = widgets.Output()
        self.figure: Figure | None = None
        for control in controls.values():
            control.observe(self._changed, names="value")

    def values(self) -> dict[str, Any]:
        """The controls' current values by name."""
        return {name: control.value for name, control in self.controls.items()}

    def draw(self, **values: Any) -> Figure:
        """Return a new figure for these control values."""
        raise NotImplementedError

    def redraw(self) -> Figure:
        """Draw for the current values into the output area; return the figure."""
        self.figure = self.draw(**self.values())
        self.output.clear_output(wait=True)
        with self.output:
            display(self.figure)
        return self.figure

    def _changed(self, change: dict) -> None:
        self.redraw()

    def show(self) -> None:
        """Display the explorer (live controls), or its static figure while the book builds."""
        if static_figures():
            self.figure = self.draw(**self.values())
            display(self.figure)
            return
        display(widgets.VBox([widgets.HBox(list(self.controls.values())), self.output]))
        self.redraw()
