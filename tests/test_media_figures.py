"""Plotting libraries' figures (tracklet.media.figures, tracklet.media.plotly; docs/media.md): a
matplotlib figure or ``pyplot`` is recorded as the pixels it drew when logged (drawn on the caller,
so later changes to the figure don't reach the record); a plotly figure as its JSON, read back as a
plotly figure; both through ``tracklet.Image``/``tracklet.Plotly`` and unmodified wandb calls
(``wandb.log({"chart": plt})``, ``wandb.Image(fig)``, ``wandb.Plotly(fig)``). Needs matplotlib
and plotly (the test extra)."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
from conftest import QUIET, read, run_script

import tracklet
from tracklet.errors import MediaError

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")
plt = pytest.importorskip("matplotlib.pyplot")
go = pytest.importorskip("plotly.graph_objects")


def _figure(colour: str = "red") -> object:
    figure, axes = plt.subplots(figsize=(2, 1.5), dpi=40)
    axes.add_patch(matplotlib.patches.Rectangle((0, 0), 1, 1, color=colour))
    axes.set_axis_off()
    return figure


def _drawn(figure) -> np.ndarray:
    figure.canvas.draw()
    return np.asarray(figure.canvas.buffer_rgba()).copy()


def test_a_matplotlib_figure_and_pyplot_are_recorded_as_the_pixels_drawn_when_logged(root):
    red = _figure("red")
    expected = _drawn(red)
    run = tracklet.init(project="figs", dir=str(root), settings=QUIET)
    run.log({"fig": tracklet.Image(red), "current": tracklet.Image(plt)})  # pyplot: its current figure (red)
    red.axes[0].patches[0].set_color("blue")  # changed as soon as log() returns: not what was logged
    run.log({"fig": tracklet.Image(red)})
    run.finish()
    plt.close("all")
    recorded = read(run)
    first, second = recorded.images("fig")
    assert (first.width, first.height, first.mode) == (80, 60, "RGBA")
    assert np.array_equal(first.to_numpy(), expected)
    assert np.array_equal(recorded.images("current")[0].to_numpy(), expected)
    middle = second.to_numpy()[30, 40]
    assert middle[2] > 200 and middle[0] < 50  # the blue drawn at the second log()


def test_a_figure_without_an_agg_canvas_is_drawn_at_its_size_and_keeps_its_canvas(root):
    """A bare ``matplotlib.figure.Figure()`` (no pyplot) has no pixel buffer; the user's savefig
    settings (a tight bbox) don't change what is recorded."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(2, 1), dpi=50)
    figure.add_subplot().plot([0, 1], [1, 0])
    canvas = figure.canvas
    run = tracklet.init(project="figs", dir=str(root), settings=QUIET)
    with matplotlib.rc_context({"savefig.bbox": "tight"}):
        run.log({"bare": tracklet.Image(figure)})
    run.finish()
    (image,) = read(run).images("bare")
    assert (image.width, image.height, image.mode) == (100, 50, "RGBA")
    assert figure.canvas is canvas
    assert (image.to_numpy()[:, :, :3] < 128).any()  # the line and the axes were drawn


def test_a_plotly_figure_is_recorded_as_json_and_read_back_as_a_plotly_figure(root):
    figure = go.Figure(go.Scatter(x=np.arange(4), y=[1.0, 3.0, 2.0, 5.0], name="loss"),
                       layout={"title": {"text": "scores"}})
    run = tracklet.init(project="figs", dir=str(root), settings=QUIET)
    run.log({"p": tracklet.Plotly(figure, caption="epoch 1")})
    figure.data[0].y = [0.0, 0.0, 0.0, 0.0]  # the copy was taken at log()
    run.log({"p": tracklet.Plotly({"data": [{"type": "bar", "x": ["a"], "y": [2]}]})})
    run.finish()
    first, second = read(run).media("p")
    assert (first.kind, first.format, first.mime, first.caption) == ("plotly", "plotly.json", "application/json",
                                                                     "epoch 1")
    back = first.to_plotly()
    assert list(back.data[0].x) == [0, 1, 2, 3] and list(back.data[0].y) == [1.0, 3.0, 2.0, 5.0]
    assert back.layout.title.text == "scores"
    assert json.loads(second.read_bytes()) == {"data": [{"type": "bar", "x": ["a"], "y": [2]}]}
    with pytest.raises(MediaError, match="plotly figure or a figure dict.*got int"):
        tracklet.Plotly(3)


def test_unmodified_wandb_calls_record_matplotlib_and_plotly_figures(root):
    import tracklet.compat.wandb as wandb

    figure = _figure("red")
    expected = _drawn(figure)
    scatter = go.Figure(go.Scatter(x=[0, 1], y=[2, 3]))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing warned about, nothing dropped
        run = wandb.init(project="figs", settings={"console": "off", "x_disable_stats": True})
        wandb.log({"chart": plt, "fig": figure, "img": wandb.Image(figure, caption="c"), "p": scatter,
                   "pw": wandb.Plotly(scatter), "pm": wandb.Plotly(figure), "loss": 0.5})
        wandb.finish()
    plt.close("all")
    recorded = tracklet.Api(root).run(f"figs/{run.id}")
    assert recorded.history()["loss"] == [0.5]
    for key in ("chart", "fig", "img", "pm"):  # matplotlib: images (W&B's without plotly; pm: W&B converts it)
        (image,) = recorded.images(key)
        assert np.array_equal(image.to_numpy(), expected), key
    assert recorded.images("img")[0].caption == "c"
    for key in ("p", "pw"):
        (item,) = recorded.media(key)
        assert item.kind == "plotly" and list(item.to_plotly().data[0].y) == [2, 3]


class _Broken(matplotlib.artist.Artist):
    def draw(self, renderer):
        raise RuntimeError("this artist can't draw")


def test_a_figure_that_fails_to_draw_is_left_out_alone_and_the_row_is_kept(root):
    import tracklet.compat.wandb as wandb
    from tracklet.compat.wandb import _messages

    figure = _figure()
    figure.add_artist(_Broken())
    _messages._warned.discard("log-figure-broken")
    with pytest.warns(UserWarning, match="figure logged under 'broken' could not be recorded.*can't draw"):
        run = wandb.init(project="figs", settings={"console": "off", "x_disable_stats": True})
        wandb.log({"broken": figure, "loss": 1.0, "ok": wandb.Plotly({"data": []})})
        wandb.finish()
    plt.close("all")
    recorded = tracklet.Api(root).run(f"figs/{run.id}")
    assert recorded.history()["loss"] == [1.0] and len(recorded.media("ok")) == 1 and recorded.media("broken") == []


def test_logging_without_matplotlib_or_plotly_imports_neither(tmp_path):
    done = run_script("""
        import sys
        import numpy as np
        import tracklet.compat.wandb as wandb
        run = wandb.init(project="x", dir=sys.argv[1], settings={"console": "off", "x_disable_stats": True})
        wandb.log({"name": "a", "img": wandb.Image(np.zeros((4, 4), dtype=np.uint8)), "arr": np.ones(3), "x": 1.0})
        wandb.finish()
        print(sorted(m for m in sys.modules if m.partition(".")[0] in ("matplotlib", "plotly")))
    """, check=True, args=(str(tmp_path),))
    assert done.stdout.strip().splitlines()[-1] == "[]"


def test_values_of_other_types_logged_first_do_not_hide_a_later_figure(root):
    """wandb.log remembers the value types that need no conversion (a string, a numpy scalar, a
    module that isn't pyplot): a figure or pyplot logged after them is still recorded."""
    import tracklet.compat.wandb as wandb

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a module is not a loggable value: warned about and dropped
        run = wandb.init(project="figs", settings={"console": "off", "x_disable_stats": True})
        wandb.log({"note": "warm-up", "lr": np.float32(0.1), "module": json})
        _figure("red")
        wandb.log({"note": "figures", "lr": np.float32(0.1), "chart": plt, "fig": _figure("blue")})
        wandb.finish()
    plt.close("all")
    recorded = tracklet.Api(root).run(f"figs/{run.id}")
    assert [image.step for image in recorded.images("chart")] == [1]
    assert [image.step for image in recorded.images("fig")] == [1]


def test_bare_figures_logged_through_tracklet_log_are_recorded_as_media(root):
    """``tracklet.log`` takes figures as they are (no ``tracklet.Image``/``Plotly`` around them),
    lists of them under one key and figures nested in a dict, as the wandb layer does."""
    red, blue = _figure("red"), _figure("blue")
    expected = [_drawn(red), _drawn(blue)]
    scatter = go.Figure(go.Scatter(x=[0, 1], y=[2, 3]))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing warned about, nothing dropped
        run = tracklet.init(project="figs", dir=str(root), settings=QUIET)
        tracklet.log({"fig": red, "chart": plt, "p": scatter, "loss": 0.5})
        red.axes[0].patches[0].set_color("green")  # drawn at log(): not what was recorded
        tracklet.log({"both": [red, blue], "plots": {"p": scatter}, "ps": (scatter, scatter)})
        tracklet.finish()
    plt.close("all")
    recorded = read(run)
    assert recorded.history()["loss"][0] == 0.5
    (image,) = recorded.images("fig")
    assert np.array_equal(image.to_numpy(), expected[0])
    assert np.array_equal(recorded.images("chart")[0].to_numpy(), expected[1])  # pyplot: the current figure
    first, second = recorded.images("both")
    assert first.step == second.step == 1 and np.array_equal(second.to_numpy(), expected[1])
    assert first.to_numpy()[30, 40][1] > 100  # the green drawn at the second log()
    for key, count in (("p", 1), ("plots/p", 1), ("ps", 2)):
        items = recorded.media(key)
        assert len(items) == count and all(item.kind == "plotly" for item in items), key
        assert list(items[0].to_plotly().data[0].y) == [2, 3]


def test_a_bare_figure_that_fails_to_draw_is_left_out_of_tracklet_log_alone(root):
    figure = _figure()
    figure.add_artist(_Broken())
    run = tracklet.init(project="figs", dir=str(root), settings=QUIET)
    with pytest.warns(tracklet.errors.TrackletWarning, match="figure logged under 'broken' could not be recorded"):
        run.log({"broken": figure, "loss": 1.0})
    run.finish()
    plt.close("all")
    recorded = read(run)
    assert recorded.history()["loss"] == [1.0] and recorded.media("broken") == []


def test_tracklet_log_without_matplotlib_or_plotly_imports_neither(tmp_path):
    done = run_script("""
        import sys
        import numpy as np
        import tracklet
        run = tracklet.init(project="x", dir=sys.argv[1], settings={"console": "off", "system_metrics": False})
        run.log({"name": "a", "img": tracklet.Image(np.zeros((4, 4), dtype=np.uint8)), "arr": np.ones(3),
                 "nested": {"x": np.float32(1.0)}, "xs": [1, 2], "x": 1.0})
        run.finish()
        print(sorted(m for m in sys.modules if m.partition(".")[0] in ("matplotlib", "plotly")))
    """, check=True, args=(str(tmp_path),))
    assert done.stdout.strip().splitlines()[-1] == "[]"
