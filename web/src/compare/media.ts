// The Compare tab's media grid: the media keys the selected runs logged, and for the chosen key a
// column per run (its colour and name) with its items at the chosen step: each run's latest step
// at or before it, named, since runs log at different steps. One slider runs over the union of the
// runs' steps; a logged list (several images a step) shows its count and is paged per run. Each
// slider position costs one request for every run (routes_media_compare.py: one step's items per
// run, never a run's whole list) and the files of the items shown; an answer that arrives after a
// newer one was asked for is dropped. The key and step are in the URL (`mkey`, `mstep`).
// An image is shown by its thumbnail (at most 256 px, the column's width) with its masks and boxes
// over it, and a click gives its full resolution: sliding over thousands of large images fetches
// thumbnails. The grid's files are kept as object URLs for the last GRID_URLS digests, not for
// every image ever shown.

import { ApiError, mediaBlob, type MediaEntry } from "../api";
import { debounce, h } from "../dom";
import { compareSteps, parseStep, type Step } from "../format";
import { itemBody, overlaidImage } from "../media";
import { readQuery, setQuery } from "../router";
import { MAX_GRID_RUNS, mediaCompareApi, type MediaKeySummary, type RunMediaAtStep } from "./media-api";
import "./media.css";

/** Items of one step shown per run; more are paged. */
export const GRID_PAGE = 4;
/** Files kept as object URLs (least recently used first out): a screenful of grids and then some. */
const GRID_URLS = 400;
const urls = new Map<string, Promise<string>>(); // digest -> object URL, in order of last use

function gridUrl(project: string, runId: string, digest: string): Promise<string> {
  let url = urls.get(digest);
  if (url) urls.delete(digest); // to the end: used now
  else url = mediaBlob(project, runId, digest).then((blob) => URL.createObjectURL(blob));
  urls.set(digest, url);
  url.catch(() => urls.get(digest) === url && urls.delete(digest)); // asked again next time
  for (const [old, oldUrl] of urls) {
    if (urls.size <= GRID_URLS) break;
    urls.delete(old);
    oldUrl.then((text) => URL.revokeObjectURL(text), () => undefined);
  }
  return url;
}

/** An image by its thumbnail (or itself, when small), masks and boxes over it, each toggled; a
 * click swaps in the full-resolution file. */
async function gridImage(project: string, runId: string, item: MediaEntry): Promise<HTMLElement> {
  const thumbnail = Boolean(item.thumbnail);
  const image = h("img.media-image", {
    alt: item.caption || item.key, src: await gridUrl(project, runId, item.thumbnail || item.digest),
    "data-file": thumbnail ? "thumbnail" : "file", title: thumbnail ? `${item.width}×${item.height}: click for full resolution` : null,
  });
  if (thumbnail) {
    image.addEventListener("click", () => void gridUrl(project, runId, item.digest).then((url) => {
      image.src = url;
      image.dataset.file = "file";
      image.removeAttribute("title");
    }), { once: true });
  }
  return overlaidImage(image, item, (digest) => gridUrl(project, runId, digest));
}

export interface GridRun {
  run_id: string;
  name: string;
  color: string;
  running: boolean;
}

/** The union of the runs' steps, ascending. */
export function unionSteps(columns: { steps?: Step[] | null }[]): Step[] {
  const all = new Set<Step>(); // a step is a number, or past 2**53 - 1 always a string: one value, one key
  for (const column of columns) for (const step of column.steps ?? []) all.add(step);
  return [...all].sort(compareSteps);
}

export class CompareMedia {
  readonly el: HTMLElement;
  private readonly note = h("p.muted.mc-note");
  private readonly keysEl = h("div.mc-keys");
  private readonly slider = h("input.mc-step", { type: "range", min: 0, max: 0, value: 0, "aria-label": "Step" });
  private readonly stepLabel = h("span.mc-step-label");
  private readonly gridEl = h("div.mc-grid");
  private runs: GridRun[] = [];
  private keys: MediaKeySummary[] = [];
  private key: string | null;
  private step: Step | null; // the chosen step; null: each run's last (and follow new steps)
  private steps: Step[] = []; // the union of the runs' steps of the key (exact past 2**53: format.ts)
  private visible = false;
  private stale = true; // the runs changed while hidden
  private asked = 0; // the latest grid request: older answers are dropped
  private drawn = ""; // what the grid shows (runs, steps, items): a live refresh with nothing new keeps it

  constructor(private readonly project: string) {
    const params = readQuery();
    this.key = params.get("mkey") || null;
    this.step = parseStep(params.get("mstep"));
    const head = h("div.media-head.mc-head", {}, this.slider, this.stepLabel);
    this.el = h("section.card.compare-media", {}, h("h2", { text: "Media (selected runs)" }), this.note, this.keysEl, head, this.gridEl);
    const load = debounce(() => void this.loadGrid(false), 60);
    this.slider.addEventListener("input", () => {
      const step = this.steps[Number(this.slider.value)];
      if (step === undefined) return;
      this.step = step;
      setQuery({ mkey: this.key, mstep: String(step) });
      this.drawStepLabel();
      load();
    });
  }

  /** The selected runs (the first 20 are shown). */
  setRuns(runs: GridRun[]): void {
    const before = this.runs.map((run) => run.run_id).join(",");
    this.runs = runs;
    const changed = before !== runs.map((run) => run.run_id).join(",");
    if (!changed && !runs.some((run) => run.running)) {
      this.redrawHeads();
      return;
    }
    this.stale = true;
    if (this.visible) void this.load();
  }

  setVisible(on: boolean): void {
    this.visible = on;
    if (on && this.stale) void this.load();
  }

  private shown(): GridRun[] {
    return this.runs.slice(0, MAX_GRID_RUNS);
  }

  private async load(): Promise<void> {
    this.stale = false;
    const runs = this.shown();
    this.note.textContent = this.runs.length > runs.length ? `The first ${runs.length} of ${this.runs.length} selected runs.` : "";
    if (!runs.length) {
      this.keys = [];
      this.drawKeys();
      this.gridEl.replaceChildren(h("p.empty", { text: "Select runs to compare their media." }));
      this.slider.hidden = true;
      this.stepLabel.textContent = "";
      return;
    }
    try {
      this.keys = (await mediaCompareApi.keys(this.project, runs.map((run) => run.run_id))).keys;
    } catch (error) {
      this.gridEl.replaceChildren(h("p.empty", { text: `Media could not be listed: ${(error as Error).message}` }));
      return;
    }
    if (!this.key || !this.keys.some((entry) => entry.key === this.key)) this.key = this.keys[0]?.key ?? null;
    this.drawKeys();
    if (!this.key) {
      this.gridEl.replaceChildren(h("p.empty", { text: "The selected runs logged no media." }));
      this.slider.hidden = true;
      this.stepLabel.textContent = "";
      return;
    }
    await this.loadGrid(true);
  }

  private drawKeys(): void {
    const total = this.shown().length;
    this.keysEl.replaceChildren(
      ...this.keys.map((entry) => {
        const button = h(`button.mc-key${entry.key === this.key ? ".on" : ""}` as "button", {
          "data-key": entry.key,
          title: `${entry.kinds.join(", ")}: logged by ${entry.runs.length} of ${total} runs`,
        }, entry.key, h("span.muted", { text: ` ${entry.kinds.join("/")} · ${entry.runs.length}/${total}` }));
        button.addEventListener("click", () => {
          if (entry.key === this.key) return;
          this.key = entry.key;
          this.step = null;
          setQuery({ mkey: entry.key, mstep: null });
          this.drawKeys();
          void this.loadGrid(true);
        });
        return button;
      }),
    );
  }

  /** The step asked for (a link's may lie between the runs' steps: the slider sits at the last
   * step at or before it), and where the slider is among the steps. */
  private drawStepLabel(): void {
    const index = Number(this.slider.value);
    const step = this.step ?? this.steps[index];
    const count = this.steps.length;
    this.stepLabel.textContent = step === undefined ? "" : `step ${step} (${index + 1} of ${count} step${count === 1 ? "" : "s"})`;
  }

  /** Ask for every shown run's items at the chosen step (and, `withSteps`, the slider's steps). */
  private async loadGrid(withSteps: boolean): Promise<void> {
    const key = this.key;
    if (!key) return;
    const runs = this.shown();
    const asked = ++this.asked;
    let columns: RunMediaAtStep[];
    try {
      // A run's own page of a logged list is asked for by its pager; here every run starts at 0.
      columns = (await mediaCompareApi.grid(this.project, { runs: runs.map((run) => run.run_id), key, step: this.step, limit: GRID_PAGE, steps: withSteps })).runs;
    } catch (error) {
      if (asked === this.asked) {
        this.drawn = "";
        this.gridEl.replaceChildren(h("p.empty", { text: `Media could not be read: ${(error as Error).message}` }));
      }
      return;
    }
    if (asked !== this.asked) return;
    if (withSteps) {
      this.steps = unionSteps(columns);
      this.slider.max = String(Math.max(0, this.steps.length - 1));
      this.slider.hidden = this.steps.length < 2;
    }
    this.placeSlider();
    const signature = JSON.stringify([key, this.step, columns.map((c) => [c.run_id, c.step, c.count, c.items.map((item) => item.digest)])]);
    if (signature === this.drawn) {
      this.redrawHeads(); // nothing new (a live run's poll): no redraw, and a list's page stays turned
      return;
    }
    const drawn = await Promise.all(columns.map((column) => this.column(runs.find((run) => run.run_id === column.run_id)!, key, column)));
    if (asked !== this.asked) return;
    this.gridEl.replaceChildren(...drawn);
    this.drawn = signature;
    this.gridEl.dataset.key = key;
    this.gridEl.dataset.step = String(this.step ?? "");
  }

  private placeSlider(): void {
    if (!this.steps.length) return;
    // The slider sits at the chosen step or the last union step at or before it.
    let index = this.steps.length - 1;
    if (this.step !== null) {
      index = 0;
      for (let i = 0; i < this.steps.length && compareSteps(this.steps[i], this.step) <= 0; i++) index = i;
    }
    this.slider.value = String(index);
    this.drawStepLabel();
  }

  private async column(run: GridRun, key: string, answer: RunMediaAtStep): Promise<HTMLElement> {
    const el = h("div.mc-col", { "data-run": run.run_id, "data-step": answer.step ?? "" });
    el.append(h("div.mc-run", {}, h("i.swatch", { style: `background:${run.color}` }), h("span.mc-name", { text: run.name, title: run.run_id })));
    el.append(h("p.mc-shown.muted", { text: shownText(key, this.step, answer) }));
    const body = h("div.mc-items");
    el.append(body);
    await this.fill(run, key, answer, el, body);
    return el;
  }

  /** A column's items and, for a list longer than a page, its pager. */
  private async fill(run: GridRun, key: string, answer: RunMediaAtStep, el: HTMLElement, body: HTMLElement): Promise<void> {
    const figures = await Promise.all(answer.items.map(async (item) => {
      try {
        return h("figure.media-item", { "data-kind": item.kind, "data-step": item.step, "data-index": item.index },
          await (item.kind === "image" ? gridImage : itemBody)(this.project, run.run_id, item), item.caption ? h("figcaption", { text: item.caption }) : null);
      } catch (error) {
        const reason = error instanceof ApiError && error.status === 404 ? "its file is not on the server" : (error as Error).message;
        return h("p.empty", { text: `${item.kind} ${item.index + 1} at step ${item.step}: ${reason}` });
      }
    }));
    body.replaceChildren(...figures);
    el.querySelector(".mc-pager")?.remove();
    if (answer.count <= GRID_PAGE || answer.step === null || answer.step === undefined) return;
    const first = answer.offset;
    const previous = h("button.mc-prev", { text: "‹", title: "Previous items", disabled: first === 0 });
    const next = h("button.mc-next", { text: "›", title: "Next items", disabled: first + GRID_PAGE >= answer.count });
    const label = h("span.mc-range", { text: `${first + 1}–${Math.min(first + GRID_PAGE, answer.count)} of ${answer.count}` });
    const turn = async (offset: number) => {
      const step = answer.step!;
      const asked = this.asked;
      const page = (await mediaCompareApi.grid(this.project, { runs: [run.run_id], key, step, offset, limit: GRID_PAGE, steps: false })).runs[0];
      if (asked !== this.asked || page.step !== step) return; // the slider moved meanwhile
      await this.fill(run, key, page, el, body);
    };
    previous.addEventListener("click", () => void turn(Math.max(0, first - GRID_PAGE)));
    next.addEventListener("click", () => void turn(first + GRID_PAGE));
    el.append(h("div.mc-pager", {}, previous, label, next));
  }

  /** Names and colours change without new media (a rename, grouping): redraw the column heads. */
  private redrawHeads(): void {
    for (const run of this.runs) {
      const head = this.gridEl.querySelector(`.mc-col[data-run="${CSS.escape(run.run_id)}"] .mc-run`);
      if (!head) continue;
      (head.querySelector(".swatch") as HTMLElement).style.background = run.color;
      head.querySelector(".mc-name")!.textContent = run.name;
    }
  }
}

/** What a run's column shows, said in words: which step (runs log at different steps). */
export function shownText(key: string, asked: Step | null, answer: Pick<RunMediaAtStep, "step" | "count" | "first_step">): string {
  if (answer.first_step === null || answer.first_step === undefined) return `no ${key} logged`;
  if (answer.step === null || answer.step === undefined) return `nothing at or before step ${asked}: first at step ${answer.first_step}`;
  const items = answer.count > 1 ? `, ${answer.count} items` : "";
  if (asked === null || asked === answer.step) return `step ${answer.step}${items}`;
  return `step ${answer.step} (latest at or before ${asked})${items}`;
}
