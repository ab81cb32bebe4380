// A project: its sweeps (links to their pages), its runs table (filter, search, sort, columns,
// grouping by a config key or by sweep, selection) beside the charts workspace of the selected
// runs, or the Compare tab (config diff, parallel coordinates).
// Everything that defines the view is in the query string, so a link reproduces it: filter, q,
// sort, cols, group, sel, tab, pc, x, smooth, zoom, log, panels, size, psize, and the Compare tab's
// media grid's mkey and mstep.

import { api, ApiError, type RunRow, type SweepSummary } from "../api";
import { runColor } from "../colors";
import { CompareView } from "../compare/view";
import { MAX_PLOT_HEIGHT, MIN_PLOT_HEIGHT } from "../charts/panel";
import { ChartsWorkspace, PANEL_SIZES, POLL_MS, type PanelOwnSize, type PanelSize, type ViewState } from "../charts/workspace";
import { debounce, h } from "../dom";
import { flatten, fmtValue } from "../format";
import { artifactsHref, readQuery, reportsHref, setQuery, sweepHref, tracesHref } from "../router";
import { SWEEP_GROUP, sweepOf } from "../runs/groups";
import { RunsTable } from "../runs/table";
import { addToReportDialog } from "../reports/add";

const DEFAULT_SELECTION = 5;
const SPLIT_KEY = "tracklet.runsWidth"; // the runs pane's dragged width, for every project
const MIN_RUNS_WIDTH = 300;
const MIN_CHARTS_WIDTH = 360;
const PANE_CHROME = 40; // the runs pane's padding and border, and the table's scrollbar

export function readView(params: URLSearchParams): ViewState {
  const zoom = (params.get("zoom") ?? "").split(",").map(Number);
  return {
    xMode: params.get("x") || "step",
    smoothing: Math.min(0.99, Math.max(0, Number(params.get("smooth") ?? 0) || 0)),
    zoom: zoom.length === 2 && zoom.every(isFinite) && params.get("zoom") ? [zoom[0], zoom[1]] : null,
    log: new Set((params.get("log") ?? "").split(",").filter(Boolean)),
    panelFilter: params.get("panels") ?? "",
    size: (Object.keys(PANEL_SIZES).includes(params.get("size") ?? "") ? params.get("size") : "m") as PanelSize,
    panelSizes: readPanelSizes(params.get("psize") ?? ""),
  };
}

/** `psize`: panels resized by dragging, `<key>:<plot height>[:<columns>]` joined by commas (keys URI-encoded). */
export function readPanelSizes(text: string): Map<string, PanelOwnSize> {
  const sizes = new Map<string, PanelOwnSize>();
  for (const entry of text.split(",")) {
    const [key, height, span] = entry.split(":");
    const h = Number(height);
    if (!key || !Number.isFinite(h)) continue;
    let name: string;
    try {
      name = decodeURIComponent(key);
    } catch {
      continue;
    }
    const columns = Math.round(Number(span ?? 1));
    sizes.set(name, {
      height: Math.round(Math.min(MAX_PLOT_HEIGHT, Math.max(MIN_PLOT_HEIGHT, h))),
      span: Number.isFinite(columns) ? Math.min(12, Math.max(1, columns)) : 1,
    });
  }
  return sizes;
}

function writePanelSizes(sizes: Map<string, PanelOwnSize>): string | null {
  if (!sizes.size) return null;
  return [...sizes].map(([key, { height, span }]) => `${encodeURIComponent(key)}:${height}${span > 1 ? `:${span}` : ""}`).join(",");
}

export function writeView(view: ViewState): void {
  setQuery({
    x: view.xMode === "step" ? null : view.xMode,
    smooth: view.smoothing ? String(view.smoothing) : null,
    zoom: view.zoom ? view.zoom.map((v) => String(Number(v.toPrecision(10)))).join(",") : null,
    log: [...view.log].join(","),
    panels: view.panelFilter,
    size: view.size === "m" ? null : view.size,
    psize: writePanelSizes(view.panelSizes),
  });
}

/** Config and summary columns worth showing by default: config values that differ between runs, and summaries. */
function defaultColumns(rows: RunRow[]): string[] {
  const sample = rows.slice(0, 200);
  const configValues = new Map<string, Set<string>>();
  const summaryKeys = new Set<string>();
  for (const row of sample) {
    for (const [key, value] of flatten(row.config)) {
      if (!configValues.has(key)) configValues.set(key, new Set());
      configValues.get(key)!.add(JSON.stringify(value));
    }
    for (const [key, value] of flatten(row.summary)) if (typeof value === "number" && !key.startsWith("_")) summaryKeys.add(key);
  }
  const varying = [...configValues].filter(([, values]) => values.size > 1).map(([key]) => `config.${key}`);
  return [...varying.slice(0, 3), ...[...summaryKeys].sort().slice(0, 3).map((k) => `summary.${k}`)];
}

function availableColumns(rows: RunRow[]): string[] {
  const found = new Set<string>();
  for (const row of rows.slice(0, 200)) {
    for (const [key, value] of flatten(row.config)) if (typeof value !== "object" || value === null) found.add(`config.${key}`);
    // A summary may be a structured value (a logged list): a column of its JSON text.
    for (const [key, value] of flatten(row.summary)) if (typeof value !== "object" || value === null || Array.isArray(value)) found.add(`summary.${key}`);
  }
  return [...found].sort().slice(0, 300);
}

/** The project's sweeps, one line each: id (a link to its page), state, method, trials, best value. */
function sweepsList(project: string, sweeps: SweepSummary[], total: number): HTMLElement | string {
  if (!sweeps.length) return "";
  return h(
    "details.sweeps-list",
    { open: true },
    h("summary", { text: `Sweeps (${total > sweeps.length ? `the newest ${sweeps.length} of ${total}` : sweeps.length})` }),
    h(
      "ul",
      {},
      ...sweeps.map((sweep) =>
        h(
          "li",
          { "data-sweep": sweep.id },
          h("a", { href: sweepHref(project, sweep.id), "data-link": true, text: sweep.id }),
          h("span.state", { "data-state": sweep.state, text: sweep.state }),
          h("span.muted", {
            text: sweep.error
              ? sweep.error
              : `${sweep.method}, ${sweep.trial_count} trial${sweep.trial_count === 1 ? "" : "s"}` +
                (sweep.best && sweep.metric ? `, best ${sweep.metric.name} ${fmtValue(sweep.best.value)}` : ""),
          }),
        ),
      ),
    ),
  );
}

export async function projectPage(root: HTMLElement, project: string): Promise<() => void> {
  const params = readQuery();
  let filter = params.get("filter") ?? "";
  let search = params.get("q") ?? "";
  let sort = params.get("sort") ?? "";
  let columns = params.get("cols") !== null ? params.get("cols")!.split(",").filter((c) => c && c !== "-") : null;
  const selected = new Set((params.get("sel") ?? "").split(",").filter(Boolean));
  let explicitSelection = params.has("sel");
  const known = new Map<string, RunRow>(); // the rows of the table, by id
  let rows: RunRow[] = [];
  let pollTimer: number | undefined;
  let stopped = false;

  const count = h("span.count");
  const filterInput = h("input.filter", { type: "text", name: "filter", placeholder: 'Filter, e.g. config.lr < 1e-3 and state = "finished"', value: filter, spellcheck: "false" });
  const searchInput = h("input.search", { type: "search", name: "q", placeholder: "Search names", value: search });
  const filterError = h("pre.filter-error", { hidden: true });
  const columnsMenu = h("details.columns", {}, h("summary", { text: "Columns" }), h("div.column-list"));
  const selectTop = h("button", { text: `Top ${DEFAULT_SELECTION}`, title: "Select the first runs of the table" });
  const selectNone = h("button", { text: "None", title: "Clear the selection" });
  let groupBy = params.get("group") || null;
  const groupSelect = h("select.group-by", { name: "group", title: "Group runs by a config key" });
  let tab = params.get("tab") === "compare" ? "compare" : "charts";
  const sweepsBox = h("div.sweeps-box");
  let hasSweeps = false;

  const workspace = new ChartsWorkspace(project, readView(params), writeView);
  workspace.addToReport = (key, view) => void addToReportDialog(project, key, view, selectedRows().map((row) => row.run_id));
  /** A run's colour: its group's while the table is grouped, else its own. */
  const style = (runId: string) => {
    const group = table.groupOf(runId);
    return group ? { color: group.color, group: { id: group.id, label: group.label, color: group.color, order: group.order } } : { color: runColor(runId) };
  };
  const compare = new CompareView(params.get("pc"), (metric) => setQuery({ pc: metric }), (runId) => ({
    name: known.get(runId)?.name || runId,
    color: style(runId).color,
  }), project);
  const tabs = (["charts", "compare"] as const).map((name) => {
    const button = h("button.tab", { "data-tab": name, text: name === "charts" ? "Charts" : "Compare" });
    button.addEventListener("click", () => showTab(name));
    return button;
  });
  const table = new RunsTable({
    project,
    selected,
    color: (runId) => style(runId).color,
    onToggle: (runId, on) => {
      if (on) selected.add(runId);
      else selected.delete(runId);
      explicitSelection = true;
      selectionChanged();
    },
    onSort: (next) => {
      sort = next;
      setQuery({ sort });
      void refresh();
    },
  });

  const splitter = h("div.splitter", { role: "separator", "aria-orientation": "vertical", title: "Drag to share the width between the runs and the charts; double-click to fit the table" });
  const layout = h(
      "div.project",
      {},
      h(
        "section.runs-pane",
        {},
        h("div.pane-head", {}, h("h1", { text: project }), count,
          h("a.artifacts-link", { href: artifactsHref(project), "data-link": true, text: "Artifacts" }),
          h("a.traces-link", { href: tracesHref(project), "data-link": true, text: "Traces" }),
          h("a.reports-link", { href: reportsHref(project), "data-link": true, text: "Reports" })),
        sweepsBox,
        h("div.toolbar", {}, searchInput, filterInput, columnsMenu, groupSelect),
        filterError,
        h("div.toolbar.selection", {}, h("span", { text: "Charts show:" }), selectTop, selectNone),
        table.el,
      ),
      splitter,
      h("section.charts-pane", {}, h("nav.tabs", {}, ...tabs), workspace.el, compare.el),
    );
  root.replaceChildren(layout);

  /** The runs pane's width: the one dragged to (kept in localStorage), else the table's fitted width,
   * within what leaves the charts room. */
  function fitSplit(): void {
    const total = layout.clientWidth || window.innerWidth;
    const chosen = Number(localStorage.getItem(SPLIT_KEY));
    const natural = table.naturalWidth() + PANE_CHROME;
    const width = chosen > 0 ? chosen : Math.min(natural, total * 0.55);
    layout.style.setProperty("--runs-width", `${Math.round(Math.max(MIN_RUNS_WIDTH, Math.min(width, total - MIN_CHARTS_WIDTH)))}px`);
  }
  splitter.addEventListener("pointerdown", (down: PointerEvent) => {
    if (down.button !== 0) return;
    down.preventDefault();
    splitter.setPointerCapture(down.pointerId);
    const start = (layout.firstElementChild as HTMLElement).getBoundingClientRect().width;
    layout.classList.add("resizing");
    const move = (event: PointerEvent) => {
      localStorage.setItem(SPLIT_KEY, String(Math.round(start + event.clientX - down.clientX)));
      fitSplit();
    };
    const up = () => {
      splitter.removeEventListener("pointermove", move);
      splitter.removeEventListener("pointerup", up);
      layout.classList.remove("resizing");
    };
    splitter.addEventListener("pointermove", move);
    splitter.addEventListener("pointerup", up);
  });
  splitter.addEventListener("dblclick", () => {
    localStorage.removeItem(SPLIT_KEY);
    fitSplit();
  });
  const onResize = debounce(() => fitSplit(), 100);
  window.addEventListener("resize", onResize);

  function showTab(name: "charts" | "compare"): void {
    tab = name;
    setQuery({ tab: name === "charts" ? null : name });
    for (const button of tabs) button.classList.toggle("on", button.dataset.tab === name);
    workspace.el.hidden = name !== "charts";
    compare.el.hidden = name !== "compare";
    compare.setVisible(name === "compare");
  }

  function drawGroupMenu(): void {
    const keys = availableColumns(rows).filter((c) => c.startsWith("config.")).map((c) => c.slice("config.".length));
    if (groupBy && groupBy !== SWEEP_GROUP && !keys.includes(groupBy)) keys.unshift(groupBy);
    const bySweep = hasSweeps || groupBy === SWEEP_GROUP || rows.some((row) => sweepOf(row) !== undefined);
    groupSelect.replaceChildren(
      h("option", { value: "", text: "No grouping" }),
      ...(bySweep ? [h("option", { value: SWEEP_GROUP, text: "Group: sweep" })] : []),
      ...keys.map((key) => h("option", { value: key, text: `Group: ${key}` })),
    );
    groupSelect.value = groupBy ?? "";
  }

  groupSelect.addEventListener("change", () => {
    groupBy = groupSelect.value || null;
    setQuery({ group: groupBy });
    table.setGroupBy(groupBy);
    workspace.setRunStyle(style);
    compare.setSelected(selectedRows());
  });

  function selectedRows(): RunRow[] {
    const inTable = new Set(rows.map((row) => row.run_id));
    return [...selected].filter((id) => inTable.has(id)).map((id) => known.get(id)!);
  }

  function selectionChanged(): void {
    setQuery({ sel: [...selected].join(",") || (explicitSelection ? "-" : null) });
    table.refreshSelection();
    void updateWorkspace();
  }

  /** Chart the selected runs that the table shows: a filter or search hides runs from the charts too
   * (they stay selected, so clearing the filter brings them back). */
  async function updateWorkspace(): Promise<void> {
    const inTable = new Set(rows.map((row) => row.run_id));
    workspace.setRuns([...selected].filter((id) => inTable.has(id)).map((id) => known.get(id)!));
    compare.setSelected(selectedRows());
  }

  function effectiveFilter(): string {
    const parts = [];
    if (filter.trim()) parts.push(`(${filter})`);
    const term = search.trim().replace(/["\\]/g, "");
    if (term) parts.push(`name ~ "${term}"`);
    return parts.join(" and ");
  }

  function drawColumnsMenu(): void {
    const list = columnsMenu.querySelector(".column-list")!;
    const chosen = columns ?? [];
    list.replaceChildren(
      ...availableColumns(rows).map((id) => {
        const box = h("input", { type: "checkbox", value: id });
        box.checked = chosen.includes(id);
        box.addEventListener("change", () => {
          columns = box.checked ? [...chosen.filter((c) => c !== id), id] : chosen.filter((c) => c !== id);
          setQuery({ cols: columns.join(",") || "-" });
          table.setColumns(columns, sort);
          fitSplit();
          drawColumnsMenu();
        });
        return h("label", {}, box, id);
      }),
    );
  }

  /** The sweeps list (on load, and when runs appear or end: a sweep's trials are runs). */
  async function loadSweeps(): Promise<void> {
    try {
      const { sweeps, total } = await api.sweeps(project);
      const had = hasSweeps;
      hasSweeps = sweeps.length > 0;
      sweepsBox.replaceChildren(sweepsList(project, sweeps, total));
      if (had !== hasSweeps) drawGroupMenu();
    } catch {
      /* a server without the sweep routes, or a refusal: no list */
    }
  }

  async function refresh(): Promise<void> {
    void loadSweeps();
    let response;
    try {
      response = await api.runs(project, { filter: effectiveFilter(), order_by: sort || undefined });
      filterError.hidden = true;
    } catch (error) {
      if (error instanceof ApiError && error.status === 400) {
        filterError.textContent = error.message;
        filterError.hidden = false;
        return;
      }
      throw error;
    }
    rows = response.runs;
    for (const row of rows) known.set(row.run_id, row);
    count.textContent = `${rows.length} run${rows.length === 1 ? "" : "s"}`;
    if (columns === null) columns = defaultColumns(rows);
    table.setColumns(columns, sort);
    table.setGroupBy(groupBy);
    table.setRows(rows);
    fitSplit();
    workspace.setRunStyle(style);
    compare.setRows(rows);
    drawColumnsMenu();
    drawGroupMenu();
    if (!explicitSelection && selected.size === 0 && rows.length) {
      for (const row of rows.slice(0, DEFAULT_SELECTION)) selected.add(row.run_id);
      table.refreshSelection();
    }
    await updateWorkspace();
  }

  /** Every 2 s: only the runs that are running or new since the newest we have. */
  async function poll(): Promise<void> {
    if (stopped) return;
    try {
      const newest = Math.max(0, ...rows.map((r) => r.created_at ?? 0));
      const base = effectiveFilter();
      const live = `(state = "running" or created > ${newest})`;
      const { runs: changed } = await api.runs(project, { filter: base ? `${base} and ${live}` : live, order_by: sort || undefined });
      const wasRunning = rows.filter((r) => r.state === "running").map((r) => r.run_id);
      const byId = new Map(changed.map((r) => [r.run_id, r]));
      const appeared = changed.some((r) => !rows.some((old) => old.run_id === r.run_id));
      const ended = wasRunning.some((id) => !byId.has(id));
      if (appeared || ended) await refresh();
      else if (changed.length) {
        rows = rows.map((r) => byId.get(r.run_id) ?? r);
        for (const row of changed) known.set(row.run_id, row);
        table.setRows(rows);
        await updateWorkspace();
      }
    } catch {
      /* the next poll tries again */
    }
    if (!stopped) pollTimer = window.setTimeout(() => void poll(), POLL_MS);
  }

  filterInput.addEventListener("keydown", (event) => {
    if (event.key !== "Enter") return;
    filter = filterInput.value;
    setQuery({ filter });
    void refresh();
  });
  searchInput.addEventListener(
    "input",
    debounce(() => {
      search = searchInput.value;
      setQuery({ q: search });
      void refresh();
    }, 200),
  );
  selectTop.addEventListener("click", () => {
    selected.clear();
    for (const row of rows.slice(0, DEFAULT_SELECTION)) selected.add(row.run_id);
    explicitSelection = true;
    selectionChanged();
  });
  selectNone.addEventListener("click", () => {
    selected.clear();
    explicitSelection = true;
    selectionChanged();
  });

  selected.delete("-");
  showTab(tab as "charts" | "compare");
  await refresh();
  pollTimer = window.setTimeout(() => void poll(), POLL_MS);
  return () => {
    stopped = true;
    clearTimeout(pollTimer);
    window.removeEventListener("resize", onResize);
    workspace.destroy();
    compare.destroy();
  };
}
