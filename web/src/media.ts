// A run's logged media (docs/media.md): one panel per key with a step slider; images with their
// masks (a canvas per mask, one colour per class id) and boxes (SVG), each group toggled on and
// off; audio and video players; HTML in a sandboxed frame (no allow-same-origin: it can't reach the
// dashboard's origin); plotly figures (stored as JSON) drawn in such a frame with the plotly.js the
// server ships (/vendor/plotly.min.js); other files as downloads. Files come from GET .../media/{digest}.

import { api, mediaBlob, type MediaEntry } from "./api";
import { h } from "./dom";
import { compareSteps, type Step } from "./format";
import { notViewable3d, viewable3d, viewer3dItem } from "./viewer3d";

const SVG = "http://www.w3.org/2000/svg";
// Class ids 1.. get these colours in turn (id 0, background by W&B's convention, stays clear).
const CLASS_COLOURS = [
  [230, 25, 75], [60, 180, 75], [255, 225, 25], [0, 130, 200], [245, 130, 48], [145, 30, 180],
  [70, 240, 240], [240, 50, 230], [210, 245, 60], [250, 190, 212], [0, 128, 128], [220, 190, 255],
];
const MASK_ALPHA = 110;

export function classColour(id: number): number[] {
  return CLASS_COLOURS[(id - 1) % CLASS_COLOURS.length];
}

const urls = new Map<string, Promise<string>>(); // digest -> object URL (content-addressed: never stale)

function blobUrl(project: string, runId: string, digest: string): Promise<string> {
  let url = urls.get(digest);
  if (!url) {
    url = mediaBlob(project, runId, digest).then((blob) => URL.createObjectURL(blob));
    urls.set(digest, url);
  }
  return url;
}

function loadImage(url: string): Promise<HTMLImageElement> {
  return new Promise((resolve, reject) => {
    const image = new Image();
    image.onload = () => resolve(image);
    image.onerror = () => reject(new Error("the image could not be decoded"));
    image.src = url;
  });
}

/** A mask's class ids drawn as colours (id 0 clear) on a canvas of the mask's size. */
export async function maskCanvas(url: string, name: string): Promise<HTMLCanvasElement> {
  const mask = await loadImage(url);
  const canvas = h("canvas.media-mask", { width: mask.naturalWidth, height: mask.naturalHeight, "data-name": name });
  const context = canvas.getContext("2d")!;
  context.drawImage(mask, 0, 0);
  const pixels = context.getImageData(0, 0, canvas.width, canvas.height);
  const data = pixels.data;
  for (let i = 0; i < data.length; i += 4) {
    const id = data[i]; // a gray PNG decodes to R = G = B = the class id
    if (id === 0) {
      data[i + 3] = 0;
      continue;
    }
    const [r, g, b] = classColour(id);
    data[i] = r;
    data[i + 1] = g;
    data[i + 2] = b;
    data[i + 3] = MASK_ALPHA;
  }
  context.putImageData(pixels, 0, 0);
  return canvas;
}

export type BoxGroup = Pick<MediaEntry["boxes"][number], "name" | "boxes" | "class_labels">;

/** A group of boxes as SVG rectangles over an image of `size` (stretched with the image). */
export function boxesSvg(size: { width: number; height: number }, group: BoxGroup): SVGSVGElement {
  const item = size;
  const svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("class", "media-boxes");
  svg.setAttribute("viewBox", `0 0 ${item.width} ${item.height}`);
  svg.setAttribute("preserveAspectRatio", "none");
  svg.dataset.name = group.name;
  for (const box of group.boxes ?? []) {
    const [sx, sy] = box.pixel ? [1, 1] : [item.width, item.height];
    const rect = document.createElementNS(SVG, "rect");
    const [r, g, b] = classColour(Math.max(1, box.class_id));
    rect.setAttribute("x", String(box.min_x * sx));
    rect.setAttribute("y", String(box.min_y * sy));
    rect.setAttribute("width", String((box.max_x - box.min_x) * sx));
    rect.setAttribute("height", String((box.max_y - box.min_y) * sy));
    rect.setAttribute("stroke", `rgb(${r},${g},${b})`);
    rect.setAttribute("data-class", String(box.class_id));
    const label = group.class_labels?.[String(box.class_id)] ?? "";
    const title = document.createElementNS(SVG, "title");
    const scores = Object.entries(box.scores).map(([k, v]) => `${k} ${v.toFixed(3)}`).join(", ");
    title.textContent = [label, box.caption, scores].filter(Boolean).join(" · ");
    rect.append(title);
    svg.append(rect);
  }
  return svg;
}

export function toggle(name: string, layer: HTMLElement | SVGElement): HTMLElement {
  const box = h("input", { type: "checkbox", checked: true, "data-layer": name });
  box.addEventListener("change", () => {
    layer.style.display = box.checked ? "" : "none";
  });
  return h("label.media-toggle", {}, box, name);
}

async function imageItem(project: string, runId: string, item: MediaEntry): Promise<HTMLElement> {
  const image = h("img.media-image", { alt: item.caption || item.key, src: await blobUrl(project, runId, item.digest) });
  return overlaidImage(image, item, (digest) => blobUrl(project, runId, digest));
}

/** An image with its masks (each a canvas from `maskUrl(digest)`) and box groups laid over it,
 * and a toggle per layer under it: the run page's and the Compare grid's image items alike. */
export async function overlaidImage(image: HTMLElement, item: MediaEntry,
  maskUrl: (digest: string) => Promise<string>): Promise<HTMLElement> {
  const frame = h("div.media-frame", {}, image);
  const toggles = h("div.media-toggles");
  for (const mask of item.masks) {
    const canvas = await maskCanvas(await maskUrl(mask.digest), mask.name);
    frame.append(canvas);
    toggles.append(toggle(mask.name, canvas));
  }
  for (const group of item.boxes) {
    const svg = boxesSvg(item, group);
    frame.append(svg);
    toggles.append(toggle(group.name, svg));
  }
  return h("div", {}, frame, toggles.childElementCount ? toggles : null);
}

/** A plotly figure's document: the stored figure JSON drawn by the plotly.js the server serves
 * from its installed plotly package (/vendor/plotly.min.js: never a CDN), or a line saying what to
 * install when it can't be loaded. `<` is escaped so the JSON can't end the script early. */
export function plotlyDocument(figureJson: string, scriptUrl: string): string {
  const figure = figureJson.replace(/</g, "\\u003c");
  return `<!doctype html><meta charset="utf-8">
<style>html,body{margin:0;height:100%;font:13px sans-serif}#plot{width:100%;height:100%}</style>
<div id="plot"></div><script src="${scriptUrl}"></script><script>
const figure = ${figure};
if (window.Plotly) {
  Plotly.newPlot("plot", figure.data || [], Object.assign({}, figure.layout, { autosize: true }),
                 { responsive: true, displaylogo: false });
} else {
  document.getElementById("plot").textContent =
    "plotly.js could not be loaded from the server: pip install plotly beside the tracklet server to draw this figure";
}
</script>`;
}

/** A sandboxed frame drawing a plotly figure's JSON (the media card's and a table cell's). */
export function plotlyFrame(figureJson: string, title: string): HTMLIFrameElement {
  const script = `${location.origin}/vendor/plotly.min.js`;
  return h("iframe.media-plotly", { sandbox: "allow-scripts", srcdoc: plotlyDocument(figureJson, script), title });
}

async function plotlyItem(project: string, runId: string, item: MediaEntry): Promise<HTMLElement> {
  return plotlyFrame(await (await mediaBlob(project, runId, item.digest)).text(), item.key);
}

/** One item's element (the run page's media card, the Compare tab's media grid). */
export async function itemBody(project: string, runId: string, item: MediaEntry): Promise<HTMLElement> {
  if (item.kind === "image") return imageItem(project, runId, item);
  if (item.kind === "plotly") return plotlyItem(project, runId, item);
  if (viewable3d(item)) return viewer3dItem(project, runId, item); // point clouds, scenes, meshes (STL, OBJ, glTF), molecules (viewer3d.ts)
  const url = await blobUrl(project, runId, item.digest);
  if (item.kind === "audio") return h("audio", { controls: true, src: url });
  if (item.kind === "video" && item.format === "gif") return h("img.media-image", { src: url, alt: item.key });
  if (item.kind === "video") return h("video", { controls: true, src: url });
  if (item.kind === "html") return h("iframe.media-html", { sandbox: "allow-scripts", src: url, title: item.key });
  const link = h("a", { href: url, download: `${item.key}.${item.format}`, text: `${item.kind} (${item.format})` });
  if (item.kind === "object3d" || item.kind === "molecule") { // a 3-D file the viewer does not read: why, beside its link
    return h("div.viewer3d-undrawn", {}, h("p.muted", { text: notViewable3d(item) }), link);
  }
  return link;
}

class MediaPanel {
  readonly slider = h("input.media-step", { type: "range", min: 0, max: 0, value: 0 });
  readonly stepLabel = h("span.muted");
  readonly body = h("div.media-items");
  readonly el: HTMLElement;
  private steps: Step[] = []; // exact past 2**53 (strings: format.ts)
  private byStep = new Map<Step, MediaEntry[]>();
  private shown = -1;

  constructor(private readonly project: string, private readonly runId: string, key: string) {
    this.el = h("div.media-panel", { "data-key": key }, h("h3", { text: key }), h("div.media-head", {}, this.slider, this.stepLabel), this.body);
    this.slider.addEventListener("input", () => void this.show(Number(this.slider.value)));
  }

  update(items: MediaEntry[]): void {
    const following = this.shown < 0 || this.shown === this.steps.length - 1;
    this.byStep = new Map();
    for (const item of items) {
      const list = this.byStep.get(item.step) ?? [];
      list.push(item);
      this.byStep.set(item.step, list);
    }
    this.steps = [...this.byStep.keys()].sort(compareSteps);
    this.slider.max = String(this.steps.length - 1);
    this.slider.hidden = this.steps.length < 2;
    const index = following ? this.steps.length - 1 : this.shown;
    this.slider.value = String(index);
    if (index !== this.shown || following) void this.show(index);
  }

  async show(index: number): Promise<void> {
    this.shown = index;
    const step = this.steps[index];
    const items = this.byStep.get(step) ?? [];
    this.stepLabel.textContent = `step ${step} (${index + 1} of ${this.steps.length})`;
    const figures = await Promise.all(items.map(async (item) => {
      try {
        return h("figure.media-item", { "data-kind": item.kind, "data-step": item.step, "data-index": item.index },
          await itemBody(this.project, this.runId, item), item.caption ? h("figcaption", { text: item.caption }) : null);
      } catch (error) {
        return h("p.empty", { text: `${item.kind} at step ${item.step}: ${(error as Error).message}` });
      }
    }));
    if (this.shown === index) {
      this.body.replaceChildren(...figures);
      this.el.dataset.step = String(step);
    }
  }
}

/** The run's media card: hidden until the run has media; ``load`` again to pick up new steps. */
export class MediaView {
  readonly el = h("div.media-panels");
  readonly card = h("section.card.wide.media-card", { hidden: true }, h("h2", { text: "Media" }), this.el);
  private readonly panels = new Map<string, MediaPanel>();
  private count = -1;

  constructor(private readonly project: string, private readonly runId: string) {}

  async load(): Promise<void> {
    const { media } = await api.media(this.project, this.runId);
    if (!media.length || media.length === this.count) return;
    this.count = media.length;
    const byKey = new Map<string, MediaEntry[]>();
    for (const item of media) byKey.set(item.key, [...(byKey.get(item.key) ?? []), item]);
    for (const [key, items] of byKey) {
      let panel = this.panels.get(key);
      if (!panel) {
        panel = new MediaPanel(this.project, this.runId, key);
        this.panels.set(key, panel);
        this.el.append(panel.el);
      }
      panel.update(items);
    }
    this.card.hidden = false;
  }
}
