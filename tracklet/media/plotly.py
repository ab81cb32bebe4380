"""``tracklet.Plotly``: a plotly figure, stored as its JSON and drawn by the dashboard offline.

    run.log({"scores": tracklet.Plotly(fig)})   # or wandb.log({"scores": fig}) / wandb.Plotly(fig)

Why JSON and not self-contained HTML: a figure's JSON is its data and layout (kilobytes), while
HTML made by ``fig.write_html(include_plotlyjs=True)`` carries the 4.6 MB plotly.js inline in every
file, so each logged figure would store it again (the HTML differs per figure: content addressing
can't share the script inside it). The dashboard draws the JSON with the plotly.js shipped in the
``plotly`` package installed beside the server (served at ``/vendor/plotly.min.js``, no CDN), in
a sandboxed frame; ``RecordedRun.media(key)[i].to_plotly()`` reads the figure back. The file is
W&B's ``.plotly.json`` (the figure's ``{"data": ..., "layout": ...}``).

The caller takes ``fig.to_dict()`` (plotly's own deep copy: the figure may change once ``log()``
returns); JSON encoding and storing happen on the media worker.
"""

from __future__ import annotations

import json
from typing import Any, Mapping

from tracklet.core.logged import Placement
from tracklet.media import figures
from tracklet.media.base import Media, MediaError
from tracklet.core.modules import loaded

FORMAT = "plotly.json"


class Plotly(Media):
    """A plotly figure (``plotly.graph_objects.Figure``) or a figure dict (``{"data": [...],
    "layout": {...}}``), recorded as its JSON (see the module docstring)."""

    _kind = "plotly"

    def __init__(self, figure: Any, caption: Any = None) -> None:
        super().__init__(caption)
        if figures.is_plotly(figure):
            self._data: Any = figure.to_dict()  # a deep copy (numpy arrays included)
        elif isinstance(figure, Mapping):
            self._data = json.loads(json.dumps(dict(figure), default=_plain))  # a copy, plain
        else:
            raise MediaError(f"Plotly takes a plotly figure or a figure dict ({{'data': [...], 'layout': {{...}}}}); "
                             f"got {type(figure).__name__}")

    @property
    def figure(self) -> dict[str, Any]:
        """The figure as a dict (``{"data": [...], "layout": {...}}``) as it was when this was made."""
        return self._data

    def _pending_bytes(self) -> int:
        return 0

    def _fill(self, context: Any, where: Placement, media: Any) -> None:
        self._store(context, media, to_json(self._data), FORMAT)


def to_json(figure: Mapping[str, Any]) -> bytes:
    """A figure dict as compact JSON: numpy arrays, dates and the like as plotly writes them
    (its encoder, when plotly is imported), else as lists and strings."""

    utils = loaded("plotly.utils")
    if utils is not None:
        return json.dumps(figure, cls=utils.PlotlyJSONEncoder, separators=(",", ":")).encode()
    return json.dumps(figure, default=_plain, separators=(",", ":")).encode()


def _plain(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return str(value)


__all__ = ["FORMAT", "Plotly", "to_json"]
