// The runs table: virtualised rows (only the rows in view exist in the DOM, so thousands of runs
// scroll smoothly), a checkbox and a stable colour per run, sortable columns (sorted by the server,
// with the API's sort syntax), chosen config and summary columns, and optionally groups by a
// config key (a collapsible header row per value, with its count; runs keep the server's order).

import type { RunRow } from "../api";
import { runColor } from "../colors";
import { mark, registerProbe } from "../debug";
import { h } from "../dom";
import { fmtDuration, fmtTime, fmtUser, fmtValue, keyPath, lookup, runtime } from "../format";
import { runHref } from "../router";
import { groupRuns, type RunGroup } from "./groups";

export const ROW_HEIGHT = 30;
const SELECT_COLUMN = 28; // the checkbox column
const CELL_PADDING = 12 + 6; // .td's padding, and a little room for rounding between canvas and layout
const MIN_COLUMN = 48;

/** Width in CSS pixels of a text in a CSS font (a canvas' measureText: no layout). */
function textMeasurer(font: string): (text: string) => number {
  const context = document.createElement("canvas").getContext("2d")!;
  context.font = font;
  const cache = new Map<string, number>();
  return (text) => {
    let width = cache.get(text);
    if (width === undefined) {
      width = context.measureText(text).width;
      if (cache.size < 5000) cache.set(text, width);
    }
    return width;
  };
}

interface Column {
  id: string; // what the header shows and what a sort names (name, state, created, config.lr, ...)
  label: string;
  width: number;
  sort: string | null; // the API's sort field, or null when the server can't sort by it
  cell: (row: RunRow) => string | HTMLElement;
  key?: { section: "config" | "summary"; dotted: string }; // a config or summary column's key
}

/** `config.a.b` as a sort/filter field: bare when the key is plain, quoted otherwise. `parts`:
 * the keys the name takes (`keyPath`), when one holds a dot (`summary."exact.correct"`). */
export function fieldName(section: "config" | "summary", dotted: string, parts: string[] = dotted.split(".")): string {
  const plain = parts.every((p) => /^[A-Za-z_][A-Za-z0-9_/-]*$/.test(p));
  return plain ? `${section}.${parts.join(".")}` : `${section}.${parts.map((p) => JSON.stringify(p)).join(".")}`;
}

export interface TableOptions {
  project: string;
  selected: Set<string>;
  onToggle: (runId: string, on: boolean) => void;
  onSort: (sort: string) => void;
  /** A run's colour (its own, or its group's when grouped). */
  color?: (runId: string) => string;
}

type Item = { group: RunGroup; run?: undefined } | { run: RunRow; group?: undefined };

export class RunsTable {
  readonly el: HTMLElement;
  private readonly body: HTMLElement;
  private readonly spacer: HTMLElement;
  private readonly header: HTMLElement;
  private rows: RunRow[] = [];
  private items: Item[] = [];
  private groups: RunGroup[] = [];
  private groupKey: string | null = null;
  private readonly collapsed = new Set<string>();
  private columns: Column[] = [];
  private sort = "";
  private frame = 0;

  constructor(private readonly options: TableOptions) {
    this.header = h("div.thead");
    this.spacer = h("div.spacer");
    this.body = h("div.tbody", {}, this.spacer);
    this.body.addEventListener("scroll", () => {
      this.header.scrollLeft = this.body.scrollLeft;
      this.schedule();
    });
    new ResizeObserver(() => this.schedule()).observe(this.body);
    this.body.addEventListener("change", (event) => {
      const box = event.target as HTMLInputElement;
      if (box.matches("input.select")) this.options.onToggle(box.dataset.run!, box.checked);
    });
    this.body.addEventListener("click", (event) => {
      const toggle = (event.target as HTMLElement).closest(".group-toggle") as HTMLElement | null;
      if (!toggle) return;
      const id = toggle.dataset.group!;
      if (this.collapsed.has(id)) this.collapsed.delete(id);
      else this.collapsed.add(id);
      this.layoutItems();
    });
    this.el = h("div.runs-table", {}, this.header, this.body);
    registerProbe("table", () => ({
      groupBy: this.groupKey,
      groups: this.groups.map((g) => ({ id: g.id, label: g.label, color: g.color, runs: g.runs.map((r) => r.run_id), collapsed: this.collapsed.has(g.id) })),
    }));
  }

  /** Group rows by a config key (dotted, without `config.`), or not at all (null). */
  setGroupBy(key: string | null): void {
    if (key !== this.groupKey) this.collapsed.clear();
    this.groupKey = key;
    this.layoutItems();
  }

  /** The group of a run in the table (undefined when not grouped or not in the table). */
  groupOf(runId: string): RunGroup | undefined {
    return this.groupByRun.get(runId);
  }

  private groupByRun = new Map<string, RunGroup>();

  private layoutItems(): void {
    this.groups = this.groupKey ? groupRuns(this.rows, this.groupKey) : [];
    this.groupByRun = new Map(this.groups.flatMap((group) => group.runs.map((run) => [run.run_id, group] as [string, RunGroup])));
    this.items = this.groupKey
      ? this.groups.flatMap((group): Item[] => [{ group }, ...(this.collapsed.has(group.id) ? [] : group.runs.map((run) => ({ run })))])
      : this.rows.map((run) => ({ run }));
    this.spacer.style.height = `${this.items.length * ROW_HEIGHT}px`;
    this.render(true);
  }

  /** Each column as wide as its header and the widest of the first rows' cells (measured in the
   * table's own font), between MIN and MAX, so dates, runtimes and config/summary names aren't cut. */
  private fitColumns(): void {
    const style = getComputedStyle(this.el);
    const family = style.fontFamily || "system-ui, sans-serif";
    const size = style.fontSize || "13px";
    const measure = textMeasurer(`${size} ${family}`);
    const bold = textMeasurer(`600 ${size} ${family}`);
    const small = textMeasurer(`11px ${family}`);
    const sample = this.rows.slice(0, 200);
    for (const column of this.columns) {
      let width = bold(`${column.label} ▼`) + CELL_PADDING;
      for (const row of sample) {
        if (column.id === "state") width = Math.max(width, small(row.state) + 12 + CELL_PADDING);
        else if (column.id === "name") width = Math.max(width, measure(row.name || row.run_id) + 16 + CELL_PADDING);
        else {
          const value = column.cell(row);
          width = Math.max(width, measure(typeof value === "string" ? value : value.textContent ?? "") + CELL_PADDING);
        }
      }
      const max = column.id === "name" ? 320 : 260;
      column.width = Math.ceil(Math.min(max, Math.max(MIN_COLUMN, width)));
    }
  }

  /** The table's width with every column as fitted (what the runs pane needs to show it whole). */
  naturalWidth(): number {
    return SELECT_COLUMN + this.columns.reduce((sum, c) => sum + c.width, 0);
  }

  setColumns(extra: string[], sort: string): void {
    this.sort = sort;
    const base: Column[] = [
      { id: "name", label: "Name", width: 170, sort: "name", cell: (r) => this.nameCell(r) },
      { id: "state", label: "State", width: 80, sort: "state", cell: (r) => h("span.state", { "data-state": r.state, text: r.state }) },
      { id: "user", label: "User", width: 80, sort: "user", cell: (r) => this.userCell(r) },
      { id: "created", label: "Created", width: 122, sort: "created", cell: (r) => fmtTime(r.created_at) },
      { id: "runtime", label: "Runtime", width: 72, sort: null, cell: (r) => fmtDuration(runtime(r)) },
      { id: "tags", label: "Tags", width: 90, sort: null, cell: (r) => (r.tags ?? []).join(", ") },
    ];
    const chosen = extra.map((id): Column => {
      const [section, ...rest] = id.split(".");
      const dotted = rest.join(".");
      const sectionName = section === "summary" ? "summary" : "config";
      return {
        id,
        label: id,
        width: 110,
        sort: fieldName(sectionName, dotted, this.keysOf(sectionName, dotted)),
        cell: (r) => fmtValue(lookup(sectionName === "summary" ? r.summary : r.config, dotted)),
        key: { section: sectionName, dotted },
      };
    });
    this.columns = [...base, ...chosen];
    this.fitColumns();
    this.drawHeader();
    this.render(true);
  }

  /** The keys `dotted` takes in the rows that have it (see `keyPath`); split at every dot when none has. */
  private keysOf(section: "config" | "summary", dotted: string): string[] {
    for (const row of this.rows) {
      const path = keyPath(section === "summary" ? row.summary : row.config, dotted);
      if (path) return path;
    }
    return dotted.split(".");
  }

  setRows(rows: RunRow[]): void {
    this.rows = rows;
    for (const column of this.columns) {
      if (column.key) column.sort = fieldName(column.key.section, column.key.dotted, this.keysOf(column.key.section, column.key.dotted));
    }
    this.fitColumns();
    this.drawHeader();
    this.layoutItems();
    mark("first-rows");
  }

  /** Redraw checkboxes after the selection changed elsewhere. */
  refreshSelection(): void {
    this.render(true);
  }

  private template(): string {
    return `${SELECT_COLUMN}px ${this.columns.map((c) => `${c.width}px`).join(" ")}`;
  }

  private drawHeader(): void {
    const cells = this.columns.map((column) => {
      const active = this.sort === column.sort || this.sort === `-${column.sort}`;
      const arrow = active ? (this.sort.startsWith("-") ? " ▼" : " ▲") : "";
      const cell = h("div.th", { "data-col": column.id, title: column.sort ? `Sort by ${column.sort}` : column.label }, column.label + arrow);
      if (column.sort) {
        cell.classList.add("sortable");
        cell.addEventListener("click", () => {
          const next = this.sort === column.sort ? `-${column.sort}` : column.sort!;
          this.options.onSort(next);
        });
      }
      return cell;
    });
    this.header.style.gridTemplateColumns = this.template();
    this.spacer.style.width = `${this.naturalWidth()}px`;
    this.header.replaceChildren(h("div.th"), ...cells);
  }

  private schedule(): void {
    if (this.frame) return;
    this.frame = requestAnimationFrame(() => {
      this.frame = 0;
      this.render(false);
    });
  }

  private drawn = { first: -1, last: -1 };

  private render(force: boolean): void {
    const top = this.body.scrollTop;
    const height = this.body.clientHeight || 600;
    const first = Math.max(0, Math.floor(top / ROW_HEIGHT) - 8);
    const last = Math.min(this.items.length, Math.ceil((top + height) / ROW_HEIGHT) + 8);
    if (!force && first === this.drawn.first && last === this.drawn.last) return;
    this.drawn = { first, last };
    const template = this.template();
    const rows: HTMLElement[] = [];
    for (let i = first; i < last; i++) {
      const item = this.items[i];
      if (item.group) {
        rows.push(this.groupRow(item.group, i));
        continue;
      }
      const run = item.run;
      const box = h("input.select", { type: "checkbox", "data-run": run.run_id, title: "Show in charts" });
      box.checked = this.options.selected.has(run.run_id);
      const row = h(
        "div.tr",
        { "data-run": run.run_id, style: `transform:translateY(${i * ROW_HEIGHT}px);grid-template-columns:${template}` },
        h("div.td", {}, box),
        ...this.columns.map((column) => {
          const value = column.cell(run);
          const cell = h("div.td", { "data-col": column.id }, value);
          if (typeof value === "string") cell.title = value;
          return cell;
        }),
      );
      if (box.checked) row.classList.add("selected");
      rows.push(row);
    }
    this.body.replaceChildren(this.spacer, ...rows);
  }

  private groupRow(group: RunGroup, index: number): HTMLElement {
    const open = !this.collapsed.has(group.id);
    return h(
      "div.tr.group-row",
      { "data-group": group.id, style: `transform:translateY(${index * ROW_HEIGHT}px)` },
      h(
        "button.group-toggle",
        { "data-group": group.id, title: open ? "Collapse" : "Expand", "aria-expanded": String(open) },
        h("span.caret", { text: open ? "▾" : "▸" }),
        h("i.swatch", { style: `background:${group.color}` }),
        h("span.group-label", { text: group.label }),
        h("span.group-count", { text: `${group.runs.length} run${group.runs.length === 1 ? "" : "s"}` }),
      ),
    );
  }

  private userCell(run: RunRow): HTMLElement {
    const user = run.user;
    const title = !user ? "not recorded" : user.verified ? "verified by the API key that uploaded the run"
      : "unverified: the OS user name the run's client recorded";
    return h("span.user", { title, "data-verified": user ? String(user.verified) : "", text: fmtUser(user) });
  }

  private nameCell(run: RunRow): HTMLElement {
    return h(
      "span.name",
      {},
      h("i.swatch", { style: `background:${(this.options.color ?? runColor)(run.run_id)}` }),
      h("a", { href: runHref(this.options.project, run.run_id), "data-link": true, text: run.name || run.run_id }),
    );
  }
}
