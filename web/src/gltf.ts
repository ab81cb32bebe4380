// glTF 2.0 meshes for the 3-D viewer (web/src/viewer3d.ts; docs/media.md, "3-D objects in the
// dashboard"): a .glb (binary container) or a .gltf (JSON, its buffers embedded as base64 data:
// URIs), read into the triangles the STL/OBJ paths make. The default scene's nodes are followed
// down their hierarchy (matrix or translation/rotation/scale, composed from the root) to their
// meshes' triangle primitives, read through accessors and buffer views; each primitive in its
// material's flat baseColorFactor (times COLOR_0 where given). Buffers or textures in separate files
// are not fetched (tracklet stores one file an Object3D): the primitives needing them are left out
// and named. The file is untrusted: every accessor's range is checked against its buffer view and
// buffer before a byte is read, triangle counts are checked against the cap before anything is
// allocated, and nodes may nest only so deep and never reach themselves, so memory and time are
// bounded by the file's size and the cap.

import { cross, dot, multiply, norm, type Mat4 } from "./geometry3d";
import { mesh, type Scene3D } from "./scene3d";

const GLB_MAGIC = 0x46546c67; // "glTF"
const JSON_CHUNK = 0x4e4f534a;
const BIN_CHUNK = 0x004e4942;
const MAX_DEPTH = 256;
const COMPONENTS: Record<string, number> = { SCALAR: 1, VEC2: 2, VEC3: 3, VEC4: 4, MAT2: 4, MAT3: 9, MAT4: 16 };
const BYTES: Record<number, number> = { 5120: 1, 5121: 1, 5122: 2, 5123: 2, 5125: 4, 5126: 4 };
// Required extensions that leave the geometry where the core spec puts it (others, such as Draco or
// meshopt compression, do not: such a file is refused by name).
const HARMLESS = /^KHR_(mesh_quantization|materials_\w+|texture_\w+|lights_punctual)$/;
const NO_MATERIAL: [number, number, number] = [170, 184, 204]; // the viewer's mesh colour
// glTF's y axis is up; the viewer's z is: turned +90° about x.
const Y_UP = new Float32Array([1, 0, 0, 0, 0, 0, 1, 0, 0, -1, 0, 0, 0, 0, 0, 1]);

type Json = Record<string, unknown>;

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
  triangles: number;
  base: number[]; // linear r, g, b, 0-1
}

/** Reads a .glb or a .gltf (`bytes`: the whole file) into triangles, at most `maxTriangles`. */
export function readGltf(bytes: Uint8Array, maxTriangles: number): Scene3D {
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
  const refused = list(gltf.extensionsRequired, "extensionsRequired").filter((name) => !HARMLESS.test(String(name)));
  if (refused.length) fail(`the file needs glTF extensions the viewer does not read: ${refused.join(", ")}`);
  return new Reader(gltf, bin).read(maxTriangles);
}

function parse(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch (error) {
    throw new Error(`the glTF's JSON is not valid (${(error as Error).message}): truncated or damaged?`);
  }
}

class Reader {
  private readonly buffers: unknown[];
  private readonly views: unknown[];
  private readonly accessors: unknown[];
  private readonly meshes: unknown[];
  private readonly materials: unknown[];
  private readonly nodes: unknown[];
  private readonly decoded = new Map<number, Uint8Array>();
  private readonly notes = new Set<string>();

  constructor(private readonly gltf: Json, private readonly bin: Uint8Array | null) {
    this.buffers = list(gltf.buffers, "buffers");
    this.views = list(gltf.bufferViews, "bufferViews");
    this.accessors = list(gltf.accessors, "accessors");
    this.meshes = list(gltf.meshes, "meshes");
    this.materials = list(gltf.materials, "materials");
    this.nodes = list(gltf.nodes, "nodes");
  }

  private item(items: unknown[], index: unknown, what: string): [number, Json] {
    const at = whole(index, `a reference to ${what}`, items.length);
    if (!isObject(items[at])) fail(`${what} ${at} is not a JSON object`);
    return [at, items[at] as Json];
  }

  /** Buffer `index`'s bytes: the GLB's binary chunk, or a base64 data: URI decoded (once). */
  private buffer(index: unknown): Uint8Array {
    const [at, buffer] = this.item(this.buffers, index, "buffer");
    const length = whole(buffer.byteLength, `buffer ${at}'s byteLength`);
    let bytes = this.decoded.get(at);
    if (!bytes) {
      const uri = buffer.uri;
      if (uri === undefined) {
        if (at !== 0 || !this.bin) fail(`buffer ${at} has no uri and is not a GLB's binary chunk`);
        bytes = this.bin;
      } else if (typeof uri === "string" && uri.startsWith("data:")) {
        const comma = uri.indexOf(",");
        if (comma < 0 || !uri.slice(0, comma).endsWith(";base64")) throw new Unsupported(`buffer ${at}'s data: URI is not base64`);
        let text = "";
        try {
          text = atob(uri.slice(comma + 1));
        } catch {
          fail(`buffer ${at}'s data: URI is not valid base64`);
        }
        bytes = new Uint8Array(text.length);
        for (let i = 0; i < text.length; i++) bytes[i] = text.charCodeAt(i);
      } else {
        throw new Unsupported(`buffer ${at} is a separate file (${JSON.stringify(String(uri)).slice(0, 80)}), not fetched: ` +
          "log a .glb, or a .gltf with its buffers embedded as data: URIs");
      }
      this.decoded.set(at, bytes);
    }
    if (bytes.length < length) fail(`buffer ${at} declares ${length.toLocaleString()} bytes and holds ${bytes.length.toLocaleString()}: truncated`);
    return bytes.subarray(0, length);
  }

  /** Accessor `index`, its whole range checked against its buffer view and buffer. */
  private accessor(index: unknown, types: string[], what: string): Accessor {
    const [at, accessor] = this.item(this.accessors, index, "accessor");
    const name = `accessor ${at} (${what})`;
    if (!types.includes(String(accessor.type))) fail(`${name} is of type ${String(accessor.type)}: ${types.join(" or ")} expected`);
    const size = BYTES[accessor.componentType as number];
    if (!size) fail(`${name} has componentType ${String(accessor.componentType)}, not one glTF defines`);
    if (accessor.sparse !== undefined) throw new Unsupported(`${name} is sparse, which the viewer does not read`);
    if (accessor.bufferView === undefined) throw new Unsupported(`${name} has no bufferView (all zeros)`);
    const count = whole(accessor.count, `${name}'s count`);
    if (count < 1) fail(`${name} has a count of 0`);
    const [v, view] = this.item(this.views, accessor.bufferView, "bufferView");
    const buffer = this.buffer(view.buffer);
    const viewOffset = whole(view.byteOffset ?? 0, `bufferView ${v}'s byteOffset`);
    const viewLength = whole(view.byteLength, `bufferView ${v}'s byteLength`);
    if (viewOffset + viewLength > buffer.length) {
      fail(`bufferView ${v} (bytes ${viewOffset.toLocaleString()} to ${(viewOffset + viewLength).toLocaleString()}) runs past its buffer's ${buffer.length.toLocaleString()} bytes`);
    }
    const components = COMPONENTS[accessor.type as string];
    const element = components * size;
    let stride = element;
    if (view.byteStride !== undefined) {
      stride = whole(view.byteStride, `bufferView ${v}'s byteStride`);
      if (stride < 4 || stride > 252 || stride % 4) fail(`bufferView ${v}'s byteStride is ${stride}: 4 to 252, a multiple of 4, expected`);
      if (stride < element) fail(`bufferView ${v}'s byteStride of ${stride} is less than ${name}'s ${element}-byte elements`);
    }
    const offset = whole(accessor.byteOffset ?? 0, `${name}'s byteOffset`);
    const end = offset + stride * (count - 1) + element;
    if (end > viewLength) {
      fail(`${name}: ${count.toLocaleString()} elements of ${element} bytes from byte ${offset.toLocaleString()} need ` +
        `${end.toLocaleString()} bytes; its bufferView ${v} has ${viewLength.toLocaleString()}: out of range`);
    }
    const data = new DataView(buffer.buffer, buffer.byteOffset + viewOffset, viewLength);
    const normalized = accessor.normalized === true;
    const read: Record<number, (at: number) => number> = {
      5126: (p) => data.getFloat32(p, true),
      5120: normalized ? (p) => Math.max(data.getInt8(p) / 127, -1) : (p) => data.getInt8(p),
      5121: normalized ? (p) => data.getUint8(p) / 255 : (p) => data.getUint8(p),
      5122: normalized ? (p) => Math.max(data.getInt16(p, true) / 32767, -1) : (p) => data.getInt16(p, true),
      5123: normalized ? (p) => data.getUint16(p, true) / 65535 : (p) => data.getUint16(p, true),
      5125: (p) => data.getUint32(p, true),
    };
    return { view: data, offset, stride, count, size, read: read[accessor.componentType as number] };
  }

  /** A mesh's primitive, checked; Unsupported where the viewer does not read it. */
  private primitive(value: unknown, where: string): Primitive {
    if (!isObject(value)) fail(`${where} is not a JSON object`);
    const mode = value.mode ?? 4;
    if (mode !== 4) throw new Unsupported(`${where} is of mode ${String(mode)} (${["points", "lines", "line loop", "line strip", "", "triangle strip", "triangle fan"][mode as number] ?? "unknown"}): only triangles are drawn`);
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
    if (value.material === undefined) { // the viewer's mesh colour, or white under COLOR_0 (glTF's default)
      if (!colour) base = NO_MATERIAL.map((c) => srgbToLinear(c / 255));
    } else {
      const [, material] = this.item(this.materials, value.material, "material");
      const pbr = isObject(material.pbrMetallicRoughness) ? material.pbrMetallicRoughness : {};
      if (pbr.baseColorFactor !== undefined) base = numbers(pbr.baseColorFactor, 4, `material ${String(value.material)}'s baseColorFactor`).slice(0, 3);
      if (pbr.baseColorTexture !== undefined) this.notes.add("textures (drawn in their materials' flat base colours)");
    }
    return { position, normal, colour, indices, triangles: Math.floor((indices ?? position).count / 3), base };
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

  read(maxTriangles: number): Scene3D {
    const primitives = new Map<string, Primitive | null>();
    const skipped = new Map<string, string>();
    const work: { primitive: Primitive; matrix: Mat4 }[] = [];
    let total = 0;
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
        work.push({ primitive, matrix });
        if (total > maxTriangles || work.length > maxTriangles) {
          fail(`more than the ${maxTriangles.toLocaleString()} triangles drawn here (the nodes' meshes counted once a node)`);
        }
      });
    }
    if (!total) fail(skipped.size ? [...skipped.values()][0] : "the glTF's scene has no triangles");
    const triangles = new Float32Array(total * 9);
    const normals = work.some((w) => w.primitive.normal) ? new Float32Array(total * 9) : null;
    const colours = new Uint8Array(total * 9);
    let at = 0;
    for (const { primitive, matrix } of work) {
      const { position, normal, colour, indices, base } = primitive;
      const m = matrix;
      // normals turn with the inverse transpose of the matrix's 3×3 part: its columns' cross products
      const a = [m[0], m[1], m[2]], b = [m[4], m[5], m[6]], c = [m[8], m[9], m[10]];
      const bc = cross(b, c), ca = cross(c, a), ab = cross(a, b);
      const flip = dot(a, bc) < 0 ? -1 : 1;
      const rgb = base.map(linearToByte);
      for (let t = 0; t < primitive.triangles; t++) {
        for (let k = 0; k < 3; k++) {
          let vertex = t * 3 + k;
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
          at++;
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
    const result = mesh(triangles, normals, colours); // less the triangles with a corner not finite
    result.upY = true;
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
