// The table panel (docs/tables.md, "In the dashboard"): one logged table of a run, paged by the
// server through DuckDB into a virtualised grid (table-grid.ts). Sort by a header, filter with the
// table filter language (a bad filter shows the server's message and keeps the rows shown), group
// by a column (counts and means; a click on a group filters to it), pick the version (v<n>: one per
// log, so two writers of a shared run logging the key at one step are two choices) of a
// MUTABLE or INCREMENTAL table, and compare with a table of this or another run (the same key or
// another, with columns of its own) joined on a key column the two tables share.
// Media cells show their thumbnails, fetched only for the rows in view, with an image's masks and
// boxes drawn over them (media.ts), and at full size (each mask and box group toggled) on a click.

import "./table.css";

import { api, ApiError, latestTableVersions, tableBlob, tableVersionsFrom, type TableGroups, type TableRows, type TableVersion } from "../api";
import { registerProbe } from "../debug";
import { h } from "../dom";
import { fmtValue } from "../format";
import { boxesSvg, maskCanvas, plotlyFrame, toggle, type BoxGroup } from "../media";
import { runHref } from "../router";
import { tableChart } from "./table-chart";
import { TableGrid, isMedia, type Column, type PageFetcher, type SortState } from "./table-grid";

// run/key/digest -> object URL (content-addressed: the same bytes under any version). Only files
// fetched are kept: a failed fetch (a 404 under one version, a dropped connection) is asked again by
// the next cell that shows the digest, which may name another version.
const blobs = new Map<string, Promise<string>>();
const LISTED_VERSIONS = 10000; // the versions a panel lists (a key's latest)

function blobUrl(project: string, runId: string, key: string, digest: string,
  at: { version?: number; step?: number } = {}): Promise<string> {
  const id = `${project}/${runId}/${key}/${digest}`;
  const kept = blobs.get(id);
  if (kept) return kept;
  const url = tableBlob(project, runId, key, digest, at).then((blob) => URL.createObjectURL(blob));
  blobs.set(id, url);
  url.catch(() => {
    if (blobs.get(id) === url) blobs.delete(id);
  });
  return url;
}

interface CellMask { name: string; digest: string; width: number; height: number }
interface CellBoxes { name: string; class_labels: { id: number; label: string }[]; boxes: CellBox[] }
interface CellBox {
  min_x: number; max_x: number; min_y: number; max_y: number; pixel: boolean; class_id: number; caption: string;
  scores: { name: string; value: number }[];
}

/** A cell's box group in the shape the media card draws (labels and scores keyed by name). */
function boxGroup(group: CellBoxes): BoxGroup {
  return {
    name: group.name,
    class_labels: Object.fromEntries((group.class_labels ?? []).map((entry) => [String(entry.id), entry.label])),
    boxes: (group.boxes ?? []).map((box) => ({ ...box, scores: Object.fromEntries((box.scores ?? []).map((s) => [s.name, s.value])) })),
  };
}

/** `image` in a frame with the cell's masks (canvases) and box groups (SVG) over it; with
 * `toggles`, a checkbox per layer is added there. The layers stretch with the image. */
function overlaid(image: HTMLImageElement, cell: Record<string, unknown>, url: (digest: string) => Promise<string>,
  toggles?: HTMLElement): HTMLElement {
  const masks = (cell.masks as CellMask[] | null) ?? [];
  const groups = (cell.boxes as CellBoxes[] | null) ?? [];
  if (!masks.length && !groups.length) return image;
  const frame = h("span.media-frame.tp-frame", {}, image);
  const size = { width: Number(cell.width) || 1, height: Number(cell.height) || 1 };
  for (const mask of masks) {
    const slot = h("span.tp-layer", { "data-name": mask.name });
    frame.append(slot);
    void url(mask.digest).then((u) => maskCanvas(u, mask.name)).then((canvas) => {
      slot.replaceWith(canvas);
      toggles?.append(toggle(mask.name, canvas));
    }).catch(() => slot.remove());
  }
  for (const group of groups) {
    const svg = boxesSvg(size, boxGroup(group));
    frame.append(svg);
    toggles?.append(toggle(group.name, svg));
  }
  return frame;
}

export const tableHref = (project: string, runId: string, key: string) =>
  `${runHref(project, runId)}/tables/${key.split("/").map(encodeURIComponent).join("/")}`;

/** A filter condition matching `value` in `column` (for a click on a group; `numeric`: a number
 * column): the filter language takes any JSON string as a string, NaN and Infinity as numbers, and a
 * backtick doubled inside a quoted column name. */
function conditionFor(column: string, value: unknown, numeric: boolean): string {
  const name = /^[A-Za-z_][A-Za-z0-9_./-]*$/.test(column) ? column : "`" + column.replaceAll("`", "``") + "`";
  if (value === null || value === undefined) return `${name} is null`;
  if (typeof value === "number" || typeof value === "boolean") return `${name} = ${value}`;
  // a number column's NaN and infinities arrive as JSON's texts of them, which the language takes as numbers
  if (numeric && (value === "NaN" || value === "Infinity" || value === "-Infinity")) return `${name} = ${value}`;
  return `${name} = ${JSON.stringify(String(value))}`;
}

interface Compare {
  runId: string;
  key: string; // the other table's key (this panel's key unless chosen)
  on: string;
}

/** What a table page keeps in its URL (filter, sort, group, version, compared run and key column). */
export interface PanelState {
  filter: string;
  sort: SortState;
  group: string;
  version: number | null; // run-table version v<n> (table-versions' `version`); null: the latest
  step: number | null; // a link from before versions were numbered: the last version at this step
  compare: Compare | null;
}

export class TablePanel {
  readonly el: HTMLElement;
  private readonly versionSelect = h("select.tp-version", { title: "The version to show" });
  private readonly filterInput = h("input.tp-filter", { type: "search", placeholder: "Filter: score > 0.9 and label = 'cat'" });
  private readonly groupSelect = h("select.tp-group", { title: "Group rows by a column" });
  private readonly compareSelect = h("select.tp-compare", { title: "Compare with a run's table" });
  private readonly compareKeySelect = h("select.tp-compare-key", { title: "The other run's table to compare with", hidden: true });
  private readonly onSelect = h("select.tp-on", { title: "The key column to join on", hidden: true });
  private readonly error = h("div.tp-error", { hidden: true });
  private readonly count = h("span.tp-count.muted");
  private readonly groups = h("div.tp-groups", { hidden: true });
  private readonly chart = h("div.tp-chart", { hidden: true }); // the chart it was logged with (wandb.plot.*)
  private chartFor = ""; // the version the chart shown was drawn from
  private readonly grid: TableGrid;
  private columns: Column[] = [];
  private versions: TableVersion[] = []; // the last LISTED_VERSIONS
  private versionsCursor: string | null = null; // where versions logged since the last ask start
  private versionsTotal = 0; // the key's versions in all, as last asked
  private rowsBehind = false; // a live refresh's rows request failed: ask again at the next poll
  private version: number | null = null;
  private step: number | null = null; // only from a link that names a step (no version)
  private filter = "";
  private sort: SortState = null;
  private groupBy = "";
  private compare: Compare | null = null;
  private loaded = 0;
  private readonly unregister: () => void;

  constructor(
    private readonly project: string,
    private readonly runId: string,
    readonly key: string,
    private readonly options: { tall?: boolean; state?: Partial<PanelState>; onState?: (state: PanelState) => void } = {},
  ) {
    const initial = options.state ?? {};
    this.filter = initial.filter ?? "";
    this.filterInput.value = this.filter;
    this.sort = initial.sort ?? null;
    this.groupBy = initial.group ?? "";
    this.version = initial.version ?? null;
    this.step = this.version === null ? (initial.step ?? null) : null;
    this.compare = initial.compare ?? null;
    this.grid = new TableGrid(key, this.fetcher(), (column, value) => this.cell(column, value), (column) => void this.toggleSort(column), (error) => this.showError(error));
    this.filterInput.addEventListener("keydown", (event) => {
      if (event.key === "Enter") void this.setFilter(this.filterInput.value.trim());
    });
    this.filterInput.addEventListener("search", () => {
      if (!this.filterInput.value) void this.setFilter("");
    });
    this.versionSelect.addEventListener("change", () => {
      this.version = this.versionSelect.value === "" ? null : Number(this.versionSelect.value);
      this.step = null;
      void this.reload();
    });
    this.groupSelect.addEventListener("change", () => {
      this.groupBy = this.groupSelect.value;
      void this.reload();
    });
    this.compareSelect.addEventListener("change", () => void this.chooseCompare());
    this.compareKeySelect.addEventListener("change", () => void this.chooseCompare(this.compareKeySelect.value));
    this.onSelect.addEventListener("change", () => {
      if (this.compare) this.compare.on = this.onSelect.value;
      void this.reload();
    });
    const toolbar = h(
      "div.tp-toolbar",
      {},
      this.versionSelect,
      this.filterInput,
      this.groupSelect,
      this.compareSelect,
      this.compareKeySelect,
      this.onSelect,
      this.count,
      options.tall ? null : h("a.tp-open", { href: tableHref(project, runId, key), "data-link": true, text: "Open ↗" }),
    );
    this.el = h(`div.table-panel${options.tall ? ".tall" : ""}` as "div", { "data-key": key }, toolbar, this.error, this.chart, this.groups, this.grid.el);
    this.unregister = registerProbe(`table-panel:${key}`, () => ({
      loaded: this.loaded,
      filter: this.filter,
      sort: this.sort,
      version: this.version,
      step: this.step,
      groupBy: this.groupBy,
      compare: this.compare,
      error: this.error.hidden ? null : this.error.textContent,
      total: this.grid.rowCount,
    }));
  }

  /** Versions, the other runs that logged this key and the first page, asked for at once (the
   * rows don't wait for the versions: a round trip less before a table opened at its URL shows). */
  async load(): Promise<void> {
    const asked = this.queryState();
    const first = this.compare ? undefined : this.firstPage();
    first?.catch(() => undefined); // handled where reload() awaits it: no unhandled rejection meanwhile
    const [listed, { runs }] = await Promise.all([
      latestTableVersions(this.project, this.runId, this.key),
      api.runs(this.project, { limit: 1000 }),
    ]);
    const versions = this.keepVersions(listed.versions, listed);
    if (this.step !== null) {
      // a link naming a step: the version the server reads there (the last one listed at or before it)
      const step = this.step;
      const found = versions.filter((v) => v.step <= step).pop();
      if (found) [this.version, this.step] = [found.version, null];
    }
    this.listVersions(versions);
    this.compareSelect.replaceChildren(
      h("option", { value: "", text: "Compare with…" }),
      h("option", { value: this.runId, text: "this run" }),
      ...runs.filter((run) => run.run_id !== this.runId).map((run) => h("option", { value: run.run_id, text: run.name || run.run_id })),
    );
    this.versionSelect.value = this.version === null ? "" : String(this.version);
    if (this.compare) {
      const compare = this.compare;
      this.compareSelect.value = compare.runId;
      const keys = await api.tableKeys(this.project, compare.runId).then((found) => found.keys, () => [compare.key]);
      const listed = keys.filter((k) => compare.runId !== this.runId || k !== this.key);
      if (!listed.includes(compare.key)) listed.push(compare.key);
      this.compareKeySelect.replaceChildren(...listed.map((k) => h("option", { value: k, text: k, selected: k === compare.key })));
      this.compareKeySelect.hidden = false;
      this.onSelect.replaceChildren(h("option", { value: this.compare.on, text: `on ${this.compare.on}` }));
      this.onSelect.hidden = false;
    }
    // the query changed meanwhile (a filter typed, a header clicked): that one's rows instead
    await this.reload(this.queryState() === asked ? first : undefined);
  }

  /** What the first page depends on, to tell whether one asked for earlier is still this query's. */
  private queryState(): string {
    return JSON.stringify([this.filter, this.sort, this.version, this.step, this.groupBy, this.compare]);
  }

  /** A live run: new versions are listed, and the rows are asked again when the latest is shown.
   * A failed ask leaves `rowsBehind` set, so the next poll asks again even though the versions
   * it lists are then unchanged (without it the panel kept the old rows for good). */
  async refresh(): Promise<void> {
    // Only the versions logged since the last ask (from its cursor); all again where one came
    // before it (a shared run's writer whose label sorts before another's: the total says so).
    let since = await tableVersionsFrom(this.project, this.runId, this.key, this.versionsCursor);
    let versions = [...this.versions, ...since.versions];
    if (since.total !== this.versionsTotal + since.versions.length) {
      since = await latestTableVersions(this.project, this.runId, this.key);
      versions = since.versions;
    } else if (since.versions.length === 0 && !this.rowsBehind) {
      return;
    }
    versions = this.keepVersions(versions, since);
    if (!versions.length) return;
    const chosen = this.versionSelect.value;
    this.listVersions(versions);
    this.versionSelect.value = chosen;
    this.rowsBehind = false;
    if (this.version !== null || this.step !== null || this.groupBy) return;
    const fetcher = this.fetcher();
    try {
      const first = await fetcher(0, 200, new AbortController().signal);
      this.grid.refresh(fetcher, first);
      this.showCount(first);
    } catch {
      this.rowsBehind = true; // the next poll tries again
    }
  }

  destroy(): void {
    this.grid.destroy();
    this.unregister();
  }

  /** Keep the last LISTED_VERSIONS of `versions` and where the next ask starts. */
  private keepVersions(versions: TableVersion[], asked: { cursor: string | null; total: number }): TableVersion[] {
    this.versions = versions.slice(-LISTED_VERSIONS);
    this.versionsCursor = asked.cursor;
    this.versionsTotal = asked.total;
    return this.versions;
  }

  /** The version choices: the latest, then each version (v<n>, its step and rows), newest first;
   * hidden for a table logged once, immutable. */
  private listVersions(versions: TableVersion[]): void {
    const last = versions[versions.length - 1];
    this.versionSelect.replaceChildren(
      h("option", { value: "", text: last ? `latest (v${last.version}, step ${last.step})` : "latest" }),
      ...versions
        .slice()
        .reverse()
        .map((v) => h("option", { value: v.version, text: `v${v.version} · step ${v.step} · ${v.rows} rows` })),
    );
    this.versionSelect.hidden = !(versions.some((v) => v.log_mode !== "IMMUTABLE") || versions.length > 1);
  }

  /** Which version the panel shows, as the table routes take it. */
  private chosen(): { version?: number; step?: number } {
    if (this.version !== null) return { version: this.version };
    return this.step !== null ? { step: this.step } : {};
  }

  private fetcher(): PageFetcher {
    const { filter, sort, compare } = this;
    const chosen = this.chosen();
    const query = { filter: filter || undefined, sort: sort?.column, descending: sort?.descending };
    if (compare)
      return (offset, limit, signal) =>
        api.tableJoin(
          this.project,
          { ...query, offset, limit, a_run: this.runId, a_key: this.key, a_step: chosen.step, a_version: chosen.version, b_run: compare.runId, b_key: compare.key, on: compare.on },
          signal,
        );
    return (offset, limit, signal) => api.table(this.project, this.runId, this.key, { ...query, offset, limit, ...chosen }, signal);
  }

  /** The first page of the current query (and its groups, when grouped). */
  private firstPage(): Promise<[TableRows, TableGroups | null]> {
    return Promise.all([
      this.fetcher()(0, 200, new AbortController().signal),
      this.groupBy && !this.compare
        ? api.tableGroups(this.project, this.runId, this.key, { by: this.groupBy, ...this.chosen(), filter: this.filter || undefined, limit: 1000 })
        : Promise.resolve(null),
    ]);
  }

  /** Ask for the first page of the current query (or take `started`, the same query already
   * asked for); only if it succeeds does the grid change. */
  private async reload(started?: Promise<[TableRows, TableGroups | null]>): Promise<void> {
    const fetcher = this.fetcher();
    let first: TableRows;
    let grouped: TableGroups | null = null;
    try {
      [first, grouped] = await (started ?? this.firstPage());
    } catch (error) {
      this.showError(error as Error);
      return;
    }
    this.error.hidden = true;
    this.columns = first.columns;
    this.refreshGroupChoices();
    this.grid.reset(fetcher, first, this.sort);
    this.showGroups(grouped);
    this.showCount(first);
    await this.showChart(first);
    this.loaded++;
    this.options.onState?.({ filter: this.filter, sort: this.sort, group: this.groupBy, version: this.version, step: this.step, compare: this.compare });
  }

  /** The chart the version shown was logged with, drawn from its rows (table-chart.ts); none
   * while comparing (the rows are a join) or when the table has none. */
  private async showChart(first: TableRows): Promise<void> {
    const version = this.compare || !first.chart ? "" : `${this.version ?? ""}:${first.step}`;
    if (version === this.chartFor) return;
    this.chartFor = version;
    const drawn = version && first.chart
      ? await tableChart(this.project, this.runId, this.key, this.chosen(), first.chart).catch(() => null)
      : null;
    this.chart.replaceChildren(...(drawn ? [drawn] : []));
    this.chart.hidden = !drawn;
  }

  private showCount(first: TableRows): void {
    const version = this.version;
    const rows = (version !== null ? this.versions.find((v) => v.version === version) : this.versions.filter((v) => v.step === first.step).pop())?.rows;
    this.count.textContent = `${first.total.toLocaleString("en")} ${this.filter && rows !== undefined && !this.compare ? `of ${rows.toLocaleString("en")} ` : ""}rows` + (this.compare ? " joined" : "");
    this.el.dataset.total = String(first.total);
  }

  private async setFilter(filter: string): Promise<void> {
    const before = this.filter;
    this.filter = filter;
    await this.reload();
    if (!this.error.hidden) this.filter = before; // the rows shown are still the previous filter's
  }

  private async toggleSort(column: string): Promise<void> {
    const before = this.sort;
    this.sort = this.sort?.column !== column ? { column, descending: false } : this.sort.descending ? null : { column, descending: true };
    await this.reload();
    if (!this.error.hidden) this.sort = before;
  }

  /** Compare with the chosen run's table `key` (by default this panel's key when that run logged
   * it, else its first table): its keys are listed, and the join's key column is one both tables
   * have (a column named id or key first). */
  private async chooseCompare(key?: string): Promise<void> {
    const runId = this.compareSelect.value;
    this.error.hidden = true;
    if (!runId) {
      this.compare = null;
      this.onSelect.hidden = true;
      this.compareKeySelect.hidden = true;
      void this.reload();
      return;
    }
    let keys: string[];
    let otherColumns: Column[];
    try {
      keys = (await api.tableKeys(this.project, runId)).keys.filter((k) => runId !== this.runId || k !== this.key);
      const chosen = key && keys.includes(key) ? key : keys.includes(this.key) ? this.key : keys[0];
      if (chosen === undefined) throw new Error(`run ${runId} logged no ${runId === this.runId ? "other " : ""}table`);
      key = chosen;
      otherColumns = (await api.table(this.project, runId, key, { offset: 0, limit: 1 })).columns;
    } catch (error) {
      this.showError(error as Error);
      return;
    }
    this.compareKeySelect.replaceChildren(...keys.map((k) => h("option", { value: k, text: k, selected: k === key })));
    this.compareKeySelect.hidden = false;
    const keyable = (columns: Column[]) =>
      columns.filter((c) => !isMedia(c) && !/^(struct|list|large_list|map|double|float)/.test(c.type)).map((c) => c.name.replace(/^[ab]\./, ""));
    const mine = this.compare ? this.columns.filter((c) => c.name.startsWith("a.") || c.name === this.compare?.on) : this.columns;
    const theirs = new Set(keyable(otherColumns));
    const shared = [...new Set(keyable(mine))].filter((name) => theirs.has(name));
    if (!shared.length) {
      this.showError(new Error(`table ${key} of run ${runId} has no column in common with this one to join on`));
      return;
    }
    const on = this.compare?.on && shared.includes(this.compare.on) ? this.compare.on : (shared.find((n) => /(^|_)(id|key)$/i.test(n)) ?? shared[0]);
    this.compare = { runId, key, on };
    this.onSelect.replaceChildren(...shared.map((name) => h("option", { value: name, text: `on ${name}`, selected: name === on })));
    this.onSelect.hidden = false;
    this.sort = null;
    void this.reload();
  }

  private refreshGroupChoices(): void {
    if (this.compare) {
      this.groupSelect.hidden = true;
      return;
    }
    this.groupSelect.hidden = false;
    const current = this.groupBy;
    const groupable = this.columns.filter((c) => !isMedia(c) && !/^(struct|list|large_list|map)/.test(c.type));
    this.groupSelect.replaceChildren(
      h("option", { value: "", text: "Group: none" }),
      ...groupable.map((c) => h("option", { value: c.name, text: `Group: ${c.name}`, selected: c.name === current })),
    );
  }

  private showGroups(grouped: TableGroups | null): void {
    if (!grouped) {
      this.groups.hidden = true;
      this.grid.el.hidden = false;
      return;
    }
    const head = h("tr", {}, h("th", { text: grouped.by }), h("th", { text: "rows" }), ...grouped.means_of.map((name) => h("th", { text: `mean ${name}` })));
    const rows = grouped.groups.map((group) => {
      const row = h(
        "tr.tp-group-row",
        { "data-value": JSON.stringify(group.value) },
        h("td", { text: group.value === null ? "(null)" : fmtValue(group.value) }),
        h("td.num", { text: String(group.count) }),
        ...grouped.means_of.map((name) => h("td.num", { text: fmtValue(group.means[name]) })),
      );
      row.addEventListener("click", () => {
        const type = this.columns.find((c) => c.name === grouped.by)?.type ?? "";
        const condition = conditionFor(grouped.by, group.value, /^(u?int|float|double|halffloat|decimal)/.test(type));
        this.filterInput.value = this.filter ? `(${this.filter}) and ${condition}` : condition;
        this.groupBy = "";
        void this.setFilter(this.filterInput.value);
      });
      return row;
    });
    const more = grouped.total_groups > grouped.groups.length ? h("p.muted", { text: `the ${grouped.groups.length} largest of ${grouped.total_groups} groups` }) : null;
    this.groups.replaceChildren(h("table.tp-group-table", {}, h("thead", {}, head), h("tbody", {}, ...rows)), more ?? "");
    this.groups.hidden = false;
    this.grid.el.hidden = true;
  }

  private showError(error: Error): void {
    this.error.textContent = error instanceof ApiError ? error.message : String(error);
    this.error.hidden = false;
  }

  private cell(column: Column, value: unknown): string | Node {
    if (value === null || value === undefined) return "";
    if (isMedia(column) && typeof value === "object") return this.mediaCell(column, value as Record<string, unknown>);
    if (typeof value === "object") return JSON.stringify(value);
    return fmtValue(value);
  }

  private mediaCell(column: Column, cell: Record<string, unknown>): Node {
    const kind = String(cell.kind ?? "");
    const other = this.compare && column.name.startsWith("b.") ? this.compare : null;
    const runId = other ? other.runId : this.runId;
    const key = other ? other.key : this.key;
    const at = other ? {} : this.chosen(); // the compared table is its latest version
    const digest = String(cell.digest ?? "");
    const caption = String(cell.caption ?? "");
    const open = () => void this.openMedia(runId, key, kind, digest, caption, String(cell.format ?? ""), undefined, at);
    if (kind !== "image") {
      const button = h("button.tp-media", { type: "button", title: caption, text: `▶ ${kind} (${String(cell.format ?? "")})` });
      button.addEventListener("click", open);
      return button;
    }
    const image = h("img.tp-thumb", { alt: caption || column.name, title: caption, "data-digest": digest });
    const shown = overlaid(image, cell, (d) => blobUrl(this.project, runId, key, d, at));
    shown.addEventListener("click", () => void this.openMedia(runId, key, kind, digest, caption, String(cell.format ?? ""), cell, at));
    void blobUrl(this.project, runId, key, String(cell.thumbnail || digest), at)
      .then((url) => (image.src = url))
      .catch(() => shown.replaceWith(h("span.muted", { text: "image unavailable" })));
    return shown;
  }

  /** A media cell at full size in a dialog: an image at its pixels, audio and video players, HTML
   * and plotly figures in a sandboxed frame (no allow-same-origin, as on the media card). */
  private async openMedia(runId: string, key: string, kind: string, digest: string, caption: string, format: string,
    cell?: Record<string, unknown>, at: { version?: number; step?: number } = {}): Promise<void> {
    let body: HTMLElement;
    const toggles = h("div.media-toggles");
    try {
      const url = await blobUrl(this.project, runId, key, digest, at);
      if (kind === "image" && cell) {
        const full = h("img.tp-full", { src: url, alt: caption });
        body = h("div", {}, overlaid(full, cell, (d) => blobUrl(this.project, runId, key, d, at), toggles), toggles);
      } else if (kind === "image" || (kind === "video" && format === "gif")) body = h("img.tp-full", { src: url, alt: caption });
      else if (kind === "audio") body = h("audio", { controls: true, src: url });
      else if (kind === "video") body = h("video", { controls: true, src: url });
      else if (kind === "html") body = h("iframe.media-html", { sandbox: "allow-scripts", src: url, title: caption || kind });
      else if (kind === "plotly") body = plotlyFrame(await (await fetch(url)).text(), caption || kind);
      else body = h("a", { href: url, download: `${kind}.${format}`, text: `Download ${kind} (${format})` });
    } catch (error) {
      body = h("p.error", { text: (error as Error).message });
    }
    const close = h("button", { type: "button", text: "Close" });
    const dialog = h("dialog.tp-dialog", { "data-digest": digest }, body, caption ? h("p", { text: caption }) : null, close);
    close.addEventListener("click", () => dialog.close());
    dialog.addEventListener("close", () => dialog.remove());
    document.body.append(dialog);
    dialog.showModal();
  }
}
