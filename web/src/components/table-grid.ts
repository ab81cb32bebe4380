// A virtualised grid over a logged table that the server pages (docs/tables.md, "In the dashboard"):
// only the rows in view (plus a few) are in the DOM, and only the pages of rows they need are asked
// for, PAGE rows at a time, a bounded number kept. A million rows scroll like ten: past what an
// element may be tall, the scroll range is scaled (a scroll position maps to a row, not a pixel).

import type { TableRows } from "../api";
import { registerProbe } from "../debug";
import { h } from "../dom";

export const ROW_HEIGHT = 28;
export const PAGE = 200; // rows per request (the server allows 1,000)
const KEPT_PAGES = 12; // pages kept in memory (the nearest to the view)
const OVERSCAN = 4; // rows drawn beyond each edge of the view
const MAX_SPACER = 8_000_000; // px: beyond this the scroll range is scaled
const FETCH_DELAY = 40; // ms: pages are asked for once scrolling rests this long

export type Column = TableRows["columns"][number];
export type PageFetcher = (offset: number, limit: number, signal: AbortSignal) => Promise<TableRows>;
/** A cell's content: text, or an element (a media thumbnail). */
export type CellRenderer = (column: Column, value: unknown) => string | Node;
export type SortState = { column: string; descending: boolean } | null;

interface Request {
  offset: number;
  limit: number;
  rows: number;
  bytes: number; // of the JSON text as parsed back (an estimate of the payload; tests read the real one)
}

export class TableGrid {
  readonly el: HTMLElement;
  private readonly head = h("div.tp-head");
  private readonly scroller = h("div.tp-scroll");
  private readonly spacer = h("div.tp-spacer");
  private readonly window = h("div.tp-window");
  private columns: Column[] = [];
  private widths: number[] = [];
  private total = 0;
  private pages = new Map<number, unknown[][]>();
  private pending = new Map<number, AbortController>();
  private fetchTimer: number | undefined;
  private generation = 0;
  private first = 0;
  private readonly requests: Request[] = [];
  private readonly unregister: () => void;
  private sort: SortState = null;

  constructor(
    readonly id: string,
    private fetcher: PageFetcher,
    private readonly renderCell: CellRenderer,
    private readonly onSort: (column: string) => void,
    private readonly onError: (error: Error) => void,
  ) {
    this.spacer.append(this.window);
    this.scroller.append(this.spacer);
    this.el = h("div.tp-grid", { "data-table": id }, this.head, this.scroller);
    this.scroller.addEventListener("scroll", () => {
      this.head.scrollLeft = this.scroller.scrollLeft;
      this.render();
    });
    new ResizeObserver(() => this.render()).observe(this.scroller);
    this.unregister = registerProbe(`table:${id}`, () => this.probe());
  }

  /** A new query: `firstPage` (rows 0.. of it, already fetched) replaces everything shown. */
  reset(fetcher: PageFetcher, firstPage: TableRows, sort: SortState): void {
    this.generation++;
    for (const controller of this.pending.values()) controller.abort();
    this.pending.clear();
    this.fetcher = fetcher;
    this.sort = sort;
    this.pages = new Map([[0, firstPage.rows.slice(0, PAGE)]]);
    this.total = firstPage.total;
    this.note(firstPage, 0, PAGE);
    this.setColumns(firstPage.columns);
    this.scroller.scrollTop = 0;
    this.render();
  }

  /** The same query with more rows (a live run's table grew): the view stays where it is. */
  refresh(fetcher: PageFetcher, firstPage: TableRows): void {
    this.generation++;
    for (const controller of this.pending.values()) controller.abort();
    this.pending.clear();
    this.fetcher = fetcher;
    this.pages = new Map([[0, firstPage.rows.slice(0, PAGE)]]);
    this.total = firstPage.total;
    this.note(firstPage, 0, PAGE);
    this.render();
  }

  get rowCount(): number {
    return this.total;
  }

  destroy(): void {
    this.generation++;
    for (const controller of this.pending.values()) controller.abort();
    clearTimeout(this.fetchTimer);
    this.unregister();
  }

  private setColumns(columns: Column[]): void {
    this.columns = columns;
    this.widths = columns.map((column) => (isMedia(column) ? 96 : column.type.includes("string") ? 200 : 130));
    const template = this.widths.map((w) => `${w}px`).join(" ");
    this.head.style.gridTemplateColumns = template;
    this.window.style.gridTemplateColumns = template;
    this.window.style.width = this.spacer.style.width = `${this.widths.reduce((a, b) => a + b, 0)}px`;
    this.head.replaceChildren(
      ...columns.map((column) => {
        const arrow = this.sort?.column === column.name ? (this.sort.descending ? " ▼" : " ▲") : "";
        const sortable = !isMedia(column) && !/^(struct|list|large_list|map)/.test(column.type);
        const cell = h(`div.tp-th${sortable ? ".sortable" : ""}` as "div", { "data-col": column.name, title: `${column.name} (${column.type})`, text: column.name + arrow });
        if (sortable) cell.addEventListener("click", () => this.onSort(column.name));
        return cell;
      }),
    );
  }

  /** The first row in view and how far the scroll range is scaled. */
  private geometry(): { first: number; visible: number; top: number } {
    const viewHeight = this.scroller.clientHeight || 400;
    const visible = Math.ceil(viewHeight / ROW_HEIGHT) + 1;
    const full = this.total * ROW_HEIGHT;
    const height = Math.min(full, MAX_SPACER);
    this.spacer.style.height = `${height}px`;
    const scrollTop = this.scroller.scrollTop;
    if (full <= MAX_SPACER) {
      const first = Math.floor(scrollTop / ROW_HEIGHT);
      return { first, visible, top: first * ROW_HEIGHT };
    }
    // Scaled: the scroll range's ends are the table's ends; rows are drawn where the view is.
    const range = Math.max(1, height - viewHeight);
    const lastFirst = Math.max(0, this.total - visible + 1);
    const first = Math.min(lastFirst, Math.round((scrollTop / range) * lastFirst));
    return { first, visible, top: scrollTop };
  }

  private render(): void {
    const { first, visible, top } = this.geometry();
    this.first = first;
    const from = Math.max(0, first - OVERSCAN);
    const to = Math.min(this.total, first + visible + OVERSCAN);
    this.window.style.transform = `translateY(${top - (first - from) * ROW_HEIGHT}px)`;
    const rows: HTMLElement[] = [];
    const missing = new Set<number>();
    for (let index = from; index < to; index++) {
      const page = Math.floor(index / PAGE);
      const values = this.pages.get(page)?.[index - page * PAGE];
      if (!values) missing.add(page);
      rows.push(this.row(index, values));
    }
    this.window.replaceChildren(...rows);
    if (missing.size) this.scheduleFetch();
    if (!this.total) this.window.replaceChildren(h("div.tp-empty", { text: "No rows." }));
  }

  private row(index: number, values: unknown[] | undefined): HTMLElement {
    const row = h("div.tp-row", { "data-row": index });
    if (!values) {
      row.classList.add("loading");
      row.append(...this.columns.map(() => h("div.tp-td.muted", { text: "…" })));
      return row;
    }
    row.append(
      ...this.columns.map((column, i) => {
        const content = this.renderCell(column, values[i]);
        const cell = h("div.tp-td", {}, content);
        if (typeof content === "string") cell.title = content;
        return cell;
      }),
    );
    return row;
  }

  private scheduleFetch(): void {
    clearTimeout(this.fetchTimer);
    this.fetchTimer = window.setTimeout(() => this.fetchMissing(), FETCH_DELAY);
  }

  /** Ask for the pages the view needs now (not those scrolled past meanwhile). */
  private fetchMissing(): void {
    const { first, visible } = this.geometry();
    const from = Math.max(0, first - OVERSCAN);
    const to = Math.min(this.total, first + visible + OVERSCAN);
    const generation = this.generation;
    for (let page = Math.floor(from / PAGE); page * PAGE < to; page++) {
      if (this.pages.has(page) || this.pending.has(page)) continue;
      const controller = new AbortController();
      this.pending.set(page, controller);
      const offset = page * PAGE;
      this.fetcher(offset, PAGE, controller.signal)
        .then((body) => {
          if (generation !== this.generation) return;
          this.pages.set(page, body.rows);
          this.note(body, offset, PAGE);
          this.evict(page);
          this.render();
        })
        .catch((error: Error) => {
          if (generation === this.generation && error.name !== "AbortError") this.onError(error);
        })
        .finally(() => {
          if (this.pending.get(page) === controller) this.pending.delete(page);
        });
    }
    // Requests for pages no longer in view are dropped.
    for (const [page, controller] of this.pending) {
      if ((page + 1) * PAGE <= from - PAGE || page * PAGE >= to + PAGE) {
        controller.abort();
        this.pending.delete(page);
      }
    }
  }

  private evict(near: number): void {
    if (this.pages.size <= KEPT_PAGES) return;
    const far = [...this.pages.keys()].sort((a, b) => Math.abs(b - near) - Math.abs(a - near));
    for (const page of far.slice(0, this.pages.size - KEPT_PAGES)) this.pages.delete(page);
  }

  private note(body: TableRows, offset: number, limit: number): void {
    this.requests.push({ offset, limit, rows: body.rows.length, bytes: JSON.stringify(body).length });
    if (this.requests.length > 500) this.requests.splice(0, this.requests.length - 500);
  }

  private probe() {
    const rows = Array.from(this.window.querySelectorAll<HTMLElement>(".tp-row"));
    return {
      total: this.total,
      columns: this.columns.map((c) => c.name),
      first: this.first,
      domRows: rows.length,
      pagesKept: this.pages.size,
      rows: rows.map((row) => ({
        index: Number(row.dataset.row),
        loading: row.classList.contains("loading"),
        cells: Array.from(row.children).map((cell) => cell.textContent ?? ""),
      })),
      requests: this.requests.slice(),
    };
  }
}

/** A column whose cells are media (struct columns with a digest and a thumbnail). */
export function isMedia(column: Column): boolean {
  return column.type.startsWith("struct<") && column.type.includes("digest:") && column.type.includes("thumbnail:");
}
