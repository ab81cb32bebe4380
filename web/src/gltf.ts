// glTF 2.0 meshes for the 3-D viewer (web/src/viewer3d.ts; docs/media.md, "3-D objects in the
// dashboard"): a .glb (binary container) or a .gltf (JSON), read into the triangles the STL/OBJ paths
// make. Buffers and images come from the GLB's binary chunk, base64 data: URIs, or files beside the
// .gltf, fetched through `resolve` (the run's or the artifact version's files: a URI must be a
// relative path that stays in the .gltf's folder; URLs, absolute paths and ".." are refused). The
// default scene's nodes are followed down their hierarchy (matrix or translation/rotation/scale,
// composed from the root) to their meshes' primitives (triangles, strips and fans; points; lines,
// line strips and loops, as segments), read through
// accessors (sparse ones too) and buffer views; each primitive in its material's baseColorFactor
// times COLOR_0 and its base-colour texture (PNG or JPEG; each triangle also takes the texture's
// colour at its middle, which the 2-D renderer draws). The file is untrusted: every accessor's range is checked
// against its buffer view and buffer before a byte is read, sparse indices against the accessor,
// triangle counts against the cap before anything is allocated, an image's claimed size before it is
// decoded, and nodes may nest only so deep and never reach themselves, so memory and time are bounded
// by the files' sizes and the caps.

import { cross, dot, multiply, norm, type Mat4 } from "./geometry3d";
import { mesh, pointsAndLines, type Scene3D } from "./scene3d";

const GLB_MAGIC = 0x46546c67; // "glTF"
const JSON_CHUNK = 0x4e4f534a;
const BIN_CHUNK = 0x004e4942;
const MAX_DEPTH = 256;
const MAX_FILES = 64; // buffers and images fetched beside a .gltf
export const MAX_IMAGE_BYTES = 64 * 1024 * 1024;
const MAX_IMAGE_PIXELS = 4096 * 4096; // an image claiming more is not decoded (its material's colour instead)
const TEXTURE_SIDE = 1024; // a texture is drawn resized to powers of two up to this (WebGL 1 repeats only those)
const SAMPLE_SIDE = 64; // corners take their colour from the texture at this size (the 2-D renderer's colours)
const COMPONENTS: Record<string, number> = { SCALAR: 1, VEC2: 2, VEC3: 3, VEC4: 4, MAT2: 4, MAT3: 9, MAT4: 16 };
const BYTES: Record<number, number> = { 5120: 1, 5121: 1, 5122: 2, 5123: 2, 5125: 4, 5126: 4 };
// Required extensions that leave the geometry where the core spec puts it (others are refused by name).
const HARMLESS = /^KHR_(mesh_quantization|materials_\w+|texture_\w+|lights_punctual)$/;
const COMPRESSION: Record<string, string> = {
  KHR_draco_mesh_compression: "Draco", EXT_meshopt_compression: "meshopt", KHR_meshopt_compression: "meshopt",
};
const NO_MATERIAL: [number, number, number] = [170, 184, 204]; // the viewer's mesh colour
// glTF's y axis is up; the viewer's z is: turned +90° about x.
const Y_UP = new Float32Array([1, 0, 0, 0, 0, 0, 1, 0, 0, -1, 0, 0, 0, 0, 0, 1]);

type Json = Record<string, unknown>;

/** Fetches a file beside the .gltf (`path`: relative to its folder, checked), at most `limit` bytes
 * of it; throws an Error saying what is missing. */
export type Resolve = (path: string, limit: number) => Promise<Uint8Array>;

/** Something the viewer does not read (not damage): the primitive is left out and named. */
class Unsupported extends Error {}

function fail(message: string): never {
  throw new Error(message);
}

function isObject(value: unknown): value is Json {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function list(value: unknown, what: string): unknown[] {
  if (value === undefined) return [];
  if (!Array.isArray(value)) fail(`the glTF's ${what} is not a list`);
  return value;
}

/** A non-negative whole number (an index, an offset, a count), below `limit` where given. */
function whole(value: unknown, what: string, limit = Number.MAX_SAFE_INTEGER): number {
  if (typeof value !== "number" || !Number.isInteger(value) || value < 0 || value >= limit) {
    fail(`${what} is ${JSON.stringify(value)}: ${limit < Number.MAX_SAFE_INTEGER ? `an index below ${limit}` : "a whole number"} expected`);
  }
  return value;
}

function numbers(value: unknown, length: number, what: string): number[] {
  if (!Array.isArray(value) || value.length !== length || !value.every((x) => typeof x === "number" && isFinite(x))) {
    fail(`${what} is not ${length} numbers`);
  }
  return value as number[];
}

/** A URI in a .gltf as a path among the files beside it: relative, in the .gltf's folder or below,
 * percent-decoded. Throws Unsupported naming why not (a URL, an absolute path, ".."). */
export function siblingPath(uri: string, what: string): string {
  const shown = JSON.stringify(uri.slice(0, 80));
  if (/^[a-z][a-z0-9+.-]*:/i.test(uri)) throw new Unsupported(`${what} is a URL (${shown}): only files beside the .gltf are read`);
  let path = "";
  try {
    path = decodeURIComponent(uri);
  } catch {
    throw new Unsupported(`${what}'s uri ${shown} is not a valid URI`);
  }
  const parts = path.split("/");
  if (path.startsWith("/") || path.includes("\\") || /^[a-z]:/i.test(path)) throw new Unsupported(`${what} is an absolute path (${shown}): only files beside the .gltf are read`);
  if (parts.includes("..")) throw new Unsupported(`${what} (${shown}) leaves the .gltf's folder ("..")`);
  const kept = parts.filter((part) => part !== ".");
  if (!kept.length || kept.some((part) => !part || part.includes("\0") || part.includes("?") || part.includes("#"))) {
    throw new Unsupported(`${what}'s uri ${shown} is not a file's path`);
  }
  return kept.join("/");
}

function base64(uri: string, what: string): Uint8Array {
  const comma = uri.indexOf(",");
  if (comma < 0 || !uri.slice(0, comma).endsWith(";base64")) throw new Unsupported(`${what}'s data: URI is not base64`);
  let text = "";
  try {
    text = atob(uri.slice(comma + 1));
  } catch {
    fail(`${what}'s data: URI is not valid base64`);
  }
  const bytes = new Uint8Array(text.length);
  for (let i = 0; i < text.length; i++) bytes[i] = text.charCodeAt(i);
  return bytes;
}

interface Accessor {
  view: DataView;
  offset: number; // of element 0 within `view`
  stride: number;
  count: number;
  size: number; // bytes a component
  read: (at: number) => number; // one component at a byte offset within `view`
}

interface Primitive {
  position: Accessor;
  normal: Accessor | null;
  colour: Accessor | null;
  indices: Accessor | null;
  mode: number; // 0 points, 1 lines, 2 line loop, 3 line strip, 4 triangles, 5 strip, 6 fan
  triangles: number;
  points: number;
  segments: number; // of a line primitive (a loop's closing one counted)
  base: number[]; // linear r, g, b, 0-1
  texture: { image: number; uv: Accessor; what: string } | null;
}

/** A decoded image: drawn (WebGL) and sampled at corners (colours, the 2-D renderer). */
interface Picture {
  bitmap: ImageBitmap;
  sample: Uint8ClampedArray; // SAMPLE_SIDE² RGBA
}

/** Reads a .glb or a .gltf (`bytes`: the whole file) into triangles, at most `maxTriangles`;
 * `resolve` fetches the files its URIs name (none given: such buffers and images are left out). */
export async function readGltf(bytes: Uint8Array, maxTriangles: number, resolve?: Resolve): Promise<Scene3D> {
  const data = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let gltf: unknown;
  let bin: Uint8Array | null = null;
  if (bytes.length >= 4 && data.getUint32(0, true) === GLB_MAGIC) {
    if (bytes.length < 20) fail(`a GLB of ${bytes.length} bytes: truncated (its header and first chunk take 20)`);
    const version = data.getUint32(4, true);
    if (version !== 2) fail(`a GLB of version ${version}: glTF 2.0 expected`);
    const length = data.getUint32(8, true);
    if (length > bytes.length) fail(`a GLB declaring ${length.toLocaleString()} bytes is ${bytes.length.toLocaleString()} bytes: truncated`);
    for (let at = 12; at + 8 <= length;) {
      const size = data.getUint32(at, true);
      const type = data.getUint32(at + 4, true);
      if (at + 8 + size > length) fail(`a GLB chunk of ${size.toLocaleString()} bytes at byte ${at} runs past the file's end: truncated or damaged`);
      const chunk = bytes.subarray(at + 8, at + 8 + size);
      if (at === 12) {
        if (type !== JSON_CHUNK) fail("a GLB whose first chunk is not its JSON");
        gltf = parse(new TextDecoder().decode(chunk));
      } else if (type === BIN_CHUNK && !bin) {
        bin = chunk;
      }
      at += 8 + size;
    }
    if (gltf === undefined) fail("a GLB without its JSON chunk: truncated or damaged");
  } else {
    gltf = parse(new TextDecoder().decode(bytes));
  }
  if (!isObject(gltf)) fail("the glTF is not a JSON object");
  const version = isObject(gltf.asset) ? String(gltf.asset.version) : "";
  if (!version.startsWith("2")) fail(`a glTF of version ${version || "(none given)"}: glTF 2.0 expected`);
  const required = list(gltf.extensionsRequired, "extensionsRequired").map(String);
  const compressed = required.find((name) => COMPRESSION[name]);
  if (compressed) {
    fail(`compressed with ${COMPRESSION[compressed]} (${compressed}): not supported here; ` +
      "export it uncompressed (e.g. gltf-transform copy) or download it");
  }
  const refused = required.filter((name) => !HARMLESS.test(name));
  if (refused.length) fail(`the file needs glTF extensions the viewer does not read: ${refused.join(", ")}`);
  const reader = new Reader(gltf, bin, maxTriangles, resolve);
  await reader.fetchBuffers();
  return reader.read();
}

function parse(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch (error) {
    throw new Error(`the glTF's JSON is not valid (${(error as Error).message}): truncated or damaged?`);
  }
}

/** Where a picture's pixels are, and how many it claims, from its header: PNG's IHDR, JPEG's frame
 * (SOFn) marker; null for anything else. Read before decoding, so a file claiming 100,000² pixels
 * is refused rather than decoded. */
export function imageSize(bytes: Uint8Array): { type: string; width: number; height: number } | null {
  const data = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (bytes.length >= 24 && data.getUint32(0) === 0x89504e47 && data.getUint32(12) === 0x49484452) {
    return { type: "image/png", width: data.getUint32(16), height: data.getUint32(20) };
  }
  if (bytes.length >= 4 && data.getUint16(0) === 0xffd8) {
    for (let at = 2; at + 9 <= bytes.length;) {
      if (bytes[at] !== 0xff) return null;
      const marker = bytes[at + 1];
      if (marker === 0xff) { at++; continue; }
      if (marker === 0xd8 || marker === 0x01 || (marker >= 0xd0 && marker <= 0xd7)) { at += 2; continue; }
      if (marker >= 0xc0 && marker <= 0xcf && marker !== 0xc4 && marker !== 0xc8 && marker !== 0xcc) {
        return { type: "image/jpeg", width: data.getUint16(at + 7), height: data.getUint16(at + 5) };
      }
      if (marker === 0xda || marker === 0xd9) return null; // scan data or the end before a frame header
      at += 2 + data.getUint16(at + 2);
    }
  }
  return null;
}

const powerOfTwo = (n: number) => Math.min(TEXTURE_SIDE, 2 ** Math.round(Math.log2(Math.max(1, n))));

class Reader {
  private readonly buffers: unknown[];
  private readonly views: unknown[];
  private readonly accessors: unknown[];
  private readonly meshes: unknown[];
  private readonly materials: unknown[];
  private readonly nodes: unknown[];
  private readonly textures: unknown[];
  private readonly images: unknown[];
  private readonly decoded = new Map<number, Uint8Array>();
  private readonly fetched = new Map<number, Uint8Array | Error>(); // buffers in files beside the .gltf
  private readonly pictures = new Map<number, Picture | string>();
  private readonly notes = new Set<string>();

  constructor(private readonly gltf: Json, private readonly bin: Uint8Array | null, private readonly maxTriangles: number,
              private readonly resolve?: Resolve) {
    this.buffers = list(gltf.buffers, "buffers");
    this.views = list(gltf.bufferViews, "bufferViews");
    this.accessors = list(gltf.accessors, "accessors");
    this.meshes = list(gltf.meshes, "meshes");
    this.materials = list(gltf.materials, "materials");
    this.nodes = list(gltf.nodes, "nodes");
    this.textures = list(gltf.textures, "textures");
    this.images = list(gltf.images, "images");
  }

  private item(items: unknown[], index: unknown, what: string): [number, Json] {
    const at = whole(index, `a reference to ${what}`, items.length);
    if (!isObject(items[at])) fail(`${what} ${at} is not a JSON object`);
    return [at, items[at] as Json];
  }

  /** Each buffer in a file beside the .gltf, fetched (at most its byteLength of it) before reading. */
  async fetchBuffers(): Promise<void> {
    let files = 0;
    for (let at = 0; at < this.buffers.length; at++) {
      const buffer = this.buffers[at];
      if (!isObject(buffer) || typeof buffer.uri !== "string" || buffer.uri.startsWith("data:")) continue;
      try {
        const path = siblingPath(buffer.uri, `buffer ${at}`);
        if (!this.resolve) throw new Unsupported(`buffer ${at} is a separate file (${JSON.stringify(path.slice(0, 80))}), not fetched here`);
        if (++files > MAX_FILES) throw new Unsupported(`buffer ${at}: more than ${MAX_FILES} files beside the .gltf`);
        const length = whole(buffer.byteLength, `buffer ${at}'s byteLength`);
        this.fetched.set(at, await this.resolve(path, length));
      } catch (error) {
        this.fetched.set(at, error instanceof Unsupported ? error : new Unsupported(`buffer ${at}: ${(error as Error).message}`));
      }
    }
  }

  /** Buffer `index`'s bytes: the GLB's binary chunk, a base64 data: URI decoded (once), or a file fetched. */
  private buffer(index: unknown): Uint8Array {
    const [at, buffer] = this.item(this.buffers, index, "buffer");
    const length = whole(buffer.byteLength, `buffer ${at}'s byteLength`);
    let bytes = this.decoded.get(at);
    if (!bytes) {
      const uri = buffer.uri;
      const fetched = this.fetched.get(at);
      if (fetched instanceof Error) throw fetched;
      if (fetched) {
        bytes = fetched;
      } else if (uri === undefined) {
        if (isObject(buffer.extensions) && Object.keys(buffer.extensions).some((name) => COMPRESSION[name])) {
          throw new Unsupported(`buffer ${at} is a fallback for compressed data (${Object.keys(buffer.extensions).join(", ")}): compressed data is not supported here`);
        }
        if (at !== 0 || !this.bin) fail(`buffer ${at} has no uri and is not a GLB's binary chunk`);
        bytes = this.bin;
      } else if (typeof uri === "string" && uri.startsWith("data:")) {
        bytes = base64(uri, `buffer ${at}`);
      } else {
        fail(`buffer ${at}'s uri is ${JSON.stringify(uri)?.slice(0, 80)}: a string expected`);
      }
      this.decoded.set(at, bytes);
    }
    if (bytes.length < length) fail(`buffer ${at} declares ${length.toLocaleString()} bytes and holds ${bytes.length.toLocaleString()}: truncated`);
    return bytes.subarray(0, length);
  }

  /** Buffer view `index`'s bytes, checked against its buffer. */
  private view(index: unknown): [number, Json, Uint8Array] {
    const [v, view] = this.item(this.views, index, "bufferView");
    const buffer = this.buffer(view.buffer);
    const offset = whole(view.byteOffset ?? 0, `bufferView ${v}'s byteOffset`);
    const length = whole(view.byteLength, `bufferView ${v}'s byteLength`);
    if (offset + length > buffer.length) {
      fail(`bufferView ${v} (bytes ${offset.toLocaleString()} to ${(offset + length).toLocaleString()}) runs past its buffer's ${buffer.length.toLocaleString()} bytes`);
    }
    return [v, view, buffer.subarray(offset, offset + length)];
  }

  /** Accessor `index`, its whole range checked against its buffer view and buffer; a sparse one (or
   * one without a buffer view: zeros) made dense, its count bounded by the triangle cap. */
  private accessor(index: unknown, types: string[], what: string): Accessor {
    const [at, accessor] = this.item(this.accessors, index, "accessor");
    const name = `accessor ${at} (${what})`;
    if (!types.includes(String(accessor.type))) fail(`${name} is of type ${String(accessor.type)}: ${types.join(" or ")} expected`);
    const type = accessor.componentType as number;
    const size = BYTES[type];
    if (!size) fail(`${name} has componentType ${String(type)}, not one glTF defines`);
    const count = whole(accessor.count, `${name}'s count`);
    if (count < 1) fail(`${name} has a count of 0`);
    const element = COMPONENTS[accessor.type as string] * size;
    let data: DataView;
    let offset = 0;
    let stride = element;
    if (accessor.bufferView === undefined || accessor.sparse !== undefined) {
      const most = this.maxTriangles * 3;
      if (accessor.bufferView === undefined && count > most) {
        fail(`${name} has no bufferView and a count of ${count.toLocaleString()}: more than the ${most.toLocaleString()} vertices drawn here`);
      }
    }
    if (accessor.bufferView === undefined) {
      data = new DataView(new ArrayBuffer(count * element)); // zeros, as the spec says
    } else {
      const [v, view, bytes] = this.view(accessor.bufferView);
      if (view.byteStride !== undefined) {
        stride = whole(view.byteStride, `bufferView ${v}'s byteStride`);
        if (stride < 4 || stride > 252 || stride % 4) fail(`bufferView ${v}'s byteStride is ${stride}: 4 to 252, a multiple of 4, expected`);
        if (stride < element) fail(`bufferView ${v}'s byteStride of ${stride} is less than ${name}'s ${element}-byte elements`);
      }
      offset = whole(accessor.byteOffset ?? 0, `${name}'s byteOffset`);
      const end = offset + stride * (count - 1) + element;
      if (end > bytes.length) {
        fail(`${name}: ${count.toLocaleString()} elements of ${element} bytes from byte ${offset.toLocaleString()} need ` +
          `${end.toLocaleString()} bytes; its bufferView ${v} has ${bytes.length.toLocaleString()}: out of range`);
      }
      data = new DataView(bytes.buffer, bytes.byteOffset, bytes.length);
    }
    if (accessor.sparse !== undefined) {
      data = this.sparse(accessor.sparse, name, data, offset, stride, count, element);
      offset = 0;
      stride = element;
    }
    const normalized = accessor.normalized === true;
    const d = data;
    const read: Record<number, (at: number) => number> = {
      5126: (p) => d.getFloat32(p, true),
      5120: normalized ? (p) => Math.max(d.getInt8(p) / 127, -1) : (p) => d.getInt8(p),
      5121: normalized ? (p) => d.getUint8(p) / 255 : (p) => d.getUint8(p),
      5122: normalized ? (p) => Math.max(d.getInt16(p, true) / 32767, -1) : (p) => d.getInt16(p, true),
      5123: normalized ? (p) => d.getUint16(p, true) / 65535 : (p) => d.getUint16(p, true),
      5125: (p) => d.getUint32(p, true),
    };
    return { view: data, offset, stride, count, size, read: read[type] };
  }

  /** A sparse accessor's elements: its base (copied, packed) with the listed elements replaced. The
   * indices must rise and stay below the count; both lists are checked against their buffer views. */
  private sparse(value: unknown, name: string, base: DataView, offset: number, stride: number, count: number, element: number): DataView {
    if (!isObject(value)) fail(`${name}'s sparse is not a JSON object`);
    const n = whole(value.count, `${name}'s sparse count`);
    if (n < 1 || n > count) fail(`${name}'s sparse count is ${n.toLocaleString()}: 1 to its count of ${count.toLocaleString()} expected`);
    const indices = isObject(value.indices) ? value.indices : fail(`${name}'s sparse has no indices`);
    const values = isObject(value.values) ? value.values : fail(`${name}'s sparse has no values`);
    const type = indices.componentType as number;
    if (![5121, 5123, 5125].includes(type)) fail(`${name}'s sparse indices are of componentType ${String(type)}: unsigned byte, short or int expected`);
    const [iv, , indexBytes] = this.view(indices.bufferView);
    const [vv, , valueBytes] = this.view(values.bufferView);
    const indexAt = whole(indices.byteOffset ?? 0, `${name}'s sparse indices' byteOffset`);
    const valueAt = whole(values.byteOffset ?? 0, `${name}'s sparse values' byteOffset`);
    if (indexAt + n * BYTES[type] > indexBytes.length) fail(`${name}'s ${n.toLocaleString()} sparse indices run past their bufferView ${iv}: out of range`);
    if (valueAt + n * element > valueBytes.length) fail(`${name}'s ${n.toLocaleString()} sparse values run past their bufferView ${vv}: out of range`);
    const dense = new Uint8Array(count * element);
    const from = new Uint8Array(base.buffer, base.byteOffset, base.byteLength);
    for (let i = 0; i < count; i++) dense.set(from.subarray(offset + i * stride, offset + i * stride + element), i * element);
    const index = new DataView(indexBytes.buffer, indexBytes.byteOffset + indexAt, n * BYTES[type]);
    let last = -1;
    for (let k = 0; k < n; k++) {
      const at = type === 5121 ? index.getUint8(k) : type === 5123 ? index.getUint16(k * 2, true) : index.getUint32(k * 4, true);
      if (at >= count) fail(`${name}'s sparse index ${at.toLocaleString()} is out of range (the accessor has ${count.toLocaleString()} elements)`);
      if (at <= last) fail(`${name}'s sparse indices do not rise (${last} then ${at})`);
      last = at;
      dense.set(valueBytes.subarray(valueAt + k * element, valueAt + (k + 1) * element), at * element);
    }
    return new DataView(dense.buffer);
  }

  /** A mesh's primitive, checked; Unsupported where the viewer does not read it. */
  private primitive(value: unknown, where: string): Primitive {
    if (!isObject(value)) fail(`${where} is not a JSON object`);
    const mode = value.mode ?? 4;
    if (isObject(value.extensions) && Object.keys(value.extensions).some((name) => COMPRESSION[name]) && !isObject(value.attributes)) {
      throw new Unsupported(`${where} is compressed (${Object.keys(value.extensions).join(", ")}): not supported here`);
    }
    if (typeof mode !== "number" || !Number.isInteger(mode) || mode < 0 || mode > 6) {
      throw new Unsupported(`${where} is of mode ${JSON.stringify(mode)?.slice(0, 40)}: not one glTF defines (0 to 6)`);
    }
    const attributes = isObject(value.attributes) ? value.attributes : fail(`${where} has no attributes`);
    if (attributes.POSITION === undefined) throw new Unsupported(`${where} has no POSITION`);
    const position = this.accessor(attributes.POSITION, ["VEC3"], `${where}'s POSITION`);
    const normal = attributes.NORMAL === undefined ? null : this.accessor(attributes.NORMAL, ["VEC3"], `${where}'s NORMAL`);
    const colour = attributes.COLOR_0 === undefined ? null : this.accessor(attributes.COLOR_0, ["VEC3", "VEC4"], `${where}'s COLOR_0`);
    for (const [other, name] of [[normal, "NORMAL"], [colour, "COLOR_0"]] as const) {
      if (other && other.count !== position.count) fail(`${where}'s ${name} has ${other.count} elements, its POSITION ${position.count}`);
    }
    let indices: Accessor | null = null;
    if (value.indices !== undefined) {
      indices = this.accessor(value.indices, ["SCALAR"], `${where}'s indices`);
      const type = (this.accessors[value.indices as number] as Json).componentType;
      if (![5121, 5123, 5125].includes(type as number)) fail(`${where}'s indices are of componentType ${String(type)}: unsigned byte, short or int expected`);
    }
    let base = [1, 1, 1];
    let texture: Primitive["texture"] = null;
    if (value.material === undefined) { // the viewer's mesh colour, or white under COLOR_0 (glTF's default)
      if (!colour) base = NO_MATERIAL.map((c) => srgbToLinear(c / 255));
    } else {
      const [m, material] = this.item(this.materials, value.material, "material");
      const pbr = isObject(material.pbrMetallicRoughness) ? material.pbrMetallicRoughness : {};
      if (pbr.baseColorFactor !== undefined) base = numbers(pbr.baseColorFactor, 4, `material ${m}'s baseColorFactor`).slice(0, 3);
      if (isObject(pbr.baseColorTexture)) {
        const info = pbr.baseColorTexture;
        const [t, entry] = this.item(this.textures, info.index, "texture");
        const set = whole(info.texCoord ?? 0, `material ${m}'s texCoord`, 8);
        const uv = attributes[`TEXCOORD_${set}`];
        if (entry.source === undefined) {
          this.notes.add(`texture ${t} has no image the viewer reads (${Object.keys(isObject(entry.extensions) ? entry.extensions : {}).join(", ") || "no source"}): drawn in its material's base colour`);
        } else if (uv === undefined) {
          this.notes.add(`${where} has no TEXCOORD_${set} for its texture: drawn in its material's base colour`);
        } else {
          const image = whole(entry.source, `texture ${t}'s source`, this.images.length);
          const coordinates = this.accessor(uv, ["VEC2"], `${where}'s TEXCOORD_${set}`);
          if (coordinates.count !== position.count) fail(`${where}'s TEXCOORD_${set} has ${coordinates.count} elements, its POSITION ${position.count}`);
          texture = { image, uv: coordinates, what: `texture ${t}` };
        }
      }
    }
    const n = (indices ?? position).count;
    const triangles = mode === 4 ? Math.floor(n / 3) : mode > 4 ? Math.max(0, n - 2) : 0;
    const points = mode === 0 ? n : 0;
    const segments = mode === 1 ? Math.floor(n / 2) : mode === 2 ? (n > 2 ? n : n - 1) : mode === 3 ? Math.max(0, n - 1) : 0;
    if (mode < 4) texture = null; // points and lines take their colours (the 2-D renderer's), never an image
    return { position, normal, colour, indices, mode, triangles, points, segments, base, texture };
  }

  /** Image `index` decoded (once), or why not: its bytes from a buffer view, a data: URI or a file
   * beside the .gltf; its claimed size checked before it is decoded. */
  private async picture(index: number): Promise<Picture | string> {
    const known = this.pictures.get(index);
    if (known) return known;
    let result: Picture | string;
    try {
      const [, image] = this.item(this.images, index, "image");
      let bytes: Uint8Array;
      if (image.bufferView !== undefined) {
        bytes = this.view(image.bufferView)[2];
      } else if (typeof image.uri === "string" && image.uri.startsWith("data:")) {
        bytes = base64(image.uri, `image ${index}`);
      } else if (typeof image.uri === "string") {
        const path = siblingPath(image.uri, `image ${index}`);
        if (!this.resolve) throw new Unsupported(`image ${index} is a separate file, not fetched here`);
        bytes = await this.resolve(path, MAX_IMAGE_BYTES);
      } else {
        fail(`image ${index} has neither a bufferView nor a uri`);
      }
      const size = imageSize(bytes);
      if (!size) throw new Unsupported(`image ${index} is not a PNG or JPEG`);
      const { width, height } = size;
      if (!width || !height || width * height > MAX_IMAGE_PIXELS) {
        throw new Unsupported(`image ${index} claims ${width.toLocaleString()} × ${height.toLocaleString()} pixels: ` +
          `more than the ${MAX_IMAGE_PIXELS.toLocaleString()} decoded here`);
      }
      const blob = new Blob([bytes as BlobPart], { type: size.type });
      let bitmap: ImageBitmap;
      try {
        bitmap = await createImageBitmap(blob, { resizeWidth: powerOfTwo(width), resizeHeight: powerOfTwo(height), resizeQuality: "high" });
      } catch (error) {
        throw new Unsupported(`image ${index} could not be decoded (${(error as Error).message || "damaged?"})`);
      }
      const canvas = document.createElement("canvas");
      canvas.width = canvas.height = SAMPLE_SIDE;
      const context = canvas.getContext("2d", { willReadFrequently: true })!;
      context.drawImage(bitmap, 0, 0, SAMPLE_SIDE, SAMPLE_SIDE);
      result = { bitmap, sample: context.getImageData(0, 0, SAMPLE_SIDE, SAMPLE_SIDE).data };
    } catch (error) {
      result = `${(error as Error).message}: drawn in its material's base colour`;
    }
    this.pictures.set(index, result);
    return result;
  }

  /** Each node with a mesh, with its world matrix: the default scene's trees walked from their roots. */
  private instances(): { mesh: number; matrix: Mat4 }[] {
    const found: { mesh: number; matrix: Mat4 }[] = [];
    const state = new Uint8Array(this.nodes.length); // 1: on the path walked, 2: done
    const visit = (index: unknown, parent: Mat4, depth: number) => {
      const [at, node] = this.item(this.nodes, index, "node");
      if (state[at] === 1) fail(`node ${at} is its own ancestor: the glTF's node hierarchy has a cycle`);
      if (state[at] === 2) fail(`node ${at} is reached twice: glTF nodes form trees (one parent each)`);
      if (depth > MAX_DEPTH) fail(`nodes nested more than ${MAX_DEPTH} deep`);
      state[at] = 1;
      const matrix = multiply(parent, local(node, at));
      if (node.mesh !== undefined) found.push({ mesh: whole(node.mesh, `node ${at}'s mesh`, this.meshes.length), matrix });
      for (const child of list(node.children, `node ${at}'s children`)) visit(child, matrix, depth + 1);
      state[at] = 2;
    };
    const scenes = list(this.gltf.scenes, "scenes");
    if (scenes.length) {
      const [s, scene] = this.item(scenes, this.gltf.scene ?? 0, "scene");
      for (const root of list(scene.nodes, `scene ${s}'s nodes`)) visit(root, Y_UP, 0);
    } else if (this.nodes.length) { // no scene: every node that is no node's child
      const children = new Set(this.nodes.flatMap((node) => (isObject(node) ? list(node.children, "a node's children") : [])));
      this.nodes.forEach((_, i) => { if (!children.has(i)) visit(i, Y_UP, 0); });
    } else {
      this.meshes.forEach((_, i) => found.push({ mesh: i, matrix: Y_UP }));
    }
    return found;
  }

  async read(): Promise<Scene3D> {
    const maxTriangles = this.maxTriangles;
    const primitives = new Map<string, Primitive | null>();
    const skipped = new Map<string, string>();
    const work: { primitive: Primitive; matrix: Mat4 }[] = [];
    let total = 0;
    let points = 0;
    let segments = 0;
    for (const { mesh: m, matrix } of this.instances()) {
      const [, mesh] = this.item(this.meshes, m, "mesh");
      list(mesh.primitives, `mesh ${m}'s primitives`).forEach((value, p) => {
        const where = `mesh ${m} primitive ${p}`;
        if (!primitives.has(where)) {
          try {
            primitives.set(where, this.primitive(value, where));
          } catch (error) {
            if (!(error instanceof Unsupported)) throw error;
            primitives.set(where, null);
            skipped.set(where, error.message);
          }
        }
        const primitive = primitives.get(where);
        if (!primitive) return;
        total += primitive.triangles;
        points += primitive.points;
        segments += primitive.segments;
        work.push({ primitive, matrix });
        if (total > maxTriangles || work.length > maxTriangles) {
          fail(`more than the ${maxTriangles.toLocaleString()} triangles drawn here (the nodes' meshes counted once a node)`);
        }
        if (points + segments > maxTriangles) {
          fail(`more than the ${maxTriangles.toLocaleString()} points and line segments drawn here (the nodes' meshes counted once a node)`);
        }
      });
    }
    if (!total && !points && !segments) fail(skipped.size ? [...skipped.values()][0] : "the glTF's scene has no triangles, points or lines");
    const images: (Picture | null)[] = [];
    for (const { primitive } of work) {
      const texture = primitive.texture;
      if (!texture || images[texture.image] !== undefined) continue;
      const picture = await this.picture(texture.image);
      if (typeof picture === "string") this.notes.add(picture);
      images[texture.image] = typeof picture === "string" ? null : picture;
    }
    const textured = images.some((image) => image);
    const triangles = new Float32Array(total * 9);
    const normals = work.some((w) => w.primitive.normal) ? new Float32Array(total * 9) : null;
    const colours = new Uint8Array(total * 9);
    const plain = textured ? new Uint8Array(total * 9) : null; // the colours without the texture (WebGL's)
    const uvs = textured ? new Float32Array(total * 6) : null;
    const pictureOf = textured ? new Int32Array(total).fill(-1) : null;
    const dots = new Float32Array(points * 3);
    const dotColours = new Uint8Array(points * 3);
    const ends = new Float32Array(segments * 6);
    const endColours = new Uint8Array(segments * 6);
    let spot = 0; // corners written into dots, ends
    let end = 0;
    let at = 0;
    for (const { primitive, matrix } of work) {
      const { position, normal, colour, indices, base, mode } = primitive;
      if (mode < 4) { // points, or lines as segments: each corner placed and coloured as a triangle's
        const n = (indices ?? position).count;
        const corner = (k: number, into: Float32Array, colours: Uint8Array, out: number) => {
          let vertex = k;
          if (indices) {
            vertex = indices.read(indices.offset + k * indices.stride);
            if (vertex >= position.count) fail(`an index of ${vertex.toLocaleString()} in a primitive of ${position.count.toLocaleString()} vertices: out of range`);
          }
          const p = position.offset + vertex * position.stride;
          const x = position.read(p), y = position.read(p + position.size), z = position.read(p + 2 * position.size);
          into[out] = matrix[0] * x + matrix[4] * y + matrix[8] * z + matrix[12];
          into[out + 1] = matrix[1] * x + matrix[5] * y + matrix[9] * z + matrix[13];
          into[out + 2] = matrix[2] * x + matrix[6] * y + matrix[10] * z + matrix[14];
          const q = colour ? colour.offset + vertex * colour.stride : 0;
          for (let i = 0; i < 3; i++) colours[out + i] = linearToByte(base[i] * (colour ? colour.read(q + i * colour.size) : 1));
        };
        if (mode === 0) {
          for (let k = 0; k < n; k++) corner(k, dots, dotColours, spot++ * 3);
        } else {
          for (let s = 0; s < primitive.segments; s++) {
            const [a, b] = mode === 1 ? [2 * s, 2 * s + 1] : [s, (s + 1) % n]; // a loop's last segment closes it
            corner(a, ends, endColours, end++ * 3);
            corner(b, ends, endColours, end++ * 3);
          }
        }
        continue;
      }
      const picture = primitive.texture ? images[primitive.texture.image] : null;
      const uv = picture ? primitive.texture!.uv : null;
      const m = matrix;
      // normals turn with the inverse transpose of the matrix's 3×3 part: its columns' cross products
      const a = [m[0], m[1], m[2]], b = [m[4], m[5], m[6]], c = [m[8], m[9], m[10]];
      const bc = cross(b, c), ca = cross(c, a), ab = cross(a, b);
      const flip = dot(a, bc) < 0 ? -1 : 1;
      const rgb = base.map(linearToByte);
        for (let t = 0; t < primitive.triangles; t++) {
        if (pictureOf && picture) pictureOf[at / 3] = primitive.texture!.image;
        for (let k = 0; k < 3; k++) {
          // strips alternate their winding; fans turn about their first vertex
          let vertex = mode === 4 ? t * 3 + k : mode === 5 ? (t % 2 && k < 2 ? t + 1 - k : t + k) : k ? t + k : 0;
          if (indices) {
            vertex = indices.read(indices.offset + vertex * indices.stride);
            if (vertex >= position.count) fail(`an index of ${vertex.toLocaleString()} in a primitive of ${position.count.toLocaleString()} vertices: out of range`);
          }
          const p = position.offset + vertex * position.stride;
          const x = position.read(p), y = position.read(p + position.size), z = position.read(p + 2 * position.size);
          const out = at * 3;
          triangles[out] = m[0] * x + m[4] * y + m[8] * z + m[12];
          triangles[out + 1] = m[1] * x + m[5] * y + m[9] * z + m[13];
          triangles[out + 2] = m[2] * x + m[6] * y + m[10] * z + m[14];
          if (normals && normal) {
            const q = normal.offset + vertex * normal.stride;
            const s = normal.size;
            const nx = normal.read(q), ny = normal.read(q + s), nz = normal.read(q + 2 * s);
            const n = norm([0, 1, 2].map((i) => flip * (nx * bc[i] + ny * ca[i] + nz * ab[i])));
            normals.set(n, out);
          }
          if (colour) {
            const q = colour.offset + vertex * colour.stride;
            const s = colour.size;
            for (let i = 0; i < 3; i++) colours[out + i] = linearToByte(base[i] * colour.read(q + i * s));
          } else {
            colours.set(rgb, out);
          }
          if (plain) plain.set(colours.subarray(out, out + 3), out);
          if (uv && uvs) {
            const q = uv.offset + vertex * uv.stride;
            uvs[at * 2] = uv.read(q);
            uvs[at * 2 + 1] = uv.read(q + uv.size);
          }
          at++;
        }
        if (uv && uvs && picture) { // the texture's colour at the triangle's middle (nearest texel, repeating)
          const o = (at - 3) * 2;
          const place = (u: number) => { const f = u - Math.floor(u); return Math.min(SAMPLE_SIDE - 1, Math.floor((f === 0 && u > 0 ? 1 : f) * SAMPLE_SIDE)) || 0; };
          const texel = (place((uvs[o + 3] + uvs[o + 5] + uvs[o + 1]) / 3) * SAMPLE_SIDE + place((uvs[o] + uvs[o + 2] + uvs[o + 4]) / 3)) * 4;
          for (let k = (at - 3) * 3; k < at * 3; k++) {
            colours[k] = linearToByte(srgbToLinear(colours[k] / 255) * srgbToLinear(picture.sample[texel + (k % 3)] / 255));
          }
        }
        if (normals && !normal) { // this primitive has none: its faces' own
          const o = (at - 3) * 3;
          const e1 = [0, 1, 2].map((i) => triangles[o + 3 + i] - triangles[o + i]);
          const e2 = [0, 1, 2].map((i) => triangles[o + 6 + i] - triangles[o + i]);
          const n = norm(cross(e1, e2));
          for (let k = 0; k < 3; k++) normals.set(n, o + k * 3);
        }
      }
    }
    const extra = textured ? [{ values: plain!, width: 9 }, { values: uvs!, width: 6 }, { values: pictureOf!, width: 1 }] : [];
    // less the triangles, points and segments with a corner not finite
    const result = pointsAndLines(total ? mesh(triangles, normals, colours, extra) : null, dots, dotColours, ends, endColours);
    result.upY = true;
    if (textured && result.triangles) {
      const kept = result.triangles!.length / 9;
      const of = extra[2].values.subarray(0, kept);
      const groups: { first: number; count: number; image: ImageBitmap | null }[] = [];
      for (let t = 0; t < kept; t++) {
        const image = of[t] >= 0 ? images[of[t]]!.bitmap : null;
        const last = groups[groups.length - 1];
        if (last && last.image === image) last.count += 3;
        else groups.push({ first: t * 3, count: 3, image });
      }
      result.texture = { colours: extra[0].values.subarray(0, kept * 9) as Uint8Array, uvs: extra[1].values.subarray(0, kept * 6) as Float32Array, groups };
    }
    for (const [where, why] of skipped) result.skipped.push(why.startsWith(where) ? why : `${where}: ${why}`);
    for (const note of this.notes) result.skipped.push(note);
    return result;
  }
}

/** A node's own transform: its matrix (column-major), or translation × rotation × scale. */
function local(node: Json, at: number): Mat4 {
  if (node.matrix !== undefined) return new Float32Array(numbers(node.matrix, 16, `node ${at}'s matrix`));
  const [tx, ty, tz] = node.translation === undefined ? [0, 0, 0] : numbers(node.translation, 3, `node ${at}'s translation`);
  const [x, y, z, w] = node.rotation === undefined ? [0, 0, 0, 1] : numbers(node.rotation, 4, `node ${at}'s rotation`);
  const [sx, sy, sz] = node.scale === undefined ? [1, 1, 1] : numbers(node.scale, 3, `node ${at}'s scale`);
  return new Float32Array([
    (1 - 2 * (y * y + z * z)) * sx, 2 * (x * y + z * w) * sx, 2 * (x * z - y * w) * sx, 0,
    2 * (x * y - z * w) * sy, (1 - 2 * (x * x + z * z)) * sy, 2 * (y * z + x * w) * sy, 0,
    2 * (x * z + y * w) * sz, 2 * (y * z - x * w) * sz, (1 - 2 * (x * x + y * y)) * sz, 0,
    tx, ty, tz, 1,
  ]);
}

/** glTF's colour factors are linear: shown as the sRGB bytes a screen takes. */
function linearToByte(value: number): number {
  const v = Math.max(0, Math.min(1, value));
  return Math.round(255 * (v <= 0.0031308 ? 12.92 * v : 1.055 * v ** (1 / 2.4) - 0.055));
}

function srgbToLinear(value: number): number {
  return value <= 0.04045 ? value / 12.92 : ((value + 0.055) / 1.055) ** 2.4;
}
