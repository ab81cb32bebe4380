"""Plotting libraries' figures as logged values: which values are figures, and matplotlib's pixels.

A matplotlib figure (or the ``matplotlib.pyplot`` module, meaning its current figure) becomes an
image, as W&B records one when Plotly isn't installed. It is rendered on the caller's thread:
matplotlib figures are not thread-safe (the training code may change or close the figure as soon
as ``log()`` returns), so the one safe step is to draw the canvas and copy its RGBA buffer there,
the cheapest thing that takes a snapshot; encoding and storing happen on the media worker, as for
any ``tracklet.Image``.

Nothing here imports matplotlib or plotly: a value can only be one of their figures if the user's
code imported the library, so ``sys.modules`` says whether to look.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from types import ModuleType
from typing import Any

from tracklet.core.modules import loaded


def is_matplotlib(value: Any) -> bool:
    """``value`` is a matplotlib ``Figure`` or the ``matplotlib.pyplot`` module."""
    if "matplotlib" not in sys.modules:
        return False
    if value is loaded("matplotlib.pyplot"):
        return True
    figure = loaded("matplotlib.figure")  # not one another thread is still importing (core/modules.py)
    return figure is not None and isinstance(value, figure.Figure)


def is_plotly(value: Any) -> bool:
    """``value`` is a plotly figure (``plotly.graph_objects.Figure`` or ``FigureWidget``)."""
    basedatatypes = loaded("plotly.basedatatypes")
    return basedatatypes is not None and isinstance(value, basedatatypes.BaseFigure)


def matplotlib_pixels(value: Any) -> Any:
    """The figure (pyplot: its current figure) drawn now, as an H×W×4 uint8 array of its own.

    Agg canvases (the default backend, and the GUI backends built on it) are drawn and their RGBA
    buffer copied: no encoding on the caller. Any other canvas (a bare ``Figure()``'s, a vector
    backend's) is drawn on an Agg canvas made for the purpose, then given back, as ``savefig``
    does (``savefig`` itself would apply the user's ``savefig.*`` settings, e.g. a tight bbox)."""
    import numpy as np

    pyplot = loaded("matplotlib.pyplot")
    figure = pyplot.gcf() if pyplot is not None and value is pyplot else value
    canvas = figure.canvas
    if hasattr(canvas, "buffer_rgba") and hasattr(canvas, "draw"):
        canvas.draw()
        return np.array(canvas.buffer_rgba(), dtype=np.uint8, copy=True)
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    try:
        agg = FigureCanvasAgg(figure)  # (becomes the figure's canvas while it draws)
        agg.draw()
        return np.array(agg.buffer_rgba(), dtype=np.uint8, copy=True)
    finally:
        figure.set_canvas(canvas)


def holds_figure(values: Iterable[Any]) -> bool:
    """Whether any of ``values`` is a figure or a list/tuple starting with one. Types found to be
    neither (numpy scalars, strings, media) are remembered, so a row of them costs one set lookup
    a value on later calls: ``Run.log``'s slow path asks this of every row while matplotlib or
    plotly is imported. (A type can't become a figure later: its library was imported before any
    figure existed.)"""
    for value in values:
        kind = type(value)
        if kind in _NOT_FIGURES:
            continue
        if kind is list or kind is tuple:
            if value and (is_matplotlib(value[0]) or is_plotly(value[0])):
                return True
            continue
        if is_matplotlib(value) or is_plotly(value):
            return True
        if kind is not ModuleType and len(_NOT_FIGURES) < _NOT_FIGURES_MAX:  # (pyplot is a module: never cached)
            _NOT_FIGURES.add(kind)
    return False


_NOT_FIGURES: set[type] = {int, float, str, bool, bytes, type(None)}
_NOT_FIGURES_MAX = 256


def as_logged(value: Any) -> Any:
    """What ``Run.log`` records for ``value``: a matplotlib figure (or ``pyplot``) as a
    ``tracklet.Image`` of what it draws now, a plotly figure as a ``tracklet.Plotly``, a list or
    tuple of figures as a list of those; any other value as it is. The core's slow path calls it
    (through ``core/extensions.py``: ``"figures"``) only for a row that :func:`holds_figure`.
    Raises what drawing the figure raised."""
    if type(value) in (list, tuple) and value and (is_matplotlib(value[0]) or is_plotly(value[0])):
        return [as_logged(item) for item in value]
    if is_matplotlib(value):
        from tracklet.media.image import Image

        return Image(value)
    if is_plotly(value):
        from tracklet.media.plotly import Plotly

        return Plotly(value)
    return value


__all__ = ["as_logged", "holds_figure", "is_matplotlib", "is_plotly", "matplotlib_pixels"]
