// The run page's 3-D viewer (docs/dashboard.md, "Media"; docs/media.md, "3-D objects in the
// dashboard"): a point cloud with its boxes and vectors, a mesh, or a molecule's atoms and bonds
// (web/src/scene3d.ts and web/src/gltf.ts read the files), drawn with WebGL (gl.POINTS, gl.LINES, gl.TRIANGLES: a GPU redraws a million points in a
// frame), or, where WebGL is unavailable or runs without a GPU, projected in JavaScript onto a 2-D
// canvas (a depth buffer, one pixel per point; meshes far to near), said so under the drawing. Drag rotates, shift-drag
// or right-drag pans, the wheel zooms, double-click or "reset" goes back to the first view. Files
// above AUTO_LOAD_BYTES wait for a click on "load"; an .npy cloud is read as a stream and thinned to
// MAX_POINTS, so its memory is bounded by what is drawn.

import { ApiError, type MediaEntry } from "./api";
import { storedKey } from "./auth";
import { h } from "./dom";
import { fmtBytes } from "./format";
import { boxEdges, cross, faceNormals, lookAt, multiply, norm, perspective, sub, type Mat4 } from "./geometry3d";
import { readGltf } from "./gltf";
import { readCif, readGro, readMol2, readNpy, readObj, readPdb, readScene, readSdf, readStl, type Box3D, type Scene3D } from "./scene3d";

export const AUTO_LOAD_BYTES = 32 * 1024 * 1024;
export const MAX_POINTS = 2_000_000;
export const MAX_TRIANGLES = 2_000_000;
const MAX_TEXT_BYTES = 256 * 1024 * 1024; // scene JSON, meshes and PDB are parsed whole: larger ones stay downloads
const BACKGROUND = [21, 23, 28];
const FOV = Math.PI / 4;
const WIDTH = 480; // CSS pixels (web/src/style.css)
const HEIGHT = 360;
const SCALE = Math.min(2, Math.max(1, window.devicePixelRatio || 1)); // sharp on HiDPI screens; at most 4× the pixels

const MOLECULES = ["pdb", "pqr", "sdf", "sd", "mol", "mol2", "gro", "cif", "mmcif", "mcif"];
const OBJECTS = ["npy", "pts.json", "stl", "obj", "gltf", "glb"];

/** Whether the viewer draws this media item (others stay downloads). */
export function viewable3d(item: Pick<MediaEntry, "kind" | "format">): boolean {
  if (item.kind === "object3d") return OBJECTS.includes(item.format);
  return item.kind === "molecule" && MOLECULES.includes(item.format);
}

/** Why a 3-D media item the viewer does not draw stays a download (shown beside its link). */
export function notViewable3d(item: Pick<MediaEntry, "kind" | "format">): string {
  if (item.format === "mmtf") return "MMTF (binary MessagePack) is not drawn here: download it, or log the structure as .pdb, .cif or .sdf";
  return `${item.format} files are not drawn here: download it`;
}

/** The format a file named `name` is drawn as, or null (run files and artifact files: by extension). */
export function format3d(name: string): { kind: string; format: string } | null {
  const lower = name.toLowerCase();
  if (lower.endsWith(".pts.json")) return { kind: "object3d", format: "pts.json" };
  const ext = lower.slice(lower.lastIndexOf(".") + 1);
  if (OBJECTS.includes(ext) && ext !== "npy") return { kind: "object3d", format: ext };
  return MOLECULES.includes(ext) ? { kind: "molecule", format: ext } : null;
}

/** A file the viewer reads: a media item, a run file or an artifact version's file. */
export interface Source3D {
  kind: string; // object3d, molecule
  format: string;
  size: number;
  name: string; // the download's file name
  key: string; // the scene cache's key: a digest where known
  place: string; // where the view is kept
  width?: number; // an .npy's points
  open(): Promise<Response>;
  /** A file beside it (a .gltf's buffers and images), by its path relative to this file's folder. */
  sibling(path: string): Promise<Response>;
}

function authorized(path: string): Promise<Response> {
  const key = storedKey();
  return fetch(path, { headers: key ? { Authorization: `Bearer ${key}` } : {} });
}

async function fetchOk(path: string): Promise<Response> {
  const response = await authorized(path);
  if (!response.ok || !response.body) throw new ApiError(response.status, response.statusText);
  return response;
}

const enc = encodeURIComponent;
const folder = (path: string) => path.slice(0, path.lastIndexOf("/") + 1);
const pathUrl = (path: string) => path.split("/").map(enc).join("/");

/** A run file, or a file beside it, through the run's file routes: looked up in the run's list of
 * files first (once a viewer), so a missing one is named without a failed request. */
function runFiles(project: string, runId: string): (name: string) => Promise<Response> {
  let listed: Promise<Set<string>> | null = null;
  return async (name) => {
    listed ??= fetchOk(`/api/v1/runs/${enc(project)}/${enc(runId)}/files`)
      .then((response) => response.json() as Promise<{ files: { name: string }[] }>)
      .then((body) => new Set(body.files.map((file) => file.name)));
    if (!(await listed).has(name)) throw new Error(`"${name}" is not among run ${runId}'s files`);
    return fetchOk(`/api/v1/runs/${enc(project)}/${enc(runId)}/files/${pathUrl(name)}`);
  };
}

/** A media item: read by its digest; the files a .gltf names, among the run's files (from their top). */
export function mediaSource(project: string, runId: string, item: MediaEntry): Source3D {
  return {
    kind: item.kind, format: item.format, size: item.size_bytes, name: `${item.key.replace(/\//g, "_")}.${item.format}`,
    // a .gltf's drawing also depends on the run's files it names
    key: item.format === "gltf" ? `${item.digest}\n${project}/${runId}` : item.digest, place: `${item.key}\n${item.index}\n${item.digest}`, width: item.width ?? undefined,
    open: () => fetchOk(`/api/v1/runs/${enc(project)}/${enc(runId)}/media/${enc(item.digest)}`),
    sibling: runFiles(project, runId),
  };
}

/** One of a run's files: the files it names, beside it among the run's files. */
export function runFileSource(project: string, runId: string, name: string, size: number, sha256: string): Source3D | null {
  const found = format3d(name);
  if (!found) return null;
  const file = runFiles(project, runId);
  return {
    ...found, size, name: name.split("/").pop()!, key: `${sha256}\n${project}/${runId}/${name}`, place: `run file\n${project}/${runId}/${name}`,
    open: () => fetchOk(`/api/v1/runs/${enc(project)}/${enc(runId)}/files/${pathUrl(name)}`),
    sibling: (path) => file(folder(name) + path),
  };
}

/** One of an artifact version's files: the files it names, beside it in the same version (its
 * file route looks each path up in the version's manifest). */
export function artifactFileSource(project: string, artifact: string, version: string, path: string, size: number, digest: string): Source3D | null {
  const found = format3d(path);
  if (!found) return null;
  const base = `/api/v1/projects/${enc(project)}/artifacts/${enc(artifact)}/versions/${enc(version)}/files`;
  const file = async (name: string) => {
    const response = await authorized(`${base}/${pathUrl(name)}`);
    if (response.status === 404) throw new Error(`"${name}" is not among ${artifact}:${version}'s files`);
    if (!response.ok || !response.body) throw new ApiError(response.status, response.statusText);
    return response;
  };
  // A file beside it is looked up in the version's file list first (one search for its path), so a
  // missing one is named without a failed request (and no 404 in the browser's console).
  const sibling = async (name: string) => {
    const listed = await fetchOk(`${base}?q=${enc(name)}&limit=1000`)
      .then((response) => response.json() as Promise<{ files: { path: string }[]; next_offset?: number | null }>);
    if (!listed.files.some((entry) => entry.path === name) && listed.next_offset == null) {
      throw new Error(`"${name}" is not among ${artifact}:${version}'s files`);
    }
    return file(name);
  };
  return {
    ...found, size, name: path.split("/").pop()!, key: `${digest}\n${project}/${artifact}:${version}/${path}`,
    place: `artifact file\n${project}/${artifact}:${version}/${path}`,
    open: () => file(path),
    sibling: (relative) => sibling(folder(path) + relative),
  };
}

// The run page redraws a media panel whenever the run logs more media (a live run): the last few
// scenes read, and each file's view, are kept by digest (content-addressed: never stale), so a
// cloud is not fetched again every poll and the view isn't reset under a user turning it.
const KEPT_SCENES = 4;
const scenes = new Map<string, Promise<Scene3D>>();
const cameras = new Map<string, Camera>(); // by media key, list index and digest

function cachedScene(source: Source3D): Promise<Scene3D> {
  let scene = scenes.get(source.key);
  if (scene) {
    scenes.delete(source.key); // most recently used last
  } else {
    scene = readFile(source);
    scene.catch(() => scenes.delete(source.key)); // a failed fetch is tried again next time
  }
  scenes.set(source.key, scene);
  while (scenes.size > KEPT_SCENES) scenes.delete(scenes.keys().next().value!);
  return scene;
}

/** At most `limit` bytes of a response's body (a file longer than its glTF buffer is read no further). */
async function bytesOf(response: Response, limit: number): Promise<Uint8Array> {
  const reader = response.body!.getReader();
  const chunks: Uint8Array[] = [];
  let length = 0;
  while (length < limit) {
    const { done, value } = await reader.read();
    if (done) break;
    chunks.push(value.subarray(0, limit - length));
    length += chunks[chunks.length - 1].length;
  }
  if (length >= limit) void reader.cancel();
  const bytes = new Uint8Array(length);
  let at = 0;
  for (const chunk of chunks) { bytes.set(chunk, at); at += chunk.length; }
  return bytes;
}

async function readFile(source: Source3D): Promise<Scene3D> {
  const response = await source.open();
  const { format } = source;
  if (format === "npy") return readNpy(response.body!, MAX_POINTS);
  if (format === "stl") return readStl(new Uint8Array(await response.arrayBuffer()), MAX_TRIANGLES);
  if (format === "gltf" || format === "glb") {
    let fetched = 0; // the files beside it, all together, are bounded as one file is
    const resolve = async (path: string, limit: number) => {
      const bytes = await bytesOf(await source.sibling(path), Math.min(limit, MAX_TEXT_BYTES - fetched));
      fetched += bytes.length;
      return bytes;
    };
    return readGltf(new Uint8Array(await response.arrayBuffer()), MAX_TRIANGLES, resolve);
  }
  const text = await response.text();
  if (format === "obj") return readObj(text, MAX_TRIANGLES, MAX_POINTS);
  if (source.kind !== "molecule") return readScene(text, MAX_POINTS);
  if (format === "sdf" || format === "sd" || format === "mol") return readSdf(text, MAX_POINTS);
  if (format === "mol2") return readMol2(text, MAX_POINTS);
  if (format === "gro") return readGro(text, MAX_POINTS);
  if (format === "cif" || format === "mmcif" || format === "mcif") return readCif(text, MAX_POINTS);
  return readPdb(text, MAX_POINTS, format === "pqr");
}

/** A download link that fetches the file only when clicked (a large cloud is not read up front). */
function downloadLink(source: Source3D): HTMLAnchorElement {
  const link = h("a.viewer3d-download", { href: "#", text: `download (${source.format}, ${fmtBytes(source.size)})` });
  link.addEventListener("click", async (event) => {
    event.preventDefault();
    let blob: Blob;
    try {
      blob = await (await source.open()).blob();
    } catch (error) {
      link.textContent = `download failed (${(error as Error).message}): try again`;
      return;
    }
    const save = h("a", { href: URL.createObjectURL(blob), download: source.name });
    save.click();
    setTimeout(() => URL.revokeObjectURL(save.href), 60_000);
  });
  return link;
}

/** The media card's body for a point cloud, scene or molecule: the viewer, or a "load" button
 * first for a large file; an error in the file is shown in place of the drawing. */
export function viewer3dItem(project: string, runId: string, item: MediaEntry): HTMLElement {
  return viewer3d(mediaSource(project, runId, item));
}

/** The viewer for any source (a media item, a run file, an artifact file), with its download link. */
export function viewer3d(source: Source3D): HTMLElement {
  const holder = h("div.viewer3d", { "data-format": source.format });
  const foot = h("div.viewer3d-foot", {}, downloadLink(source));
  const tooLarge = source.format !== "npy" && source.size > MAX_TEXT_BYTES;
  const start = async () => {
    holder.replaceChildren(h("p.muted", { text: `loading ${fmtBytes(source.size)}…` }));
    try {
      const viewer = new Viewer3D(await cachedScene(source), source.place);
      holder.replaceChildren(viewer.el);
      holder.dataset.state = "drawn";
    } catch (error) {
      holder.replaceChildren(h("p.viewer3d-error", { text: `this ${source.kind} can't be drawn: ${(error as Error).message}` }));
      holder.dataset.state = "error";
    }
  };
  if (tooLarge) {
    holder.append(h("p.muted", { text: `${fmtBytes(source.size)}: too large to draw here; download it` }));
  } else if (source.size > AUTO_LOAD_BYTES && !scenes.has(source.key)) {
    const what = source.format === "npy" && source.width ? `${source.width.toLocaleString()} points, ` : "";
    const button = h("button.viewer3d-load", { type: "button", text: `load (${what}${fmtBytes(source.size)})` });
    button.addEventListener("click", () => void start());
    holder.append(button);
    holder.dataset.state = "waiting";
  } else {
    void start();
  }
  return h("div", {}, holder, foot);
}

/** What the first view frames: the points' 0.5th to 99.5th percentiles on each axis (from a sample
 * of at most 100,000), widened to take in the boxes and vectors; a few far outliers (a LiDAR's stray
 * returns) don't shrink the cloud to a dot. */
function framed(scene: Scene3D, low: number[], high: number[]): [number[], number[]] {
  if (scene.count < 200 || scene.triangles || scene.segments) return [low, high]; // a mesh: all of it
  const step = Math.max(1, Math.floor(scene.count / 100_000));
  const near: number[] = [];
  const far: number[] = [];
  for (let c = 0; c < 3; c++) {
    const values: number[] = [];
    for (let i = 0; i < scene.count; i += step) values.push(scene.positions[i * 3 + c]);
    values.sort((a, b) => a - b);
    near.push(values[Math.floor(values.length * 0.005)]);
    far.push(values[Math.ceil(values.length * 0.995) - 1]);
  }
  const extend = (p: number[]) => {
    for (let c = 0; c < 3; c++) { near[c] = Math.min(near[c], p[c]); far[c] = Math.max(far[c], p[c]); }
  };
  for (const box of scene.boxes) box.corners.forEach(extend);
  for (const vector of scene.vectors) { extend(vector.start); extend(vector.end); }
  return [near, far];
}

// --- the viewer -------------------------------------------------------------------------------------

interface Camera { target: number[]; distance: number; yaw: number; pitch: number; }

const VERTEX = `attribute vec3 position; attribute vec3 colour; uniform mat4 mvp; uniform float size;
varying vec3 v; void main() { gl_Position = mvp * vec4(position, 1.0); gl_PointSize = size; v = colour; }`;
const FRAGMENT = `precision mediump float; varying vec3 v; void main() { gl_FragColor = vec4(v, 1.0); }`;
// A mesh: in one colour (a glTF's: its materials'), lit from the eye (each face as bright as it
// faces the viewer, either side).
const MESH_COLOUR = [170, 184, 204];
const MESH_VERTEX = `attribute vec3 position; attribute vec3 normal; attribute vec3 colour; uniform mat4 mvp;
varying vec3 n; varying vec3 c; void main() { gl_Position = mvp * vec4(position, 1.0); n = normal; c = colour; }`;
const MESH_FRAGMENT = `precision mediump float; varying vec3 n; varying vec3 c; uniform vec3 light;
void main() { gl_FragColor = vec4(c * (0.3 + 0.7 * abs(dot(normalize(n), light))), 1.0); }`;
// A textured mesh (a glTF's base-colour textures): the corner's colour times the texture's.
const TEXTURED_VERTEX = `attribute vec3 position; attribute vec3 normal; attribute vec3 colour; attribute vec2 uv; uniform mat4 mvp;
varying vec3 n; varying vec3 c; varying vec2 t; void main() { gl_Position = mvp * vec4(position, 1.0); n = normal; c = colour; t = uv; }`;
const TEXTURED_FRAGMENT = `precision mediump float; varying vec3 n; varying vec3 c; varying vec2 t; uniform vec3 light; uniform sampler2D image;
void main() { gl_FragColor = vec4(c * texture2D(image, t).rgb * (0.3 + 0.7 * abs(dot(normalize(n), light))), 1.0); }`;

// Chromium without a GPU runs WebGL on SwiftShader (a CPU rasterizer): there, measured at a million
// points, a frame took ~13 times as long as projecting the points in JavaScript (docs/media.md).
const SOFTWARE_GL_POINTS = 100_000;
// The 2-D renderer's triangles a frame (more are thinned evenly, and it says so): measured in headless
// Chromium on a shared 2-core machine at 3 to 6 million triangles a second (docs/media.md).
export const MAX_2D_TRIANGLES = 1_000_000;
let software: boolean | undefined;

/** Whether this browser's WebGL is a software renderer (SwiftShader, llvmpipe), asked once. */
function softwareGl(): boolean {
  if (software === undefined) {
    const gl = document.createElement("canvas").getContext("webgl");
    const info = gl?.getExtension("WEBGL_debug_renderer_info");
    const name = gl && info ? String(gl.getParameter(info.UNMASKED_RENDERER_WEBGL)) : "";
    software = /swiftshader|llvmpipe|software/i.test(name);
    gl?.getExtension("WEBGL_lose_context")?.loseContext();
  }
  return software;
}

const live = new Set<Viewer3D>(); // browsers keep ~16 WebGL contexts: those of viewers off the page are let go

class Viewer3D {
  private canvas = h("canvas.viewer3d-canvas", { width: WIDTH * SCALE, height: HEIGHT * SCALE });
  readonly overlay = h("canvas.viewer3d-overlay", { width: WIDTH * SCALE, height: HEIGHT * SCALE });
  readonly info = h("div.viewer3d-info");
  readonly el: HTMLElement;
  private readonly centre: number[];
  private readonly radius: number; // of what the first view frames
  private readonly extent: number; // from the centre to beyond the farthest point: the depth range
  private camera: Camera;
  private gl: WebGLRenderingContext | null = null;
  private pointBuffers: [WebGLBuffer, WebGLBuffer] | null = null;
  private lineBuffers: [WebGLBuffer, WebGLBuffer] | null = null;
  private lineCount = 0;
  private program: WebGLProgram | null = null;
  private meshProgram: WebGLProgram | null = null;
  private meshBuffers: (WebGLBuffer | null)[] | null = null; // position, normal, colour (null: one), uv (null: none)
  private textures = new Map<ImageBitmap | null, WebGLTexture>();
  private low: number[] = [];
  private high: number[] = [];
  private frame = 0;
  private shown = false; // drawn while on the page (a viewer is made before its panel is attached)
  private readonly born = performance.now();
  private readonly lines: { a: number[]; b: number[]; colour: number[] }[] = []; // boxes' edges, vectors
  private linePositions = new Float32Array(0); // those and a molecule's bonds: x, y, z at each end
  private lineColours = new Uint8Array(0);
  private faceNormals: Float32Array | null = null; // a mesh's, for the 2-D renderer

  /** `place`: the media key, list index and digest the view is kept under. */
  constructor(private readonly scene: Scene3D, private readonly place: string) {
    const low = [Infinity, Infinity, Infinity];
    const high = [-Infinity, -Infinity, -Infinity];
    const grow = (x: number, y: number, z: number) => {
      if (x < low[0]) low[0] = x; if (x > high[0]) high[0] = x;
      if (y < low[1]) low[1] = y; if (y > high[1]) high[1] = y;
      if (z < low[2]) low[2] = z; if (z > high[2]) high[2] = z;
    };
    const p = scene.positions;
    for (let i = 0; i < scene.count * 3; i += 3) grow(p[i], p[i + 1], p[i + 2]);
    const t = scene.triangles ?? new Float32Array(0);
    for (let i = 0; i < t.length; i += 3) grow(t[i], t[i + 1], t[i + 2]);
    const ends = scene.segments?.positions ?? new Float32Array(0);
    for (let i = 0; i < ends.length; i += 3) grow(ends[i], ends[i + 1], ends[i + 2]);
    for (const box of scene.boxes) {
      for (const [a, b] of boxEdges(box.corners)) this.lines.push({ a, b, colour: box.colour });
      for (const c of box.corners) grow(c[0], c[1], c[2]);
    }
    for (const vector of scene.vectors) {
      this.lines.push({ a: vector.start, b: vector.end, colour: vector.colour });
      grow(vector.start[0], vector.start[1], vector.start[2]);
      grow(vector.end[0], vector.end[1], vector.end[2]);
    }
    if (low[0] === Infinity) { low.fill(-1); high.fill(1); }
    this.low = low;
    this.high = high;
    this.makeLines();
    const [near, far] = framed(scene, low, high);
    this.centre = [0, 1, 2].map((c) => (near[c] + far[c]) / 2);
    this.radius = Math.max(1e-6, Math.hypot(far[0] - near[0], far[1] - near[1], far[2] - near[2]) / 2);
    this.extent = Math.max(this.radius, ...[0, 1, 2].map((c) => Math.max(this.centre[c] - low[c], high[c] - this.centre[c])).map((d) => d * Math.sqrt(3)));
    const kept = cameras.get(place);
    this.camera = kept ? { ...kept, target: [...kept.target] } : this.home();
    this.keepCamera();
    const fixed = (x: number) => Number(x.toPrecision(4)).toString();
    // a glTF's y is up: drawn turned (y, z) -> (z, -y), its bounds given in its own axes
    const span = scene.upY ? [[low[0], high[0]], [low[2], high[2]], [-high[1], -low[1]]] : [0, 1, 2].map((c) => [low[c], high[c]]);
    const bounds = ["x", "y", "z"].map((axis, c) => `${axis} ${fixed(span[c][0])}…${fixed(span[c][1])}`).join(" · ");
    const thinned = scene.total > scene.count ? ` (1 in ${Math.ceil(scene.total / scene.count)} of ${scene.total.toLocaleString()})` : "";
    const reset = h("button.viewer3d-reset", { type: "button", text: "reset" });
    reset.addEventListener("click", () => this.reset());
    const what = scene.triangles || scene.segments
      ? [[t.length / 9, "triangles"], [scene.count, "points"], [ends.length / 6, "line segments"]].filter(([n]) => n)
        .map(([n, name]) => `${n.toLocaleString()} ${name}`).join(" · ")
      : scene.bonds ? `${scene.total > scene.count ? `${scene.count.toLocaleString()} of ${scene.total.toLocaleString()}` : scene.count.toLocaleString()} atoms` +
        `${scene.models > 1 ? ` (model 1 of ${scene.models})` : ""} · ${(scene.bonds.length / 2).toLocaleString()} bonds (${scene.bondNote})`
      : `${scene.count.toLocaleString()} points${thinned}`;
    this.info.append(`${what} · ${bounds}` +
      (scene.boxes.length ? ` · ${scene.boxes.length} boxes` : "") + (scene.vectors.length ? ` · ${scene.vectors.length} vectors` : ""));
    this.el = h("div.viewer3d-view", {}, h("div.viewer3d-stage", {}, this.canvas, this.overlay), h("div.viewer3d-bar", {}, reset, this.info));
    for (const note of scene.skipped) this.el.append(h("p.viewer3d-note", { text: `left out: ${note}` }));
    this.el.dataset.points = String(scene.count);
    this.setUpGl();
    this.bind();
    for (const viewer of live) if (viewer.gone()) viewer.dispose();
    live.add(this);
    this.draw();
  }

  /** Boxes' edges, vectors and bonds as line segments (a bond: half in each atom's colour). */
  private makeLines(): void {
    const bonds = this.scene.bonds ?? new Uint32Array(0);
    const { positions: p, colours: c } = this.scene;
    const same = (a: number, b: number) => c[a] === c[b] && c[a + 1] === c[b + 1] && c[a + 2] === c[b + 2];
    const drawn = this.scene.segments; // a glTF's lines: after the bonds, as they are
    let segments = this.lines.length + (drawn ? drawn.positions.length / 6 : 0);
    for (let k = 0; k < bonds.length; k += 2) segments += same(bonds[k] * 3, bonds[k + 1] * 3) ? 1 : 2;
    const positions = new Float32Array(segments * 6);
    const colours = new Uint8Array(segments * 6);
    this.lines.forEach((line, i) => {
      positions.set(line.a.slice(0, 3), i * 6);
      positions.set(line.b.slice(0, 3), i * 6 + 3);
      colours.set(line.colour, i * 6);
      colours.set(line.colour, i * 6 + 3);
    });
    for (let k = 0, at = this.lines.length * 6; k < bonds.length; k += 2) {
      const a = bonds[k] * 3, b = bonds[k + 1] * 3;
      const middle = same(a, b) ? p.subarray(b, b + 3) : [0, 1, 2].map((i) => (p[a + i] + p[b + i]) / 2);
      for (const end of same(a, b) ? [a] : [a, b]) { // one segment, or half in each atom's colour
        positions.set(p.subarray(end, end + 3), at);
        positions.set(middle, at + 3);
        colours.set(c.subarray(end, end + 3), at);
        colours.set(c.subarray(end, end + 3), at + 3);
        at += 6;
      }
    }
    if (drawn) {
      positions.set(drawn.positions, positions.length - drawn.positions.length);
      colours.set(drawn.colours, colours.length - drawn.colours.length);
    }
    this.linePositions = positions;
    this.lineColours = colours;
  }

  private keepCamera(): void {
    cameras.delete(this.place);
    cameras.set(this.place, this.camera); // moved in place from now on
    while (cameras.size > 256) cameras.delete(cameras.keys().next().value!);
  }

  private home(): Camera {
    return { target: [...this.centre], distance: (this.radius / Math.sin(FOV / 2)) * 1.05, yaw: -Math.PI / 2 - 0.6, pitch: 0.5 };
  }

  reset(): void {
    this.camera = this.home();
    this.keepCamera();
    this.draw();
  }

  private setUpGl(): void {
    const software = this.scene.count > SOFTWARE_GL_POINTS && softwareGl();
    const gl = software ? null : this.canvas.getContext("webgl", { antialias: false });
    if (!gl) {
      this.fallBack(software
        ? "WebGL runs without a GPU in this browser (a software renderer, slower than drawing in JavaScript): drawn without it"
        : "WebGL is unavailable in this browser: drawn without it (one pixel a point, slower on large clouds)");
      return;
    }
    const compile = (type: number, source: string) => {
      const shader = gl.createShader(type)!;
      gl.shaderSource(shader, source);
      gl.compileShader(shader);
      return shader;
    };
    const link = (vertex: string, fragment: string) => {
      const program = gl.createProgram()!;
      gl.bindAttribLocation(program, 0, "position"); // attribute 0 is always an array (colour may be a constant)
      gl.attachShader(program, compile(gl.VERTEX_SHADER, vertex));
      gl.attachShader(program, compile(gl.FRAGMENT_SHADER, fragment));
      gl.linkProgram(program);
      return program;
    };
    const program = link(VERTEX, FRAGMENT);
    const upload = (positions: Float32Array, colours: Uint8Array): [WebGLBuffer, WebGLBuffer] => {
      const position = gl.createBuffer()!;
      gl.bindBuffer(gl.ARRAY_BUFFER, position);
      gl.bufferData(gl.ARRAY_BUFFER, positions, gl.STATIC_DRAW);
      const colour = gl.createBuffer()!;
      gl.bindBuffer(gl.ARRAY_BUFFER, colour);
      gl.bufferData(gl.ARRAY_BUFFER, colours, gl.STATIC_DRAW);
      return [position, colour];
    };
    this.pointBuffers = upload(this.scene.positions.subarray(0, this.scene.count * 3), this.scene.colours.subarray(0, this.scene.count * 3));
    this.lineCount = this.linePositions.length / 3;
    this.lineBuffers = upload(this.linePositions, this.lineColours);
    const triangles = this.scene.triangles;
    if (triangles) {
      const texture = this.scene.texture;
      this.meshProgram = texture ? link(TEXTURED_VERTEX, TEXTURED_FRAGMENT) : link(MESH_VERTEX, MESH_FRAGMENT);
      const buffer = (values: ArrayBufferView) => {
        const made = gl.createBuffer()!;
        gl.bindBuffer(gl.ARRAY_BUFFER, made);
        gl.bufferData(gl.ARRAY_BUFFER, values, gl.STATIC_DRAW);
        return made;
      };
      const colours = texture?.colours ?? this.scene.meshColours;
      this.meshBuffers = [buffer(triangles), buffer(this.scene.normals ?? faceNormals(triangles)), colours ? buffer(colours) : null,
        texture ? buffer(texture.uvs) : null];
      for (const group of texture?.groups ?? []) {
        if (this.textures.has(group.image)) continue;
        const made = gl.createTexture()!;
        gl.bindTexture(gl.TEXTURE_2D, made);
        if (group.image) gl.texImage2D(gl.TEXTURE_2D, 0, gl.RGBA, gl.RGBA, gl.UNSIGNED_BYTE, group.image);
        else gl.texImage2D(gl.TEXTURE_2D, 0, gl.RGBA, 1, 1, 0, gl.RGBA, gl.UNSIGNED_BYTE, new Uint8Array([255, 255, 255, 255]));
        gl.texParameteri(gl.TEXTURE_2D, gl.TEXTURE_MIN_FILTER, gl.LINEAR);
        gl.texParameteri(gl.TEXTURE_2D, gl.TEXTURE_MAG_FILTER, gl.LINEAR);
        this.textures.set(group.image, made); // powers of two (web/src/gltf.ts): REPEAT, the default, is allowed
      }
    }
    this.program = program;
    this.gl = gl;
    this.el.dataset.renderer = "webgl";
    this.canvas.addEventListener("webglcontextlost", (event) => {
      event.preventDefault();
      if (!live.has(this)) return; // let go of by dispose()
      this.gl = null;
      this.fallBack("the browser took back this drawing's WebGL context (it keeps a few per page): drawn without it");
      this.draw();
    });
  }

  /** Draws on a fresh 2-D canvas from now on (a canvas that had a WebGL context can't give a 2-D one). */
  private fallBack(note: string): void {
    const fresh = h("canvas.viewer3d-canvas", { width: WIDTH * SCALE, height: HEIGHT * SCALE });
    this.canvas.replaceWith(fresh);
    this.canvas = fresh;
    this.el.dataset.renderer = "2d";
    this.el.append(h("p.viewer3d-note", { text: note }));
    const triangles = (this.scene.triangles?.length ?? 0) / 9;
    if (triangles > MAX_2D_TRIANGLES) {
      this.el.append(h("p.viewer3d-note", { text: `without WebGL, ${MAX_2D_TRIANGLES.toLocaleString()} of the mesh's ` +
        `${triangles.toLocaleString()} triangles (evenly spread) are drawn: download it to see all of it` }));
    }
  }

  dispose(): void {
    this.gl?.getExtension("WEBGL_lose_context")?.loseContext();
    this.gl = null;
    live.delete(this);
  }

  private bind(): void {
    let last: { x: number; y: number } | null = null;
    let panning = false;
    this.overlay.addEventListener("contextmenu", (event) => event.preventDefault());
    this.overlay.addEventListener("pointerdown", (event) => {
      last = { x: event.clientX, y: event.clientY };
      panning = event.shiftKey || event.button === 2;
      this.overlay.setPointerCapture(event.pointerId);
    });
    this.overlay.addEventListener("pointermove", (event) => {
      if (!last) return;
      const dx = event.clientX - last.x;
      const dy = event.clientY - last.y;
      last = { x: event.clientX, y: event.clientY };
      if (panning) this.pan(dx, dy);
      else {
        this.camera.yaw -= dx * 0.01;
        this.camera.pitch = Math.max(-1.55, Math.min(1.55, this.camera.pitch + dy * 0.01));
      }
      this.draw();
    });
    const end = () => { last = null; };
    this.overlay.addEventListener("pointerup", end);
    this.overlay.addEventListener("pointercancel", end);
    this.overlay.addEventListener("wheel", (event) => {
      event.preventDefault();
      // within 1/1000 and 100 times the first view's distance: past those the scene is a dot or all
      // around, and without end the distance overflowed to infinity or zero (only reset drew again)
      const home = this.radius / Math.sin(FOV / 2);
      this.camera.distance = Math.max(home / 1000, Math.min(home * 100, this.camera.distance * Math.exp(Math.max(-1, Math.min(1, event.deltaY * 0.001)))));
      this.draw();
    }, { passive: false });
    this.overlay.addEventListener("dblclick", () => this.reset());
  }

  private pan(dx: number, dy: number): void {
    const { eye } = this.view();
    const forward = norm(sub(this.camera.target, eye));
    const right = norm(cross(forward, [0, 0, 1]));
    const up = cross(right, forward);
    const perPixel = (2 * this.camera.distance * Math.tan(FOV / 2)) / HEIGHT;
    // the point looked at stays within the scene's bounds: the model can't be dragged out of sight
    for (let c = 0; c < 3; c++) {
      const moved = this.camera.target[c] + (-dx * right[c] + dy * up[c]) * perPixel;
      this.camera.target[c] = Math.max(this.low[c], Math.min(this.high[c], moved));
    }
  }

  private view(): { eye: number[]; mvp: Mat4; light: number[] } {
    const { target, distance, yaw, pitch } = this.camera;
    const eye = [target[0] + distance * Math.cos(pitch) * Math.cos(yaw), target[1] + distance * Math.cos(pitch) * Math.sin(yaw),
      target[2] + distance * Math.sin(pitch)];
    const near = Math.max(distance - this.extent * 1.01, distance * 0.001);
    const projection = perspective(FOV, this.canvas.width / this.canvas.height, near, distance + this.extent * 1.01);
    return { eye, mvp: multiply(projection, lookAt(eye, target, [0, 0, 1])), light: norm(sub(eye, target)) };
  }

  /** Draws on the next animation frame (drags fire faster than frames). */
  /** Off the page for good: shown and taken off, or never put on within 10 s. */
  gone(): boolean {
    return !this.el.isConnected && (this.shown || performance.now() - this.born > 10_000);
  }

  draw(): void {
    if (this.frame) return;
    this.frame = requestAnimationFrame(() => {
      this.frame = 0;
      if (!this.el.isConnected) { // not on the page yet: draw once it is
        if (!this.gone()) this.draw();
        return;
      }
      this.shown = true;
      this.render();
    });
  }

  private render(): void {
    const { mvp, light } = this.view();
    const { gl, canvas } = this;
    if (gl && this.program && this.pointBuffers && this.lineBuffers) {
      gl.viewport(0, 0, canvas.width, canvas.height);
      gl.clearColor(BACKGROUND[0] / 255, BACKGROUND[1] / 255, BACKGROUND[2] / 255, 1);
      gl.clear(gl.COLOR_BUFFER_BIT | gl.DEPTH_BUFFER_BIT);
      gl.enable(gl.DEPTH_TEST);
      if (this.meshProgram && this.meshBuffers && this.scene.triangles) {
        const program = this.meshProgram;
        gl.useProgram(program);
        gl.uniformMatrix4fv(gl.getUniformLocation(program, "mvp"), false, mvp);
        gl.uniform3fv(gl.getUniformLocation(program, "light"), light);
        const texture = this.scene.texture;
        const names = texture ? ["position", "normal", "colour", "uv"] : ["position", "normal", "colour"];
        const attributes = names.map((name) => gl.getAttribLocation(program, name));
        attributes.forEach((at, i) => {
          const buffer = this.meshBuffers![i];
          if (!buffer) { // one colour: a constant attribute
            gl.disableVertexAttribArray(at);
            gl.vertexAttrib3f(at, MESH_COLOUR[0] / 255, MESH_COLOUR[1] / 255, MESH_COLOUR[2] / 255);
            return;
          }
          gl.bindBuffer(gl.ARRAY_BUFFER, buffer);
          gl.enableVertexAttribArray(at);
          gl.vertexAttribPointer(at, i === 3 ? 2 : 3, i === 2 ? gl.UNSIGNED_BYTE : gl.FLOAT, i === 2, 0, 0);
        });
        if (texture) {
          gl.uniform1i(gl.getUniformLocation(program, "image"), 0);
          gl.activeTexture(gl.TEXTURE0);
          for (const group of texture.groups) {
            gl.bindTexture(gl.TEXTURE_2D, this.textures.get(group.image) ?? null);
            gl.drawArrays(gl.TRIANGLES, group.first, group.count);
          }
        } else {
          gl.drawArrays(gl.TRIANGLES, 0, this.scene.triangles.length / 3);
        }
        attributes.forEach((at) => gl.disableVertexAttribArray(at));
      }
      gl.useProgram(this.program);
      gl.uniformMatrix4fv(gl.getUniformLocation(this.program, "mvp"), false, mvp);
      const position = gl.getAttribLocation(this.program, "position");
      const colour = gl.getAttribLocation(this.program, "colour");
      const bind = ([p, c]: [WebGLBuffer, WebGLBuffer]) => {
        gl.bindBuffer(gl.ARRAY_BUFFER, p);
        gl.enableVertexAttribArray(position);
        gl.vertexAttribPointer(position, 3, gl.FLOAT, false, 0, 0);
        gl.bindBuffer(gl.ARRAY_BUFFER, c);
        gl.enableVertexAttribArray(colour);
        gl.vertexAttribPointer(colour, 3, gl.UNSIGNED_BYTE, true, 0, 0);
      };
      gl.uniform1f(gl.getUniformLocation(this.program, "size"), this.scene.pointSize * SCALE);
      bind(this.pointBuffers);
      gl.drawArrays(gl.POINTS, 0, this.scene.count);
      if (this.lineCount) {
        bind(this.lineBuffers);
        gl.drawArrays(gl.LINES, 0, this.lineCount);
      }
    } else if (this.el.dataset.renderer === "2d") {
      this.render2d(mvp, light);
    }
    this.drawLabels(mvp);
  }

  /** Without WebGL: a mesh's triangles filled, each point and line drawn, in JavaScript into an
   * ImageData with a depth buffer (nearest wins). */
  private render2d(mvp: Mat4, light: number[]): void {
    const { width, height } = this.canvas;
    const context = this.canvas.getContext("2d")!;
    const image = context.createImageData(width, height);
    const pixels = new Uint32Array(image.data.buffer);
    const depth = new Float32Array(width * height).fill(Infinity);
    pixels.fill((255 << 24) | (BACKGROUND[2] << 16) | (BACKGROUND[1] << 8) | BACKGROUND[0]);
    if (this.scene.triangles) this.renderMesh2d(pixels, depth, mvp, light);
    const { positions, colours, count } = this.scene;
    const m = mvp;
    const size = Math.max(1, Math.round((this.scene.pointSize * SCALE) / 2));
    for (let i = 0; i < count; i++) {
      const x = positions[i * 3], y = positions[i * 3 + 1], z = positions[i * 3 + 2];
      const w = m[3] * x + m[7] * y + m[11] * z + m[15];
      if (w <= 0) continue;
      const px = Math.floor(((m[0] * x + m[4] * y + m[8] * z + m[12]) / w + 1) * 0.5 * width);
      const py = Math.floor((1 - (m[1] * x + m[5] * y + m[9] * z + m[13]) / w) * 0.5 * height);
      const d = (m[2] * x + m[6] * y + m[10] * z + m[14]) / w;
      const rgba = (255 << 24) | (colours[i * 3 + 2] << 16) | (colours[i * 3 + 1] << 8) | colours[i * 3];
      for (let oy = 0; oy < size; oy++) {
        for (let ox = 0; ox < size; ox++) {
          const qx = px + ox, qy = py + oy;
          if (qx < 0 || qy < 0 || qx >= width || qy >= height) continue;
          const at = qy * width + qx;
          if (d < depth[at]) { depth[at] = d; pixels[at] = rgba; }
        }
      }
    }
    // a molecule's bonds: into the same pixels, depth-tested, SCALE pixels wide (a protein has
    // hundreds of thousands: stroking them on the canvas took a second a frame)
    const l = this.linePositions, c = this.lineColours;
    const ends = new Float32Array(6);
    for (let i = this.lines.length * 6; i < l.length; i += 6) {
      let visible = true;
      for (let e = 0; e < 2; e++) {
        const x = l[i + e * 3], y = l[i + e * 3 + 1], z = l[i + e * 3 + 2];
        const w = m[3] * x + m[7] * y + m[11] * z + m[15];
        if (w <= 0) visible = false;
        ends[e * 3] = ((m[0] * x + m[4] * y + m[8] * z + m[12]) / w + 1) * 0.5 * width;
        ends[e * 3 + 1] = (1 - (m[1] * x + m[5] * y + m[9] * z + m[13]) / w) * 0.5 * height;
        ends[e * 3 + 2] = (m[2] * x + m[6] * y + m[10] * z + m[14]) / w;
      }
      if (!visible) continue;
      const steps = Math.min(4096, Math.ceil(Math.max(Math.abs(ends[3] - ends[0]), Math.abs(ends[4] - ends[1]))) + 1);
      const rgba = (255 << 24) | (c[i + 2] << 16) | (c[i + 1] << 8) | c[i];
      for (let k = 0; k <= steps; k++) {
        const t = k / steps;
        const px = Math.floor(ends[0] + (ends[3] - ends[0]) * t), py = Math.floor(ends[1] + (ends[4] - ends[1]) * t);
        const d = ends[2] + (ends[5] - ends[2]) * t;
        for (let oy = 0; oy < SCALE; oy++) {
          for (let ox = 0; ox < SCALE; ox++) {
            const qx = px + ox, qy = py + oy;
            if (qx < 0 || qy < 0 || qx >= width || qy >= height) continue;
            const at = qy * width + qx;
            if (d < depth[at]) { depth[at] = d; pixels[at] = rgba; }
          }
        }
      }
    }
    context.putImageData(image, 0, 0);
    context.lineWidth = 1.5 * SCALE;
    for (const line of this.lines) { // boxes' edges and vectors, over the points
      const a = this.project(mvp, line.a);
      const b = this.project(mvp, line.b);
      if (!a || !b) continue;
      context.strokeStyle = `rgb(${line.colour.join(",")})`;
      context.beginPath();
      context.moveTo(a[0], a[1]);
      context.lineTo(b[0], b[1]);
      context.stroke();
    }
  }

  /** A mesh without WebGL: each triangle projected and filled where it is nearest (the pixels whose
   * centres it covers, its depth interpolated), lit by its face's normal; at most MAX_2D_TRIANGLES of
   * them, evenly spread, where the mesh has more (said under the drawing: a frame of a million took seconds). */
  private renderMesh2d(pixels: Uint32Array, depth: Float32Array, m: Mat4, light: number[]): void {
    const triangles = this.scene.triangles!;
    const normals = (this.faceNormals ??= faceNormals(triangles));
    const { width, height } = this.canvas;
    const colours = this.scene.meshColours;
    const count = triangles.length / 9;
    // the j-th of at most MAX_2D_TRIANGLES is triangle floor(j * step): evenly spread, never more
    // (stepping f to floor(f + step) moved by 1 for any step under 2: every triangle drawn)
    const faces = Math.min(count, MAX_2D_TRIANGLES);
    const step = count / faces;
    const sx = [0, 0, 0], sy = [0, 0, 0], sz = [0, 0, 0];
    let visited = 0;
    for (let j = 0; j < faces; j++) {
      visited++;
      const i = (step === 1 ? j : Math.floor(j * step)) * 9;
      let behind = false;
      for (let k = 0; k < 3; k++) {
        const x = triangles[i + k * 3], y = triangles[i + k * 3 + 1], z = triangles[i + k * 3 + 2];
        const w = m[3] * x + m[7] * y + m[11] * z + m[15];
        if (w <= 0) { behind = true; break; }
        sx[k] = ((m[0] * x + m[4] * y + m[8] * z + m[12]) / w + 1) * 0.5 * width;
        sy[k] = (1 - (m[1] * x + m[5] * y + m[9] * z + m[13]) / w) * 0.5 * height;
        sz[k] = (m[2] * x + m[6] * y + m[10] * z + m[14]) / w;
      }
      if (behind) continue;
      const area = (sx[1] - sx[0]) * (sy[2] - sy[0]) - (sx[2] - sx[0]) * (sy[1] - sy[0]);
      if (!area || !Number.isFinite(area)) continue;
      const x0 = Math.max(0, Math.ceil(Math.min(sx[0], sx[1], sx[2]) - 0.5));
      const x1 = Math.min(width - 1, Math.floor(Math.max(sx[0], sx[1], sx[2]) - 0.5));
      const y0 = Math.max(0, Math.ceil(Math.min(sy[0], sy[1], sy[2]) - 0.5));
      const y1 = Math.min(height - 1, Math.floor(Math.max(sy[0], sy[1], sy[2]) - 0.5));
      if (x0 > x1 || y0 > y1) continue;
      const shade = 0.3 + 0.7 * Math.abs(normals[i] * light[0] + normals[i + 1] * light[1] + normals[i + 2] * light[2]);
      const r = Math.round((colours ? colours[i] : MESH_COLOUR[0]) * shade), g = Math.round((colours ? colours[i + 1] : MESH_COLOUR[1]) * shade),
        b = Math.round((colours ? colours[i + 2] : MESH_COLOUR[2]) * shade);
      const rgba = (255 << 24) | (b << 16) | (g << 8) | r;
      const inverse = 1 / area;
      for (let py = y0; py <= y1; py++) {
        const cy = py + 0.5;
        for (let px = x0; px <= x1; px++) {
          const cx = px + 0.5;
          // barycentric weights of corners 0, 1, 2 at the pixel's centre: all >= 0 inside
          const w0 = ((sx[1] - cx) * (sy[2] - cy) - (sx[2] - cx) * (sy[1] - cy)) * inverse;
          const w1 = ((sx[2] - cx) * (sy[0] - cy) - (sx[0] - cx) * (sy[2] - cy)) * inverse;
          const w2 = 1 - w0 - w1;
          if (w0 < 0 || w1 < 0 || w2 < 0) continue;
          const d = w0 * sz[0] + w1 * sz[1] + w2 * sz[2];
          const at = py * width + px;
          if (d < depth[at]) { depth[at] = d; pixels[at] = rgba; }
        }
      }
    }
    this.el.dataset.trianglesDrawn = String(visited); // the triangles a frame goes through (the tests read it)
  }

  private project(mvp: Mat4, p: number[]): [number, number] | null {
    const m = mvp;
    const w = m[3] * p[0] + m[7] * p[1] + m[11] * p[2] + m[15];
    if (w <= 0) return null;
    return [((m[0] * p[0] + m[4] * p[1] + m[8] * p[2] + m[12]) / w + 1) * 0.5 * this.canvas.width,
      (1 - (m[1] * p[0] + m[5] * p[1] + m[9] * p[2] + m[13]) / w) * 0.5 * this.canvas.height];
  }

  /** Box labels, at each box's highest corner, on the overlay canvas (text over either renderer). */
  private drawLabels(mvp: Mat4): void {
    const context = this.overlay.getContext("2d")!;
    context.clearRect(0, 0, this.overlay.width, this.overlay.height);
    context.font = `${12 * SCALE}px sans-serif`;
    context.textBaseline = "bottom";
    for (const box of this.scene.boxes as Box3D[]) {
      if (!box.label) continue;
      const top = box.corners.reduce((a, b) => (b[2] > a[2] ? b : a));
      const at = this.project(mvp, top);
      if (!at) continue;
      context.fillStyle = `rgb(${box.colour.join(",")})`;
      context.fillText(box.label, at[0] + 2 * SCALE, at[1] - 2 * SCALE);
    }
  }
}
