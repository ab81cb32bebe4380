"""A report's Markdown (tracklet/reports/document.py): text and tracklet-panel blocks, each panel
validated on its own (every problem named, the rest of the report parses), bounded input, and a
round trip that gives the text back unchanged."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tracklet.errors import ReportError, ReportNotFound
from tracklet.reports.document import (MAX_MARKDOWN_CHARS, MAX_PANEL_YAML_CHARS, MAX_PANELS, PanelBlock, TextBlock,
                                       panel_markdown, parse, serialize)

FULL = """# Sweep

Loss falls.

```tracklet-panel
title: Loss
keys: [train/loss, val/loss]
x: step
smoothing: 0.6
log_y: true
size: l
runs:
  project: other
  filter: "config.lr > 0.01"
  sort: "-summary.loss"
  limit: 25
  group: config.model
  frozen: {run_ids: [a, b], max_step: 1000}
```

The end.
"""


def _panels(markdown: str) -> list[PanelBlock]:
    return parse(markdown).panels


def test_text_and_a_full_panel_parse_with_every_field():
    document = parse(FULL)
    assert [block.kind for block in document.blocks] == ["text", "panel", "text"]
    (panel,) = document.panels
    assert panel.error is None and panel.index == 0
    assert panel.spec == {"title": "Loss", "x": "step", "smoothing": 0.6, "log_y": True, "size": "l",
                          "keys": ["train/loss", "val/loss"]}
    assert panel.runs == {"project": "other", "filter": "config.lr > 0.01", "sort": "-summary.loss", "limit": 25,
                          "group": "config.model", "frozen": {"run_ids": ["a", "b"], "max_step": 1000}}
    assert document.blocks[0].markdown == "# Sweep\n\nLoss falls.\n\n"
    assert serialize(document.blocks) == FULL


def test_defaults_fill_a_minimal_panel():
    (panel,) = _panels("```tracklet-panel\nkeys: [loss]\n```\n")
    assert panel.error is None
    assert panel.spec == {"title": None, "x": "step", "smoothing": 0, "log_y": False, "size": "m", "keys": ["loss"]}
    assert panel.runs == {"project": None, "filter": None, "sort": None, "limit": 10, "group": None, "frozen": None}


@pytest.mark.parametrize("yaml_text, expected", [
    ("keys: [loss]\ncolour: red\n", "unknown key 'colour' in the panel"),
    ("x: step\n", "keys is required"),
    ("keys: loss\n", "keys must be a list of metric keys"),
    ("keys: []\n", "keys must name 1 to 20 metric keys; got 0"),
    (f"keys: [{', '.join(f'k{n}' for n in range(21))}]\n", "keys must name 1 to 20 metric keys; got 21"),
    ("keys: [loss, 3]\n", "keys[1] must be text; got a number"),
    ("keys: [loss]\nsmoothing: 1\n", "smoothing must be at least 0 and less than 1; got 1"),
    ("keys: [loss]\nsmoothing: -0.1\n", "smoothing must be at least 0 and less than 1"),
    ("keys: [loss]\nsmoothing: .nan\n", "smoothing must be a number"),
    ("keys: [loss]\nsmoothing: yes\n", "smoothing must be a number from 0 up to (not including) 1; got a boolean"),
    ("keys: [loss]\nlog_y: 1\n", "log_y must be true or false; got a number"),
    ("keys: [loss]\nsize: xl\n", "size must be one of s, m, l; got 'xl'"),
    ("keys: [loss]\nruns: [a]\n", "runs must be a mapping"),
    ("keys: [loss]\nruns: {limit: 0}\n", "runs.limit must be between 1 and 200; got 0"),
    ("keys: [loss]\nruns: {limit: 201}\n", "runs.limit must be between 1 and 200; got 201"),
    ("keys: [loss]\nruns: {limit: 2.5}\n", "runs.limit must be an integer; got a number"),
    ("keys: [loss]\nruns: {owner: me}\n", "unknown key 'owner' in runs"),
    ("keys: [loss]\nruns: {project: ../etc}\n", "runs.project '../etc' is not a valid project name"),
    ("keys: [loss]\nruns: {filter: 'config.lr >'}\n", "runs.filter:"),
    ("keys: [loss]\nruns: {sort: '-'}\n", "runs.sort:"),
    ("keys: [loss]\nruns: {frozen: {run_ids: [a], max_step: -1}}\n", "runs.frozen.max_step must be between 0"),
    (f"keys: [loss]\nruns: {{frozen: {{run_ids: [a], max_step: {2**63}}}}}\n", "runs.frozen.max_step must be between 0"),
    ("keys: [loss]\nruns: {frozen: {run_ids: [a/b]}}\n", "runs.frozen.run_ids[0] is not a run id"),
    ("keys: [loss]\nruns: {frozen: {run_ids: [a], when: now}}\n", "unknown key 'when' in runs.frozen"),
    ("keys: [loss\n", "the panel's YAML does not parse"),
    ("- loss\n", "a panel is a YAML mapping"),
    ("", "the panel is empty"),
    ("keys: &k [loss]\ntitle: *k\n", "anchors or aliases"),
    ("keys: [loss]\ntitle: " + "x" * MAX_PANEL_YAML_CHARS + "\n", f"at most {MAX_PANEL_YAML_CHARS} characters"),
])
def test_a_bad_panel_names_its_problem_and_the_rest_of_the_report_parses(yaml_text, expected):
    markdown = f"before\n```tracklet-panel\nkeys: [ok]\n```\n```tracklet-panel\n{yaml_text}```\nafter\n"
    good, bad = _panels(markdown)
    assert good.error is None and good.spec["keys"] == ["ok"]
    assert bad.error is not None and expected in bad.error, bad.error
    document = parse(markdown)
    assert document.blocks[0].markdown == "before\n" and document.blocks[-1].markdown == "after\n"
    assert serialize(document.blocks) == markdown


def test_every_problem_of_a_panel_is_named():
    (panel,) = _panels("```tracklet-panel\nkeys: [loss]\nbogus: 1\nsmoothing: 2\nsize: xl\n```\n")
    assert panel.error is not None
    assert all(part in panel.error for part in ("unknown key 'bogus'", "smoothing must", "size must"))


def test_fences_follow_commonmark():
    markdown = ("````markdown\n```tracklet-panel\nkeys: [in-a-sample]\n```\n````\n"  # a code sample: text
                "~~~tracklet-panel\nkeys: [tilde]\n~~~\n"
                "   ```tracklet-panel\nkeys: [indented]\n   ```\n"
                "```python\nprint('```tracklet-panel')\n```\n"
                "```tracklet-panel\nkeys: [open]\n")
    panels = _panels(markdown)
    assert [panel.spec.get("keys") for panel in panels[:2]] == [["tilde"], ["indented"]]
    assert panels[2].error == "the tracklet-panel block opened on line 15 is not closed"
    assert [panel.index for panel in panels] == [0, 1, 2]
    assert serialize(parse(markdown).blocks) == markdown


def test_input_is_bounded():
    with pytest.raises(ReportError, match="at most"):
        parse("x" * (MAX_MARKDOWN_CHARS + 1))
    with pytest.raises(ReportError, match=f"at most {MAX_PANELS} panels"):
        parse("```tracklet-panel\nkeys: [a]\n```\n" * (MAX_PANELS + 1))
    with pytest.raises(ReportError, match="NUL"):
        parse("a\0b")
    with pytest.raises(ReportNotFound, match="no panel 3"):
        parse(FULL).panel(3)


def test_a_rewritten_panel_round_trips_to_the_same_spec_and_text():
    (panel,) = _panels(FULL)
    runs = {**panel.runs, "frozen": {"run_ids": ["c"], "max_step": 7}}
    rewritten = panel.with_spec(panel.spec, runs)
    assert rewritten.error is None and rewritten.runs["frozen"] == {"run_ids": ["c"], "max_step": 7}
    assert rewritten.spec == panel.spec
    text = serialize([TextBlock("# t\n"), rewritten])
    again = parse(text)
    assert again.panels[0].spec == panel.spec and again.panels[0].runs == runs
    assert serialize(again.blocks) == text
    # Defaults are left out of what is written.
    assert panel_markdown({"keys": ["loss"], "x": "step", "smoothing": 0, "log_y": False, "size": "m"}) == (
        "```tracklet-panel\nkeys: [loss]\n```\n")


_LINES = st.sampled_from(["# head\n", "text\n", "\n", "```\n", "```tracklet-panel\n", "keys: [loss]\n",
                          "bogus: 1\n", "~~~\n", "````\n", "  ```python\n", "runs: {limit: 5}\n", "x: time\n",
                          "no newline", "\r\n", "```tracklet-panel extra\n", "\r", "\u2028", "text\r"])


@settings(max_examples=300, deadline=None)
@given(st.lists(_LINES, max_size=30))
def test_any_text_parses_and_serialises_back_unchanged(lines):
    markdown = "".join(lines)
    document = parse(markdown)
    assert serialize(document.blocks) == markdown
    assert [panel.index for panel in document.panels] == list(range(len(document.panels)))
    for panel in document.panels:
        assert panel.error is not None or panel.spec["keys"]


_TEXT = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\0"), min_size=1, max_size=40)


@settings(max_examples=200, deadline=None)
@given(title=st.none() | _TEXT, keys=st.lists(_TEXT.filter(str.strip), min_size=1, max_size=4),
       smoothing=st.floats(0, 0.999), log_y=st.booleans(), size=st.sampled_from(["s", "m", "l"]),
       limit=st.integers(1, 200), group=st.none() | _TEXT.filter(str.strip),
       frozen=st.none() | st.fixed_dictionaries({"run_ids": st.lists(st.from_regex(r"[a-z0-9]{1,8}", fullmatch=True),
                                                                     max_size=5),
                                                "max_step": st.none() | st.integers(0, 2**63 - 1)}))
def test_a_written_panel_reads_back_as_the_same_spec(title, keys, smoothing, log_y, size, limit, group, frozen):
    spec = {"title": title, "keys": keys, "x": "step", "smoothing": smoothing, "log_y": log_y, "size": size}
    runs = {"project": None, "filter": "config.lr > 0.01", "sort": "-summary.loss", "limit": limit, "group": group,
            "frozen": frozen}
    text = "# intro\n" + panel_markdown(spec, runs)
    (panel,) = parse(text).panels
    assert panel.error is None, (panel.error, text)
    assert panel.spec == spec and panel.runs == runs
    assert serialize([TextBlock("# intro\n"), panel.with_spec(panel.spec, panel.runs)]) == text
