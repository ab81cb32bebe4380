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
from typing import Any


def is_matplotlib(value: Any) -> bool:
    """``value`` is a matplotlib ``Figure`` or the ``matplotlib.pyplot`` module."""
    if "matplotlib" not in sys.modules:
        return False
    if value is sys.modules.get("matplotlib.pyplot"):
        return True
    figure = sys.modules.get("matplotlib.figure")
    return figure is not None and isinstance(value, figure.Figure)


def is_plotly(value: Any) -> bool:
    """``value`` is a plotly figure (``plotly.graph_objects.Figure`` or ``FigureWidget``)."""
    basedatatypes = sys.modules.get("plotly.basedatatypes")
    return basedatatypes is not None and isinstance(value, basedatatypes.BaseFigure)


def matplotlib_pixels(value: Any) -> Any:
    """The figure (pyplot: its current figure) drawn now, as an H×W×4 uint8 array of its own.

    Agg canvases (the default backend, and the GUI backends built on it) are drawn and their RGBA
    buffer copied: no encoding on the caller. Any other canvas (a bare ``Figure()``'s, a vector
    backend's) is drawn on an Agg canvas made for the purpose, then given back, as ``savefig``
    does (``savefig`` itself would apply the user's ``savefig.*`` settings, e.g. a tight bbox)."""
    import numpy as np

    pyplot = sys.modules.get("matplotlib.pyplot")
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


__all__ = ["is_matplotlib", "is_plotly", "matplotlib_pixels"]
