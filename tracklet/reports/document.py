"""A report's document: Markdown with fenced ``tracklet-panel`` blocks (docs/reports.md).

``parse(markdown)`` cuts the text into blocks, in order: ``TextBlock`` (Markdown, verbatim) and
``PanelBlock`` (a fenced block whose info string is ``tracklet-panel``: YAML of a panel spec and
its run set). Each panel is validated on its own: an unknown key, a wrong type or a value out of
range makes that panel's ``error`` (naming every problem found), and the rest of the report
parses. ``serialize(blocks)`` gives the text back: unchanged blocks byte for byte (their source is
kept), a panel whose spec was replaced (``with_spec``, e.g. by freeze) as canonical YAML, so
``parse(serialize(blocks))`` gives the same specs and serialising it again the same text.

Fences follow CommonMark: a fence is three or more backticks or tildes, indented at most three
spaces, closed by a fence of the same character at least as long; a ``tracklet-panel`` inside
another fenced block (a code sample) is text. Input is bounded (``MAX_MARKDOWN_CHARS``, panels,
a block's YAML size) and YAML anchors/aliases are refused, so a document costs memory and time in
proportion to its length.
"""

from __future__ import annotations

import dataclasses
import math
import re
from typing import Any

from tracklet.errors import ReportError, ReportNotFound

PANEL_INFO = "tracklet-panel"
MAX_MARKDOWN_CHARS = 1 << 20  # a report is a document for people: 1 MiB of text is plenty
MAX_PANELS = 200
MAX_PANEL_YAML_CHARS = 16_384
MAX_KEYS = 20
MAX_KEY_CHARS = 256
MAX_TITLE_CHARS = 300
MAX_FILTER_CHARS = 4096
MAX_RUN_LIMIT = 200
MAX_FROZEN_RUNS = MAX_RUN_LIMIT
INT64_MAX = 2**63 - 1
SIZES = ("s", "m", "l")  # the workspace's PANEL_SIZES (web/src/charts/workspace.ts)
DEFAULT_LIMIT = 10

PANEL_KEYS = ("title", "keys", "x", "smoothing", "log_y", "size", "runs")
RUNS_KEYS = ("project", "filter", "sort", "limit", "group", "frozen")
FROZEN_KEYS = ("run_ids", "max_step")

_FENCE = re.compile(r"^( {0,3})(`{3,}|~{3,})(.*)$")
_LINE = re.compile(r"[^\r\n]*(?:\r\n|\r|\n)|[^\r\n]+$")  # CommonMark's line endings only


@dataclasses.dataclass
class TextBlock:
    """Markdown between panels, exactly as written (newlines included)."""

    markdown: str
    kind: str = "text"

    def to_json(self) -> dict[str, Any]:
        return {"kind": "text", "markdown": self.markdown}


@dataclasses.dataclass
class PanelBlock:
    """One ``tracklet-panel`` block: ``index`` counts panels from 0 in document order; ``spec``
    the panel's options with defaults filled in (no ``runs``), ``runs`` its run set (``project``
    None: the report's); ``error`` names what is wrong with the block (then ``spec``/``runs`` hold
    what could be read). ``source`` is the block's text, fences included."""

    index: int
    spec: dict[str, Any]
    runs: dict[str, Any]
    error: str | None
    source: str
    kind: str = "panel"

    def to_json(self) -> dict[str, Any]:
        return {"kind": "panel", "index": self.index, "spec": self.spec, "runs": self.runs, "error": self.error}

    def with_spec(self, spec: dict[str, Any], runs: dict[str, Any]) -> PanelBlock:
        """This panel with ``spec`` and ``runs`` (validated), written as canonical YAML."""
        source = panel_markdown(spec, runs)
        parsed = parse(source).panels[0]
        return dataclasses.replace(parsed, index=self.index)


Block = TextBlock | PanelBlock


@dataclasses.dataclass
class Document:
    blocks: list[Block]

    @property
    def panels(self) -> list[PanelBlock]:
        return [block for block in self.blocks if isinstance(block, PanelBlock)]

    def panel(self, index: int) -> PanelBlock:
        panels = self.panels
        if not 0 <= index < len(panels):
            raise ReportNotFound(f"the report has {len(panels)} panel(s); there is no panel {index}")
        return panels[index]

    def to_json(self) -> list[dict[str, Any]]:
        return [block.to_json() for block in self.blocks]

    def serialize(self) -> str:
        return serialize(self.blocks)


def check_markdown(markdown: Any) -> str:
    """``markdown`` if it is a text within the size limit; ``ReportError`` otherwise."""
    if not isinstance(markdown, str):
        raise ReportError(f"a report's markdown must be text; got {type(markdown).__name__}")
    if len(markdown) > MAX_MARKDOWN_CHARS:
        raise ReportError(f"a report may have at most {MAX_MARKDOWN_CHARS} characters of markdown; got {len(markdown)}")
    if "\0" in markdown:
        raise ReportError("a report's markdown may not contain NUL characters")
    return markdown


def parse(markdown: str) -> Document:
    """The blocks of ``markdown`` (``ReportError`` only for text over the size limit, a NUL, or
    more than ``MAX_PANELS`` panels: a bad panel is that panel's ``error``)."""
    check_markdown(markdown)
    lines = _LINE.findall(markdown)
    blocks: list[Block] = []
    text: list[str] = []
    i = 0
    while i < len(lines):
        match = _FENCE.match(lines[i].rstrip("\r\n"))
        if match is None or (match.group(2)[0] == "`" and "`" in match.group(3)):
            text.append(lines[i])
            i += 1
            continue
        fence = match.group(2)
        end = _closing(lines, i + 1, fence)
        info = match.group(3).strip().split(maxsplit=1)
        block_lines = lines[i:(len(lines) if end is None else end + 1)]
        if not info or info[0] != PANEL_INFO:
            text.extend(block_lines)  # another fenced block (code): text, tracklet-panel inside or not
            i += len(block_lines)
            continue
        if text:
            blocks.append(TextBlock("".join(text)))
            text = []
        count = sum(isinstance(block, PanelBlock) for block in blocks)
        if count >= MAX_PANELS:
            raise ReportError(f"a report may have at most {MAX_PANELS} panels")
        body = "".join(lines[i + 1:end] if end is not None else lines[i + 1:])
        error = None if end is not None else f"the {PANEL_INFO} block opened on line {i + 1} is not closed"
        blocks.append(_panel(count, body, "".join(block_lines), error))
        i += len(block_lines)
    if text:
        blocks.append(TextBlock("".join(text)))
    return Document(blocks)


def _closing(lines: list[str], start: int, fence: str) -> int | None:
    for j in range(start, len(lines)):
        match = _FENCE.match(lines[j].rstrip("\r\n"))
        if (match is not None and match.group(2)[0] == fence[0] and len(match.group(2)) >= len(fence)
                and not match.group(3).strip()):
            return j
    return None


def serialize(blocks: list[Block]) -> str:
    """The document's text: each block's text, in order."""
    out: list[str] = []
    for block in blocks:
        text = block.markdown if isinstance(block, TextBlock) else block.source
        if out and not out[-1].endswith(("\n", "\r")):
            out.append("\n")  # a block always starts on a line of its own
        out.append(text)
    return "".join(out)


def panel_markdown(spec: dict[str, Any], runs: dict[str, Any] | None = None) -> str:
    """A fenced ``tracklet-panel`` block for ``spec`` (and ``runs``), canonical YAML: the keys
    in the documented order, defaults left out."""
    import yaml  # type: ignore[import-untyped,unused-ignore]

    data = {key: spec[key] for key in PANEL_KEYS if key in spec and key != "runs"
            and spec[key] is not None and spec[key] != _PANEL_DEFAULTS.get(key, object())}
    dumper = _dumper()
    text = yaml.dump(data, Dumper=dumper, sort_keys=False, allow_unicode=True, default_flow_style=None,
                     width=100) if data else ""
    runs = runs if runs is not None else spec.get("runs")
    run_data = {key: runs[key] for key in RUNS_KEYS if runs.get(key) is not None
                and runs[key] != _RUNS_DEFAULTS.get(key, object())} if runs else {}
    frozen = run_data.pop("frozen", None)
    if run_data or frozen is not None:  # a block mapping, `frozen` last on one line: {run_ids: [a], max_step: 9}
        text += "runs:\n"
        if run_data:
            block = yaml.dump(run_data, Dumper=dumper, sort_keys=False, allow_unicode=True, default_flow_style=False,
                              width=float("inf"))
            text += "".join(f"  {line}\n" for line in block.rstrip("\n").split("\n"))
        if frozen is not None:
            pins = {"run_ids": list(frozen.get("run_ids") or []),
                    **({"max_step": frozen["max_step"]} if frozen.get("max_step") is not None else {})}
            text += "  frozen: " + yaml.dump(pins, Dumper=dumper, sort_keys=False, default_flow_style=True,
                                             width=float("inf")).strip() + "\n"
    return f"```{PANEL_INFO}\n{text}```\n"


def _dumper() -> Any:
    """PyYAML's safe dumper, writing text with line breaks YAML knows but Markdown doesn't (NEL,
    U+2028/9) or unprintable characters double-quoted, so it reads back as written."""
    import yaml  # type: ignore[import-untyped,unused-ignore]

    class Dumper(yaml.SafeDumper):
        pass

    def text(dumper: Any, value: str) -> Any:
        quoted = not value.isprintable() or any(ch in value for ch in "\x85\u2028\u2029\ufeff")
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style='"' if quoted else None)

    Dumper.add_representer(str, text)
    return Dumper


_PANEL_DEFAULTS: dict[str, Any] = {"x": "step", "smoothing": 0, "log_y": False, "size": "m"}
_RUNS_DEFAULTS: dict[str, Any] = {"limit": DEFAULT_LIMIT}


# ------------------------------------------------------------------ validation


def _panel(index: int, body: str, source: str, error: str | None) -> PanelBlock:
    if error is not None:
        return PanelBlock(index, {}, {}, error, source)
    try:
        data = _load_yaml(body)
    except ReportError as problem:
        return PanelBlock(index, {}, {}, str(problem), source)
    spec, runs, problems = validate_panel(data)
    return PanelBlock(index, spec, runs, "; ".join(problems) or None, source)


def _load_yaml(body: str) -> Any:
    """The YAML mapping in ``body``: size-bounded, no anchors or aliases (a few bytes of aliases
    can name an exponentially large tree), a mapping at the top."""
    import yaml  # type: ignore[import-untyped,unused-ignore]

    if len(body) > MAX_PANEL_YAML_CHARS:
        raise ReportError(f"a panel's YAML may have at most {MAX_PANEL_YAML_CHARS} characters; got {len(body)}")
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        for event in yaml.parse(body, Loader=loader):
            if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None):
                raise ReportError("a panel's YAML may not use anchors or aliases (& and *)")
        data = yaml.load(body, Loader=loader)  # noqa: S506 - a safe loader
    except yaml.YAMLError as problem:
        mark = getattr(problem, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1} of the block)" if mark is not None else ""
        reason = getattr(problem, "problem", None) or str(problem).splitlines()[0]
        raise ReportError(f"the panel's YAML does not parse: {reason}{where}") from None
    if data is None:
        raise ReportError("the panel is empty: it needs at least `keys: [metric]`")
    if not isinstance(data, dict):
        raise ReportError(f"a panel is a YAML mapping (keys: [...], x: ...); got {_kind(data)}")
    return data


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "text"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__


def _unknown(data: dict[Any, Any], allowed: tuple[str, ...], where: str) -> list[str]:
    return [f"unknown key {key!r} in {where} (expected one of: {', '.join(allowed)})"
            for key in data if key not in allowed]


def _text(value: Any, name: str, most: int, problems: list[str], *, empty: bool = False) -> str | None:
    if not isinstance(value, str):
        problems.append(f"{name} must be text; got {_kind(value)}")
        return None
    if not empty and not value.strip():
        problems.append(f"{name} may not be empty")
        return None
    if len(value) > most:
        problems.append(f"{name} may have at most {most} characters; got {len(value)}")
        return None
    return value


def _integer(value: Any, name: str, low: int, high: int, problems: list[str]) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int):
        problems.append(f"{name} must be an integer; got {_kind(value)}")
        return None
    if not low <= value <= high:
        problems.append(f"{name} must be between {low} and {high}; got {value}")
        return None
    return value


def validate_panel(data: dict[Any, Any]) -> tuple[dict[str, Any], dict[str, Any], list[str]]:
    """(spec with defaults, run set with defaults, problems) of a panel's mapping."""
    problems: list[str] = _unknown(data, PANEL_KEYS, "the panel")
    spec: dict[str, Any] = {"title": None, **_PANEL_DEFAULTS, "keys": []}
    if "title" in data and data["title"] is not None:
        spec["title"] = _text(data["title"], "title", MAX_TITLE_CHARS, problems, empty=True)
    if "keys" not in data:
        problems.append(f"keys is required: a list of 1 to {MAX_KEYS} metric keys, e.g. keys: [train/loss]")
    else:
        keys = data["keys"]
        if not isinstance(keys, list):
            problems.append(f"keys must be a list of metric keys (keys: [train/loss]); got {_kind(keys)}")
        elif not 1 <= len(keys) <= MAX_KEYS:
            problems.append(f"keys must name 1 to {MAX_KEYS} metric keys; got {len(keys)}")
        else:
            checked = [_text(key, f"keys[{n}]", MAX_KEY_CHARS, problems) for n, key in enumerate(keys)]
            spec["keys"] = [key for key in checked if key is not None]
    if "x" in data:
        spec["x"] = _text(data["x"], "x", MAX_KEY_CHARS, problems) or "step"
    if "smoothing" in data:
        value = data["smoothing"]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            problems.append(f"smoothing must be a number from 0 up to (not including) 1; got {_kind(value)}")
        elif not 0 <= value < 1:
            problems.append(f"smoothing must be at least 0 and less than 1; got {value}")
        else:
            spec["smoothing"] = value
    if "log_y" in data:
        if not isinstance(data["log_y"], bool):
            problems.append(f"log_y must be true or false; got {_kind(data['log_y'])}")
        else:
            spec["log_y"] = data["log_y"]
    if "size" in data:
        if data["size"] not in SIZES:
            problems.append(f"size must be one of {', '.join(SIZES)}; got {data['size']!r}")
        else:
            spec["size"] = data["size"]
    runs, run_problems = validate_runs(data.get("runs"))
    return spec, runs, problems + run_problems


def validate_runs(data: Any) -> tuple[dict[str, Any], list[str]]:
    """(run set with defaults, problems): ``project`` None means the report's project."""
    runs: dict[str, Any] = {"project": None, "filter": None, "sort": None, "limit": DEFAULT_LIMIT, "group": None,
                            "frozen": None}
    if data is None:
        return runs, []
    if not isinstance(data, dict):
        return runs, [f"runs must be a mapping (project, filter, sort, limit, group); got {_kind(data)}"]
    problems = _unknown(data, RUNS_KEYS, "runs")
    if data.get("project") is not None:
        from tracklet.core.layout import name_problem

        project = _text(data["project"], "runs.project", 128, problems)
        if project is not None and name_problem(project) is not None:
            problems.append(f"runs.project {project!r} is not a valid project name: {name_problem(project)}")
        elif project is not None:
            runs["project"] = project
    if data.get("filter") is not None:
        text = _text(data["filter"], "runs.filter", MAX_FILTER_CHARS, problems, empty=True)
        if text is not None:
            runs["filter"] = _checked_query(text, "filter", problems)
    if data.get("sort") is not None:
        text = _text(data["sort"], "runs.sort", MAX_FILTER_CHARS, problems, empty=True)
        if text is not None:
            runs["sort"] = _checked_query(text, "sort", problems)
    if "limit" in data:
        runs["limit"] = _integer(data["limit"], "runs.limit", 1, MAX_RUN_LIMIT, problems) or DEFAULT_LIMIT
    if data.get("group") is not None:
        runs["group"] = _text(data["group"], "runs.group", MAX_KEY_CHARS, problems)
    if data.get("frozen") is not None:
        runs["frozen"] = _frozen(data["frozen"], problems)
    return runs, problems


def _checked_query(text: str, what: str, problems: list[str]) -> str | None:
    """``text`` if the runs list's parser takes it as a filter (or sort); its error otherwise."""
    from tracklet.store.filters import parse_filter, parse_sort

    if not text.strip():
        return None
    try:
        (parse_filter if what == "filter" else parse_sort)(text)
    except ValueError as problem:
        problems.append(f"runs.{what}: {problem}")
        return None
    return text


def _frozen(data: Any, problems: list[str]) -> dict[str, Any] | None:
    if not isinstance(data, dict):
        problems.append(f"runs.frozen must be a mapping {{run_ids: [...], max_step: N}}; got {_kind(data)}")
        return None
    problems.extend(_unknown(data, FROZEN_KEYS, "runs.frozen"))
    ids = data.get("run_ids")
    run_ids: list[str] = []
    if not isinstance(ids, list):
        problems.append(f"runs.frozen.run_ids must be a list of run ids; got {_kind(ids)}")
    elif len(ids) > MAX_FROZEN_RUNS:
        problems.append(f"runs.frozen.run_ids may name at most {MAX_FROZEN_RUNS} runs; got {len(ids)}")
    else:
        from tracklet.core.layout import name_problem

        for n, run_id in enumerate(ids):
            if not isinstance(run_id, str) or name_problem(run_id) is not None:
                problems.append(f"runs.frozen.run_ids[{n}] is not a run id: {run_id!r}")
            else:
                run_ids.append(run_id)
    max_step = None
    if data.get("max_step") is not None:
        max_step = _integer(data["max_step"], "runs.frozen.max_step", 0, INT64_MAX, problems)
    return {"run_ids": run_ids, "max_step": max_step}
