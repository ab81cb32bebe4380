// The 3-D files the run page's viewer draws (web/src/viewer3d.ts), read into one shape: points
// (positions and colours), boxes and vectors. Point clouds come as tracklet stores
// `tracklet.Object3D` / `wandb.Object3D` (docs/media.md): an N×3 / N×4 / N×6 array as `.npy`, read
// from a stream so a large cloud is thinned to at most `maxPoints` without holding the file, or W&B's
// scene JSON (`.pts.json`: points, boxes with 8 corners, a label and a colour, vectors); a PDB/PQR
// molecule's atoms become points coloured by element, with its bonds; STL and OBJ meshes become
// triangles (glTF ones: web/src/gltf.ts). Anything malformed throws an Error that says
// what is wrong with the file; the viewer shows it in place of the drawing.

import { classColour } from "./media";

export interface Box3D {
  corners: number[][]; // 8 × [x, y, z]
  label: string;
  colour: [number, number, number];
}

export interface Vector3D {
  start: number[];
  end: number[];
  colour: [number, number, number];
}

export interface Scene3D {
  positions: Float32Array; // x, y, z per point
  colours: Uint8Array; // r, g, b per point
  count: number; // points drawn
  total: number; // points in the file (more than `count` when thinned)
  boxes: Box3D[];
  vectors: Vector3D[];
  skipped: string[]; // what was left out, and why (a malformed box, ...)
  pointSize: number; // in CSS pixels
  triangles: Float32Array | null; // a mesh: 3 corners × x, y, z per triangle
  normals: Float32Array | null; // a mesh's normal at each corner (null: each face's own, computed)
  meshColours: Uint8Array | null; // a mesh's r, g, b at each corner (null: one colour)
  bonds: Uint32Array | null; // a molecule's bonds: pairs of atom indices (null: not a molecule)
  // line segments (a glTF's lines, line strips and loops): x, y, z and r, g, b at each of two ends
  segments: { positions: Float32Array; colours: Uint8Array } | null;
  bondNote: string; // where the bonds come from ("CONECT", "by distance")
  upY: boolean; // the file's y axis is up (glTF): drawn turned so, its bounds given in its own axes
  models: number; // a PDB's MODEL records (an NMR ensemble), an SDF's records: only the first is drawn
  // a glTF's base-colour textures (WebGL): each corner's colour without the texture and its u, v;
  // runs of corners (first, count) drawn with one image (null: none). `meshColours` hold the
  // textures' colours at the corners (what the 2-D renderer draws).
  texture?: { colours: Uint8Array; uvs: Float32Array; groups: { first: number; count: number; image: ImageBitmap | null }[] };
}

const DEFAULT_BOX: [number, number, number] = [0, 255, 0];
/** Boxes (and vectors) drawn from one scene: each box's edges are found from its corners (a few
 * hundred steps) and become 12 lines; a file of a million boxes froze the page for many seconds. */
export const MAX_BOXES = 10_000;
const DEFAULT_VECTOR: [number, number, number] = [255, 255, 255];

/** Colours points from their values: columns 3-5 as r, g, b (0-255, or 0-1 scaled when none is
 * above 1); column 3 alone as a category (W&B's N×4: the class palette of the image masks); none:
 * by height (z), blue low to yellow high. */
function colourPoints(positions: Float32Array, extra: Float32Array, columns: number, count: number): Uint8Array {
  const colours = new Uint8Array(count * 3);
  if (columns === 6) {
    let max = 0;
    for (let i = 0; i < extra.length; i++) if (extra[i] > max) max = extra[i];
    const scale = max <= 1 ? 255 : 1;
    for (let i = 0; i < extra.length; i++) colours[i] = Math.max(0, Math.min(255, Math.round(extra[i] * scale)));
  } else if (columns === 4) {
    for (let i = 0; i < count; i++) {
      const id = Math.round(extra[i]);
      const [r, g, b] = id >= 1 ? classColour(id) : [160, 160, 160];
      colours[i * 3] = r;
      colours[i * 3 + 1] = g;
      colours[i * 3 + 2] = b;
    }
  } else {
    let low = Infinity;
    let high = -Infinity;
    for (let i = 0; i < count; i++) {
      const z = positions[i * 3 + 2];
      if (z < low) low = z;
      if (z > high) high = z;
    }
    const span = high - low || 1;
    for (let i = 0; i < count; i++) {
      const t = (positions[i * 3 + 2] - low) / span;
      colours[i * 3] = Math.round(40 + 215 * t);
      colours[i * 3 + 1] = Math.round(90 + 150 * t);
      colours[i * 3 + 2] = Math.round(230 - 190 * t);
    }
  }
  return colours;
}

function scene(positions: Float32Array, colours: Uint8Array, count: number, total: number): Scene3D {
  return { positions, colours, count, total, boxes: [], vectors: [], skipped: [], pointSize: count < 20_000 ? 4 : 2,
    triangles: null, normals: null, meshColours: null, bonds: null, segments: null, bondNote: "", upY: false, models: 0 };
}

/** A scene of the first `count` points, less those whose x, y or z is not a finite number (a
 * LiDAR's NaN for "no return", a value past float32's range): they can't be placed, and one of them
 * made the view's bounds and centre NaN or infinite, drawing nothing. Colours come from what is kept;
 * the points left out are counted in `skipped`. */
function pointScene(positions: Float32Array, extra: Float32Array, columns: number, count: number, total: number): Scene3D {
  const extraColumns = columns - 3;
  let kept = 0;
  for (let i = 0; i < count; i++) {
    const x = positions[i * 3], y = positions[i * 3 + 1], z = positions[i * 3 + 2];
    if (!Number.isFinite(x) || !Number.isFinite(y) || !Number.isFinite(z)) continue;
    if (kept !== i) {
      positions.copyWithin(kept * 3, i * 3, i * 3 + 3);
      if (extraColumns) extra.copyWithin(kept * extraColumns, i * extraColumns, (i + 1) * extraColumns);
    }
    kept++;
  }
  const keptPositions = positions.subarray(0, kept * 3);
  const result = scene(keptPositions, colourPoints(keptPositions, extra.subarray(0, kept * extraColumns), columns, kept),
    kept, total - (count - kept));
  if (kept < count) {
    result.skipped.push(`${(count - kept).toLocaleString()} ${count - kept === 1 ? "point" : "points"} whose ` +
      "coordinates are not finite numbers (NaN, ±Infinity, or past float32's range)");
  }
  return result;
}

// --- .npy -------------------------------------------------------------------------------------------

const NPY_MAGIC = [0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59]; // \x93NUMPY
const NPY_TYPES: Record<string, number> = { f2: 2, f4: 4, f8: 8, i1: 1, i2: 2, i4: 4, i8: 8, u1: 1, u2: 2, u4: 4, u8: 8 };

interface NpyHeader {
  rows: number;
  columns: number;
  kind: string; // f4, i2, ...
  itemSize: number;
  little: boolean;
  dataOffset: number;
}

/** The header of an .npy file (its first bytes), or null while more bytes are needed. */
export function npyHeader(bytes: Uint8Array): NpyHeader | null {
  if (bytes.length < 10) return null;
  if (!NPY_MAGIC.every((byte, i) => bytes[i] === byte)) throw new Error("not an .npy file (no \\x93NUMPY magic)");
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const major = bytes[6];
  const lengthAt = major === 1 ? 2 : 4;
  if (bytes.length < 8 + lengthAt) return null;
  const headerLength = major === 1 ? view.getUint16(8, true) : view.getUint32(8, true);
  const dataOffset = 8 + lengthAt + headerLength;
  if (headerLength > 65_536) throw new Error(`an .npy header of ${headerLength} bytes: damaged`);
  if (bytes.length < dataOffset) return null;
  const text = new TextDecoder("latin1").decode(bytes.subarray(8 + lengthAt, dataOffset));
  const descr = /'descr':\s*'([<>|=])([a-z]\d+)'/.exec(text);
  const shape = /'shape':\s*\((\d+),\s*(\d+),?\s*\)/.exec(text);
  if (!descr || !shape) throw new Error(`an .npy header without a 2-D shape and a plain dtype: ${text.trim()}`);
  if (/'fortran_order':\s*True/.test(text)) throw new Error("a Fortran-ordered .npy array (log a C-ordered one)");
  const itemSize = NPY_TYPES[descr[2]];
  if (!itemSize) throw new Error(`points of dtype ${descr[2]}: numbers (float, int, uint) expected`);
  const columns = Number(shape[2]);
  if (![3, 4, 6].includes(columns)) throw new Error(`a point cloud of ${columns} columns: N×3, N×4 or N×6 expected`);
  return { rows: Number(shape[1]), columns, kind: descr[2], itemSize, little: descr[1] !== ">", dataOffset };
}

function reader(kind: string, little: boolean): (view: DataView, at: number) => number {
  switch (kind) {
    case "f2": return (v, at) => half(v.getUint16(at, little));
    case "f4": return (v, at) => v.getFloat32(at, little);
    case "f8": return (v, at) => v.getFloat64(at, little);
    case "i1": return (v, at) => v.getInt8(at);
    case "u1": return (v, at) => v.getUint8(at);
    case "i2": return (v, at) => v.getInt16(at, little);
    case "u2": return (v, at) => v.getUint16(at, little);
    case "i4": return (v, at) => v.getInt32(at, little);
    case "u4": return (v, at) => v.getUint32(at, little);
    case "i8": return (v, at) => Number(v.getBigInt64(at, little));
    default: return (v, at) => Number(v.getBigUint64(at, little));
  }
}

/** An IEEE half-precision float from its 16 bits (DataView.getFloat16 is too new to rely on). */
function half(bits: number): number {
  const exponent = (bits >> 10) & 0x1f;
  const fraction = bits & 0x3ff;
  const sign = bits & 0x8000 ? -1 : 1;
  if (exponent === 0) return sign * 2 ** -14 * (fraction / 1024);
  if (exponent === 31) return fraction ? NaN : sign * Infinity;
  return sign * 2 ** (exponent - 15) * (1 + fraction / 1024);
}

/** Reads an .npy point cloud from a stream, keeping every k-th point so that at most `maxPoints`
 * are kept: memory is bounded by what is drawn, not by the file. */
export async function readNpy(stream: ReadableStream<Uint8Array>, maxPoints: number): Promise<Scene3D> {
  const source = stream.getReader();
  let head = new Uint8Array(0);
  let header: NpyHeader | null = null;
  let pending = new Uint8Array(0);
  let row = 0;
  let kept = 0;
  let stride = 1;
  let positions = new Float32Array(0);
  let extra = new Float32Array(0);
  let read: (view: DataView, at: number) => number = () => 0;
  const take = (chunk: Uint8Array) => {
    const h = header!;
    if (row >= h.rows) return; // bytes after the array: not points
    const rowBytes = h.columns * h.itemSize;
    let bytes = chunk;
    if (pending.length) {
      bytes = new Uint8Array(pending.length + chunk.length);
      bytes.set(pending);
      bytes.set(chunk, pending.length);
    }
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    const rows = Math.min(Math.floor(bytes.length / rowBytes), h.rows - row);
    const extraColumns = h.columns - 3;
    for (let r = 0; r < rows; r++, row++) {
      if (row % stride !== 0) continue;
      const at = r * rowBytes;
      for (let c = 0; c < 3; c++) positions[kept * 3 + c] = read(view, at + c * h.itemSize);
      for (let c = 0; c < extraColumns; c++) extra[kept * extraColumns + c] = read(view, at + (3 + c) * h.itemSize);
      kept++;
    }
    pending = bytes.slice(rows * rowBytes);
  };
  for (;;) {
    const { done, value } = await source.read();
    if (done) break;
    if (!header) {
      const joined = new Uint8Array(head.length + value.length);
      joined.set(head);
      joined.set(value, head.length);
      head = joined;
      header = npyHeader(head);
      if (!header) continue;
      stride = Math.max(1, Math.ceil(header.rows / maxPoints));
      const keep = Math.ceil(header.rows / stride);
      positions = new Float32Array(keep * 3);
      extra = new Float32Array(keep * (header.columns - 3));
      read = reader(header.kind, header.little);
      take(head.subarray(header.dataOffset));
    } else {
      take(value);
    }
  }
  if (!header) throw new Error(head.length ? "the .npy file ends inside its header" : "the file is empty");
  if (row < header.rows) {
    throw new Error(`the .npy file is truncated: ${header.rows.toLocaleString()} points declared, ` +
                    `${row.toLocaleString()} present`);
  }
  return pointScene(positions, extra, header.columns, kept, header.rows);
}

// --- W&B's scene JSON (.pts.json) ------------------------------------------------------------------

function isVec3(value: unknown): value is number[] {
  return Array.isArray(value) && value.length >= 3 && value.slice(0, 3).every((x) => typeof x === "number" && isFinite(x));
}

function rgb(value: unknown, fallback: [number, number, number]): [number, number, number] {
  if (!isVec3(value)) return fallback;
  const [r, g, b] = value.map((x) => Math.max(0, Math.min(255, Math.round(x))));
  return [r, g, b];
}

/** Reads W&B's scene JSON: `{"type": "lidar/beta", "points": [[x, y, z(, c | r, g, b)], ...],
 * "boxes": [{"corners": 8 × [x, y, z], "label", "color": [r, g, b]}], "vectors": [{"start", "end",
 * "color"}]}`. A malformed box or vector is left out (and listed in `skipped`); malformed points fail. */
export function readScene(text: string, maxPoints: number): Scene3D {
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch (error) {
    throw new Error(`the scene is not valid JSON (${(error as Error).message}): truncated or damaged?`);
  }
  if (typeof data !== "object" || data === null || Array.isArray(data)) throw new Error("the scene is not a JSON object");
  const record = data as Record<string, unknown>;
  const points = record.points ?? [];
  if (!Array.isArray(points)) throw new Error(`the scene's "points" is not a list of [x, y, z, ...] rows`);
  const columns = points.length ? (points[0] as unknown[])?.length : 3;
  if (![3, 4, 6].includes(columns)) throw new Error(`the scene's points have ${columns} values each: 3, 4 or 6 expected`);
  const stride = Math.max(1, Math.ceil(points.length / maxPoints));
  const count = Math.ceil(points.length / stride);
  const positions = new Float32Array(count * 3);
  const extra = new Float32Array(count * (columns - 3));
  for (let i = 0, k = 0; i < points.length; i += stride, k++) {
    const point = points[i];
    if (!Array.isArray(point) || point.length !== columns || !point.every((x) => typeof x === "number")) {
      throw new Error(`point ${i} of the scene is ${JSON.stringify(point)?.slice(0, 80)}: ${columns} numbers expected`);
    }
    positions.set(point.slice(0, 3), k * 3);
    if (columns > 3) extra.set(point.slice(3), k * (columns - 3));
  }
  const result = pointScene(positions, extra, columns, count, points.length);
  const boxes = Array.isArray(record.boxes) ? record.boxes : [];
  if (boxes.length > MAX_BOXES) {
    result.skipped.push(`${(boxes.length - MAX_BOXES).toLocaleString()} boxes past the first ${MAX_BOXES.toLocaleString()}`);
    boxes.length = MAX_BOXES;
  }
  boxes.forEach((box, i) => {
    const corners = (box as Record<string, unknown>)?.corners;
    if (!Array.isArray(corners) || corners.length !== 8 || !corners.every(isVec3)) {
      result.skipped.push(`box ${i}: "corners" is not 8 [x, y, z] points`);
      return;
    }
    const { label, color, score } = box as Record<string, unknown>;
    const text = [typeof label === "string" ? label : "", typeof score === "number" ? score.toFixed(2) : ""].filter(Boolean).join(" ");
    result.boxes.push({ corners, label: text, colour: rgb(color, DEFAULT_BOX) });
  });
  const vectors = Array.isArray(record.vectors) ? record.vectors : [];
  if (vectors.length > MAX_BOXES) {
    result.skipped.push(`${(vectors.length - MAX_BOXES).toLocaleString()} vectors past the first ${MAX_BOXES.toLocaleString()}`);
    vectors.length = MAX_BOXES;
  }
  vectors.forEach((vector, i) => {
    const { start, end, color } = (vector ?? {}) as Record<string, unknown>;
    if (!isVec3(end)) {
      result.skipped.push(`vector ${i}: no "end" [x, y, z]`);
      return;
    }
    result.vectors.push({ start: isVec3(start) ? start : [0, 0, 0], end, colour: rgb(color, DEFAULT_VECTOR) });
  });
  return result;
}

// --- molecules --------------------------------------------------------------------------------------

const ELEMENT_COLOURS: Record<string, [number, number, number]> = {
  H: [235, 235, 235], C: [144, 144, 144], N: [48, 80, 248], O: [255, 13, 13], S: [255, 200, 50], P: [255, 128, 0],
  F: [144, 224, 80], CL: [31, 240, 31], BR: [166, 41, 41], I: [148, 0, 148], SI: [240, 200, 160], SE: [255, 161, 0],
  NA: [171, 92, 242], MG: [138, 255, 0], CA: [61, 255, 0], ZN: [125, 128, 176], FE: [224, 102, 51],
  K: [143, 64, 212], LI: [204, 128, 255], RB: [112, 46, 176], CS: [87, 23, 143], SR: [0, 255, 0], BA: [0, 201, 0],
  AL: [191, 166, 166], MN: [156, 122, 199], CO: [240, 144, 160], NI: [80, 208, 80], CU: [200, 128, 51], CD: [255, 217, 143],
  HG: [184, 184, 208],
};

/** Ions as force fields and the PDB name them, by atom name: CHARMM's SOD, CLA, POT, CAL, CES (their
 * first letters are S, C, P: not sulfur, carbon, phosphorus), AMBER's Na+/Cl- (the charge dropped),
 * the PDB's NA, CL, K, MG, ZN, ... */
const IONS: Record<string, string> = {
  SOD: "NA", NA: "NA", CLA: "CL", CL: "CL", POT: "K", K: "K", CAL: "CA", CA: "CA", CES: "CS", CS: "CS", LIT: "LI", LI: "LI",
  RUB: "RB", RB: "RB", MG: "MG", ZN: "ZN", ZN2: "ZN", CD: "CD", CD2: "CD", BAR: "BA", BA: "BA", SR: "SR", MN: "MN", FE: "FE",
  FE2: "FE", CO: "CO", NI: "NI", CU: "CU", CU1: "CU", HG: "HG", AL: "AL", F: "F", BR: "BR", IOD: "I",
};

/** The element of an atom that is an ion, from its name and its residue's (a file without elements:
 * CHARMM's PDB and every .gro), or null: an ion is a residue of one atom, so the atom takes an ion's
 * name and its residue the same name, another name of the same ion (ZN2/ZN) or "ION". CA of an
 * alanine is its alpha carbon; CA in residue CA (or CAL) is calcium. */
export function ionElement(atomName: string, residue: string): string | null {
  const bare = (name: string) => name.trim().toUpperCase().replace(/\d*[+-]+\d*$/, "");
  const name = bare(atomName), res = bare(residue);
  const element = IONS[name];
  return element && (res === name || res === "ION" || IONS[res] === element) ? element : null;
}

/** A PDB/PQR file's ATOM/HETATM records as points coloured by element (CPK colours), and its
 * bonds: CONECT records where the file has them; the atoms that no CONECT record names (a PDB
 * entry's standard residues: its CONECT records cover ligands only) bonded by distance. PDB's
 * coordinates are in fixed columns; PQR's are whitespace-separated, followed by charge and radius. */
export function readPdb(text: string, maxPoints: number, pqr = false): Scene3D {
  const coordinates: number[] = [];
  const colours: number[] = [];
  const elements: string[] = [];
  const serials = new Map<number, number>(); // atom serial number -> index
  const conect: number[] = []; // pairs of serial numbers
  const located = new Set<string>(); // atoms (name, residue, chain, number) met at an alternate location
  let atoms = 0; // in the first model, each at its first location
  let models = 0;
  let ended = false; // past the first model's ENDMDL: the others are left out
  for (const line of text.split("\n")) {
    if (line.startsWith("MODEL")) { models++; continue; }
    if (line.startsWith("ENDMDL")) { ended = true; continue; }
    if (line.startsWith("CONECT")) {
      const from = parseInt(line.slice(6, 11), 10);
      for (let at = 11; at < 31; at += 5) {
        const to = parseInt(line.slice(at, at + 5), 10);
        if (Number.isInteger(from) && Number.isInteger(to)) conect.push(from, to);
      }
      continue;
    }
    if (!line.startsWith("ATOM") && !line.startsWith("HETATM")) continue;
    if (ended) continue;
    const altLoc = pqr ? " " : line[16] ?? " ";
    if (altLoc !== " ") { // the first location of an atom given at several (A, B, ...): the others would bond to it
      const atom = line.slice(12, 16) + line.slice(17, 27);
      if (located.has(atom)) continue;
      located.add(atom);
    }
    atoms++;
    if (coordinates.length / 3 >= maxPoints) continue;
    const fields = line.trim().split(/\s+/);
    const raw = pqr ? fields.slice(-5, -2) : [line.slice(30, 38), line.slice(38, 46), line.slice(46, 54)];
    const xyz = raw.map(Number);
    if (raw.length < 3 || raw.some((x) => !x.trim() || !isFinite(Number(x)))) {
      throw new Error(`an atom record without coordinates: ${line.slice(0, 60)}`);
    }
    const name = pqr ? fields[2] ?? "" : line.slice(12, 16);
    const residue = pqr ? fields[3] ?? "" : line.slice(17, 21);
    const element = ((pqr ? "" : line.slice(76, 78).trim()) || ionElement(name, residue) ||
      name.trim().replace(/[^A-Za-z]/g, "").slice(0, 1)).toUpperCase();
    const serial = parseInt(pqr ? fields[1] : line.slice(6, 11), 10);
    if (Number.isInteger(serial) && !serials.has(serial)) serials.set(serial, coordinates.length / 3);
    coordinates.push(...xyz);
    colours.push(...(ELEMENT_COLOURS[element] ?? [255, 20, 147]));
    elements.push(element);
  }
  if (!coordinates.length) throw new Error("no ATOM or HETATM records in the file");
  const count = coordinates.length / 3;
  const positions = new Float32Array(coordinates);
  const colourValues = new Float32Array(colours);
  const result = pointScene(positions, colourValues, 6, count, atoms); // colours as 0-255 r, g, b columns
  result.pointSize = 6;
  result.models = models;
  if (atoms > count) result.skipped.push(`${(atoms - count).toLocaleString()} atoms past the first ${count.toLocaleString()}`);
  // CONECT bonds, each once (a file lists a bond from both of its atoms)
  const named = new Uint8Array(count);
  const pairs: number[] = [];
  const seen = new Set<number>();
  for (let i = 0; i < conect.length; i += 2) {
    const a = serials.get(conect[i]), b = serials.get(conect[i + 1]);
    if (a === undefined || b === undefined || a === b) continue;
    named[a] = named[b] = 1;
    const key = Math.min(a, b) * count + Math.max(a, b);
    if (!seen.has(key)) { seen.add(key); pairs.push(a, b); }
  }
  const fromConect = pairs.length / 2;
  const skipped = inferBonds(result.positions, elements, named, pairs);
  if (skipped) result.skipped.push(skipped);
  const byDistance = pairs.length / 2 - fromConect;
  result.bonds = new Uint32Array(pairs);
  result.bondNote = fromConect && byDistance ? `${fromConect.toLocaleString()} CONECT, ${byDistance.toLocaleString()} by distance`
    : fromConect ? "CONECT" : "by distance";
  return result;
}

// Covalent radii in Å (Cordero et al. 2008). Elements not here (metals, ions) are not bonded by distance.
const COVALENT: Record<string, number> = {
  H: 0.31, B: 0.84, C: 0.76, N: 0.71, O: 0.66, F: 0.57, SI: 1.11, P: 1.07, S: 1.05, CL: 1.02, SE: 1.2, BR: 1.2, I: 1.39,
};
const TOLERANCE = 0.45; // Å over the sum of the radii (as Jmol); atoms closer than 0.4 Å are not bonded
const CROWDED = 64; // atoms in one grid cell (a bond length across): more is not a molecule
const MAX_CHECKS = 200_000_000; // distance checks: a bound on the time, whatever the file

/** Bonds atoms not `named` (by CONECT) to each other when they are closer than their covalent
 * radii and a tolerance: a spatial grid of cells one longest bond across, each atom checked against
 * those in its own cell and the 13 neighbouring cells ahead of it (linear in the atoms). Appends
 * index pairs to `pairs` (at most 6 a atom); says what was left out, if anything. */
function inferBonds(positions: Float32Array, elements: string[], named: Uint8Array, pairs: number[]): string {
  const count = elements.length;
  const radii = new Float32Array(count);
  let largest = 0;
  for (let i = 0; i < count; i++) {
    radii[i] = named[i] ? 0 : COVALENT[elements[i]] ?? 0;
    largest = Math.max(largest, radii[i]);
  }
  if (!largest) return "";
  const cell = 2 * largest + TOLERANCE;
  const cells = new Float64Array(count * 3);
  const size = 2 ** Math.ceil(Math.log2(count * 2 + 1));
  const hash = (x: number, y: number, z: number) =>
    ((Math.imul(x | 0, 73856093) ^ Math.imul(y | 0, 19349663) ^ Math.imul(z | 0, 83492791)) >>> 0) & (size - 1);
  const start = new Uint32Array(size + 1);
  const bucket = new Uint32Array(count);
  for (let i = 0; i < count; i++) {
    for (let c = 0; c < 3; c++) cells[i * 3 + c] = Math.floor(positions[i * 3 + c] / cell);
    bucket[i] = hash(cells[i * 3], cells[i * 3 + 1], cells[i * 3 + 2]);
    if (radii[i]) start[bucket[i] + 1]++;
  }
  for (let b = 0; b < size; b++) start[b + 1] += start[b];
  const order = new Uint32Array(start[size]);
  const fill = start.slice(0, size);
  for (let i = 0; i < count; i++) if (radii[i]) order[fill[bucket[i]]++] = i;
  const ahead: number[][] = [];
  for (let dz = -1; dz <= 1; dz++) for (let dy = -1; dy <= 1; dy++) for (let dx = -1; dx <= 1; dx++) {
    if (dz > 0 || (dz === 0 && dy > 0) || (dz === 0 && dy === 0 && dx >= 0)) ahead.push([dx, dy, dz]);
  }
  let crowded = 0;
  let checks = 0;
  const most = count * 6;
  for (let i = 0; i < count; i++) {
    if (!radii[i]) continue;
    if (start[bucket[i] + 1] - start[bucket[i]] > CROWDED) { crowded++; continue; }
    const x = cells[i * 3], y = cells[i * 3 + 1], z = cells[i * 3 + 2];
    for (const [dx, dy, dz] of ahead) {
      const b = hash(x + dx, y + dy, z + dz);
      if (start[b + 1] - start[b] > CROWDED) continue;
      for (let k = start[b]; k < start[b + 1]; k++) {
        const j = order[k];
        if (cells[j * 3] !== x + dx || cells[j * 3 + 1] !== y + dy || cells[j * 3 + 2] !== z + dz) continue; // another cell, same bucket
        if (dx === 0 && dy === 0 && dz === 0 && j <= i) continue;
        checks++;
        const ex = positions[i * 3] - positions[j * 3], ey = positions[i * 3 + 1] - positions[j * 3 + 1], ez = positions[i * 3 + 2] - positions[j * 3 + 2];
        const d2 = ex * ex + ey * ey + ez * ez;
        const reach = radii[i] + radii[j] + TOLERANCE;
        if (d2 >= 0.16 && d2 <= reach * reach) pairs.push(i, j);
      }
    }
    if (checks > MAX_CHECKS || pairs.length > most * 2) return `bonds by distance after atom ${i.toLocaleString()} (too many to infer here)`;
  }
  return crowded ? `bonds by distance for ${crowded.toLocaleString()} atoms packed closer than a molecule's (more than ${CROWDED} within ${cell.toFixed(1)} Å)` : "";
}

// --- small-molecule and other structure formats -------------------------------------------------------
// W&B's Molecule takes pdb, pqr, mmcif/mcif/cif, sdf/sd, gro, mol2 and mmtf: all but mmtf (binary
// MessagePack) are drawn. Bond orders are drawn as single bonds.

/** Atoms (at most `maxPoints`) and their bonds (index pairs, checked) as a molecule's scene; bonds
 * by distance for the atoms no bond names when `infer`. */
function molecule(coordinates: number[], elements: string[], given: number[], atoms: number, infer: boolean, note: string): Scene3D {
  if (!elements.length) throw new Error("no atoms in the file");
  const count = elements.length;
  const colours = new Float32Array(count * 3);
  elements.forEach((element, i) => colours.set(ELEMENT_COLOURS[element] ?? [255, 20, 147], i * 3));
  const result = pointScene(new Float32Array(coordinates), colours, 6, count, atoms);
  if (result.count < count) { // atoms without finite coordinates were left out: their bonds go too
    throw new Error(`${count - result.count} atoms whose coordinates are not finite numbers`);
  }
  result.pointSize = 6;
  if (atoms > count) result.skipped.push(`${(atoms - count).toLocaleString()} atoms past the first ${count.toLocaleString()}`);
  const named = new Uint8Array(count);
  const pairs: number[] = [];
  const seen = new Set<number>();
  for (let i = 0; i < given.length; i += 2) {
    const a = given[i], b = given[i + 1];
    if (a >= count || b >= count || a === b) continue;
    named[a] = named[b] = 1;
    const key = Math.min(a, b) * count + Math.max(a, b);
    if (!seen.has(key)) { seen.add(key); pairs.push(a, b); }
  }
  const listed = pairs.length / 2;
  if (infer) {
    const skipped = inferBonds(result.positions, elements, named, pairs);
    if (skipped) result.skipped.push(skipped);
  }
  result.bonds = new Uint32Array(pairs);
  result.bondNote = infer && !listed ? "by distance" : infer ? `${listed.toLocaleString()} listed, ${(pairs.length / 2 - listed).toLocaleString()} by distance` : note;
  return result;
}

/** An element symbol as the colour table has it: "Cl" → "CL", "C.ar" (MOL2) → "C". */
function symbol(text: string): string {
  return (/^[A-Za-z]{1,2}/.exec(text.trim())?.[0] ?? "").toUpperCase();
}

/** An atom's coordinates: three numbers, or an error naming the line. */
function xyz(values: (string | undefined)[], line: string, where: string): number[] {
  const numbers = values.map((v) => (v === undefined || !v.trim() ? NaN : Number(v)));
  if (numbers.some((v) => !Number.isFinite(v))) throw new Error(`${where}: an atom without 3 numbers for coordinates: ${line.slice(0, 60)}`);
  return numbers;
}

/** An MDL molfile or SD file (V2000, or V3000): the first record's atoms and bonds (orders drawn as
 * single); a file of several records draws the first and says how many there are. The counts line
 * is checked against the lines the record holds before anything is read by it. */
export function readSdf(text: string, maxPoints: number): Scene3D {
  const records = text.split(/\r?\n\$\$\$\$[^\n]*/).filter((record) => record.trim());
  if (!records.length) throw new Error("the file is empty");
  const lines = records[0].replace(/^\r?\n/, "").split(/\r?\n/);
  const counts = lines[3];
  if (counts === undefined) throw new Error("the molfile ends before its counts line (line 4): truncated, or not an SDF/MOL file");
  const coordinates: number[] = [];
  const elements: string[] = [];
  const bonds: number[] = [];
  let atoms = 0;
  if (/V3000/.test(counts)) {
    const ids = new Map<number, number>();
    let section = "";
    let declared = -1;
    lines.forEach((raw, i) => {
      if (!raw.startsWith("M  V30 ")) return;
      const fields = raw.slice(7).trim().split(/\s+/);
      if (fields[0] === "BEGIN" || fields[0] === "END") { section = fields[0] === "BEGIN" ? fields[1] : ""; return; }
      if (fields[0] === "COUNTS") { declared = Number(fields[1]); return; }
      if (section === "ATOM") {
        atoms++;
        if (elements.length >= maxPoints) return;
        const id = Number(fields[0]);
        if (!Number.isInteger(id) || ids.has(id)) throw new Error(`line ${i + 1}: an atom numbered ${fields[0]}: a new whole number expected`);
        ids.set(id, elements.length);
        coordinates.push(...xyz(fields.slice(2, 5), raw, `line ${i + 1}`));
        elements.push(symbol(fields[1]));
      } else if (section === "BOND") {
        const [a, b] = [ids.get(Number(fields[2])), ids.get(Number(fields[3]))];
        if (a === undefined || b === undefined) {
          if (atoms > maxPoints) return; // a bond to an atom past those drawn
          throw new Error(`line ${i + 1}: a bond between atoms ${fields[2]} and ${fields[3]}, which the file does not have`);
        }
        bonds.push(a, b);
      }
    });
    if (declared >= 0 && declared !== atoms) throw new Error(`the V3000 COUNTS line declares ${declared.toLocaleString()} atoms; the ATOM block holds ${atoms.toLocaleString()}: truncated or damaged`);
  } else {
    const declaredAtoms = parseInt(counts.slice(0, 3), 10), declaredBonds = parseInt(counts.slice(3, 6), 10);
    if (!Number.isInteger(declaredAtoms) || !Number.isInteger(declaredBonds) || declaredAtoms < 0 || declaredBonds < 0) {
      throw new Error(`line 4 is not a molfile's counts line (atoms, bonds): ${counts.slice(0, 40)}`);
    }
    if (4 + declaredAtoms + declaredBonds > lines.length) {
      throw new Error(`the counts line declares ${declaredAtoms.toLocaleString()} atoms and ${declaredBonds.toLocaleString()} bonds; ` +
        `the record has ${(lines.length - 4).toLocaleString()} lines after it: truncated, or the counts line is wrong`);
    }
    atoms = declaredAtoms;
    for (let i = 0; i < declaredAtoms; i++) {
      const line = lines[4 + i];
      if (i >= maxPoints) break;
      coordinates.push(...xyz([line.slice(0, 10), line.slice(10, 20), line.slice(20, 30)], line, `line ${5 + i}`));
      elements.push(symbol(line.slice(31, 34)));
    }
    for (let i = 0; i < declaredBonds; i++) {
      const line = lines[4 + declaredAtoms + i];
      const a = parseInt(line.slice(0, 3), 10), b = parseInt(line.slice(3, 6), 10);
      if (!(a >= 1 && a <= declaredAtoms && b >= 1 && b <= declaredAtoms)) {
        throw new Error(`line ${5 + declaredAtoms + i}: a bond between atoms ${line.slice(0, 3).trim()} and ${line.slice(3, 6).trim()} ` +
          `of ${declaredAtoms.toLocaleString()}: not a bond line (the counts line may be wrong)`);
      }
      bonds.push(a - 1, b - 1);
    }
  }
  const result = molecule(coordinates, elements, bonds, atoms, false, "from the file");
  if (records.length > 1) result.skipped.push(`molecules 2 to ${records.length.toLocaleString()} of the file's ${records.length.toLocaleString()} (SDF records): the first is drawn`);
  return result;
}

/** A Tripos MOL2 file: the first molecule's @<TRIPOS>ATOM and @<TRIPOS>BOND records (bond types
 * drawn as single); a file of several molecules draws the first and says how many there are. */
export function readMol2(text: string, maxPoints: number): Scene3D {
  const molecules = text.split(/^@<TRIPOS>MOLECULE[^\n]*$/m).slice(1);
  if (!molecules.length) throw new Error("no @<TRIPOS>MOLECULE record: not a MOL2 file");
  const coordinates: number[] = [];
  const elements: string[] = [];
  const bonds: number[] = [];
  const ids = new Map<number, number>();
  let atoms = 0;
  let section = "MOLECULE";
  let declared = -1;
  let molLine = 0;
  molecules[0].split(/\r?\n/).forEach((raw, i) => {
    const line = raw.trim();
    if (line.startsWith("@<TRIPOS>")) { section = line.slice(9); return; }
    if (!line || line.startsWith("#")) return;
    const fields = line.split(/\s+/);
    if (section === "MOLECULE") {
      if (++molLine === 2) declared = parseInt(fields[0], 10);
    } else if (section === "ATOM") {
      atoms++;
      if (elements.length >= maxPoints) return;
      const id = Number(fields[0]);
      if (!Number.isInteger(id) || ids.has(id)) throw new Error(`an atom numbered ${fields[0]}: a new whole number expected: ${line.slice(0, 60)}`);
      ids.set(id, elements.length);
      coordinates.push(...xyz(fields.slice(2, 5), line, "@<TRIPOS>ATOM"));
      elements.push(symbol(fields[5] ?? fields[1] ?? ""));
    } else if (section === "BOND") {
      const [a, b] = [ids.get(Number(fields[1])), ids.get(Number(fields[2]))];
      if (a === undefined || b === undefined) {
        if (atoms > maxPoints) return;
        throw new Error(`a bond between atoms ${fields[1]} and ${fields[2]}, which the file does not have: ${line.slice(0, 60)}`);
      }
      bonds.push(a, b);
    }
    void i;
  });
  if (declared > atoms) throw new Error(`the molecule declares ${declared.toLocaleString()} atoms; its @<TRIPOS>ATOM section holds ${atoms.toLocaleString()}: truncated`);
  const result = molecule(coordinates, elements, bonds, atoms, false, "from the file");
  if (molecules.length > 1) result.skipped.push(`molecules 2 to ${molecules.length.toLocaleString()} of the file's ${molecules.length.toLocaleString()}: the first is drawn`);
  return result;
}

/** A GROMACS .gro file's first frame (coordinates in nm, drawn in Å), bonded by distance. The atom
 * count is checked against the lines the file holds. */
export function readGro(text: string, maxPoints: number): Scene3D {
  const lines = text.split(/\r?\n/);
  const declared = Number((lines[1] ?? "").trim());
  if (!Number.isInteger(declared) || declared < 1) throw new Error(`line 2 is not a .gro file's atom count: ${(lines[1] ?? "(none)").slice(0, 40)}`);
  if (declared + 2 > lines.length) throw new Error(`the file declares ${declared.toLocaleString()} atoms and has ${Math.max(0, lines.length - 2).toLocaleString()} lines after: truncated`);
  const coordinates: number[] = [];
  const elements: string[] = [];
  for (let i = 0; i < Math.min(declared, maxPoints); i++) {
    const line = lines[2 + i];
    coordinates.push(...xyz([line.slice(20, 28), line.slice(28, 36), line.slice(36, 44)], line, `line ${3 + i}`).map((v) => v * 10));
    elements.push(groElement(line.slice(10, 15), line.slice(5, 10)));
  }
  const frames = Math.floor(lines.filter((line) => line.trim()).length / (declared + 3));
  const result = molecule(coordinates, elements, [], declared, true, "");
  if (frames > 1) result.skipped.push(`frames 2 to ${frames.toLocaleString()} of the file's ${frames.toLocaleString()}: the first is drawn`);
  return result;
}

/** Residues whose atom names start with a one-letter element (CA: alpha carbon, not calcium). */
const POLYMER_RESIDUES = new Set(("ALA ARG ASN ASP CYS GLN GLU GLY HIS ILE LEU LYS MET PHE PRO SER THR TRP TYR VAL " +
  "HID HIE HIP HSD HSE HSP CYX CYM ASH GLH LYN ACE NME NH2 SEC PYL MSE " +
  "DA DC DG DT DU A C G U T RA RC RG RU DA5 DA3 DC5 DC3 DG5 DG3 DT5 DT3 RA5 RA3 RC5 RC3 RG5 RG3 RU5 RU3").split(" "));

/** A .gro atom's element (the format has no element column): an ion's (ionElement: SOD in SOD is
 * sodium, CA in CA calcium); else the name's first two letters where they are a two-letter element
 * and the residue is not a protein's or a nucleic acid's (CL of a ligand is chlorine; CA of alanine
 * is carbon), else its first letter. */
export function groElement(atomName: string, residue: string): string {
  const res = residue.trim().toUpperCase();
  const ion = POLYMER_RESIDUES.has(res) ? null : ionElement(atomName, residue);
  if (ion) return ion;
  const letters = symbol(atomName.trim().replace(/^\d+/, ""));
  const two = letters.slice(0, 2);
  if (two.length === 2 && !POLYMER_RESIDUES.has(res) && two in COVALENT) return two; // CL, BR, SI, SE: a ligand's or a solvent's
  return letters.slice(0, 1);
}

/** An mmCIF/PDBx file's _atom_site loop (the first model, each atom at its first location), bonded
 * by distance. Tokens are read one by one (quoted values, ; text fields), in time linear in the file. */
export function readCif(text: string, maxPoints: number): Scene3D {
  const tokens = /(?:^;([^]*?)^;)|'((?:[^']|'(?=\S))*)'(?=\s|$)|"((?:[^"]|"(?=\S))*)"(?=\s|$)|(\S+)/gm;
  const columns: string[] = [];
  let state: "scan" | "names" | "rows" = "scan";
  let row: string[] = [];
  const coordinates: number[] = [];
  const elements: string[] = [];
  let atoms = 0;
  const models = new Set<string>();
  let firstModel: string | null = null;
  const located = new Set<string>();
  let at: Record<string, number> = {};
  for (let match = tokens.exec(text); match; match = tokens.exec(text)) {
    const token = match[1] ?? match[2] ?? match[3] ?? match[4];
    const bare = match[4] !== undefined;
    if (bare && token.startsWith("#")) { // a comment: to the line's end
      const end = text.indexOf("\n", match.index);
      tokens.lastIndex = end < 0 ? text.length : end;
      continue;
    }
    if (state === "rows" && bare && (token === "loop_" || token.startsWith("_") || token.startsWith("data_"))) {
      break; // the _atom_site loop is over
    }
    if (state === "names") {
      if (bare && token.startsWith("_atom_site.")) { columns.push(token.slice(11)); continue; }
      if (!columns.length) { state = "scan"; continue; } // another category's loop
      at = Object.fromEntries(columns.map((name, i) => [name, i]));
      if (at.Cartn_x === undefined || at.Cartn_y === undefined || at.Cartn_z === undefined) throw new Error("the _atom_site loop has no Cartn_x, Cartn_y and Cartn_z columns");
      state = "rows";
    }
    if (state === "scan") {
      if (bare && token === "loop_") { columns.length = 0; state = "names"; }
      else if (bare && token.startsWith("_atom_site.")) throw new Error("an _atom_site that is not a loop (one atom): not drawn here");
      continue;
    }
    row.push(token);
    if (row.length < columns.length) continue;
    const fields = row;
    row = [];
    const model = at.pdbx_PDB_model_num !== undefined ? fields[at.pdbx_PDB_model_num] : "1";
    models.add(model);
    if (firstModel === null) firstModel = model;
    if (model !== firstModel) continue;
    const alt = at.label_alt_id !== undefined ? fields[at.label_alt_id] : ".";
    if (alt !== "." && alt !== "?") {
      const atom = [at.label_atom_id, at.label_comp_id, at.label_asym_id, at.label_seq_id].map((c) => (c === undefined ? "" : fields[c])).join(" ");
      if (located.has(atom)) continue;
      located.add(atom);
    }
    atoms++;
    if (elements.length >= maxPoints) continue;
    coordinates.push(...xyz([fields[at.Cartn_x], fields[at.Cartn_y], fields[at.Cartn_z]], fields.join(" "), "_atom_site"));
    const name = at.type_symbol !== undefined ? fields[at.type_symbol] : at.label_atom_id !== undefined ? fields[at.label_atom_id] : "";
    const ion = at.type_symbol === undefined && at.label_comp_id !== undefined ? ionElement(name, fields[at.label_comp_id]) : null;
    elements.push(ion ?? symbol(name));
  }
  if (!columns.length) throw new Error("no _atom_site loop in the file: not an mmCIF structure");
  if (row.length) throw new Error(`the _atom_site loop ends inside a row (${row.length} of its ${columns.length} values): truncated`);
  const result = molecule(coordinates, elements, [], atoms, true, "");
  result.models = models.size;
  return result;
}

// --- meshes -----------------------------------------------------------------------------------------

/** A mesh of `triangles` (with their corners' `normals` and `colours`, where given), less the
 * triangles with a corner whose coordinates are not finite numbers (as points: they can't be
 * placed), counted in `skipped`; an error only when none is left. */
export function mesh(triangles: Float32Array, normals: Float32Array | null = null, colours: Uint8Array | null = null,
  extra: { values: Float32Array | Uint8Array | Int32Array; width: number }[] = []): Scene3D {
  if (!triangles.length) throw new Error("the mesh has no triangles");
  const total = triangles.length / 9;
  let kept = 0;
  for (let t = 0; t < total; t++) {
    let finite = true;
    for (let k = t * 9; k < t * 9 + 9; k++) if (!Number.isFinite(triangles[k])) { finite = false; break; }
    if (!finite) continue;
    if (kept !== t) {
      triangles.copyWithin(kept * 9, t * 9, t * 9 + 9);
      normals?.copyWithin(kept * 9, t * 9, t * 9 + 9);
      colours?.copyWithin(kept * 9, t * 9, t * 9 + 9);
      for (const { values, width } of extra) values.copyWithin(kept * width, t * width, (t + 1) * width);
    }
    kept++;
  }
  if (!kept) throw new Error("the mesh has no triangle whose coordinates are all finite numbers");
  const result = scene(new Float32Array(0), new Uint8Array(0), 0, 0);
  result.triangles = triangles.subarray(0, kept * 9);
  result.normals = normals?.subarray(0, kept * 9) ?? null;
  result.meshColours = colours?.subarray(0, kept * 9) ?? null;
  if (kept < total) {
    result.skipped.push(`${(total - kept).toLocaleString()} ${total - kept === 1 ? "triangle" : "triangles"} with a corner whose ` +
      "coordinates are not finite numbers (NaN, ±Infinity, or past float32's range)");
  }
  return result;
}

/** A glTF's points and line segments (x, y, z and r, g, b a corner) added to its mesh (`drawn`; null:
 * none), less those with a corner whose coordinates are not finite numbers, counted in `skipped`. */
export function pointsAndLines(drawn: Scene3D | null, points: Float32Array, pointColours: Uint8Array,
  ends: Float32Array, endColours: Uint8Array): Scene3D {
  const result = drawn ?? scene(new Float32Array(0), new Uint8Array(0), 0, 0);
  const keep = (values: Float32Array, colours: Uint8Array, width: number, what: string) => {
    let kept = 0;
    const total = values.length / width;
    for (let i = 0; i < total; i++) {
      let finite = true;
      for (let k = i * width; k < (i + 1) * width; k++) if (!Number.isFinite(values[k])) { finite = false; break; }
      if (!finite) continue;
      if (kept !== i) {
        values.copyWithin(kept * width, i * width, (i + 1) * width);
        colours.copyWithin(kept * width, i * width, (i + 1) * width);
      }
      kept++;
    }
    if (kept < total) result.skipped.push(`${(total - kept).toLocaleString()} ${what} with a corner whose coordinates are not finite numbers`);
    return kept;
  };
  const count = keep(points, pointColours, 3, "points");
  if (count) {
    Object.assign(result, scene(points.subarray(0, count * 3), pointColours.subarray(0, count * 3), count, count), {
      triangles: result.triangles, normals: result.normals, meshColours: result.meshColours, skipped: result.skipped });
  }
  const segments = keep(ends, endColours, 6, "line segments");
  if (segments) result.segments = { positions: ends.subarray(0, segments * 6), colours: endColours.subarray(0, segments * 6) };
  if (!result.triangles && !count && !segments) throw new Error("the glTF has no triangle, point or line whose coordinates are all finite numbers");
  return result;
}

/** A coordinate written in a text file: a number, or NaN for "nan"/"inf" (C's printf of a
 * non-finite float: dropped with its triangle or point); undefined for anything else. */
function coordinate(token: string | undefined): number | undefined {
  if (token === undefined) return undefined;
  const value = Number(token);
  if (token.trim() && !Number.isNaN(value)) return value;
  return /^[+-]?(nan|inf(inity)?)$/i.test(token) ? NaN : undefined;
}

/** An STL file (binary, or ASCII `solid ... facet ... vertex x y z`) as triangles, at most `maxTriangles`. */
export function readStl(bytes: Uint8Array, maxTriangles: number): Scene3D {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const declared = bytes.length >= 84 ? view.getUint32(80, true) : -1;
  if (declared >= 0 && 84 + declared * 50 === bytes.length) {
    if (declared > maxTriangles) throw new Error(`${declared.toLocaleString()} triangles: more than the ${maxTriangles.toLocaleString()} drawn here`);
    const triangles = new Float32Array(declared * 9);
    for (let t = 0; t < declared; t++) {
      for (let k = 0; k < 9; k++) triangles[t * 9 + k] = view.getFloat32(84 + t * 50 + 12 + k * 4, true);
    }
    return mesh(triangles);
  }
  const text = new TextDecoder().decode(bytes);
  if (!/^\s*solid/.test(text)) {
    throw new Error(declared >= 0 ? `a binary STL declaring ${declared.toLocaleString()} triangles (${84 + declared * 50} bytes) ` +
      `is ${bytes.length} bytes: truncated or damaged` : "not an STL file");
  }
  // read vertex by vertex into an array grown as needed, stopping past the limit: memory in
  // proportion to what is drawn, whatever the file's size
  let values = new Float32Array(9 * Math.min(maxTriangles, 1024));
  let length = 0;
  const vertex = /vertex\s+(\S+)\s+(\S+)\s+(\S+)/g;
  for (let match = vertex.exec(text); match; match = vertex.exec(text)) {
    if (length === maxTriangles * 9) throw new Error(`an ASCII STL of more than the ${maxTriangles.toLocaleString()} triangles drawn here`);
    if (length === values.length) {
      const larger = new Float32Array(Math.min(values.length * 2, maxTriangles * 9));
      larger.set(values);
      values = larger;
    }
    for (let k = 1; k <= 3; k++) {
      const value = coordinate(match[k]);
      if (value === undefined) throw new Error(`an ASCII STL vertex without 3 numbers: ${match[0].slice(0, 60)}`);
      values[length++] = value;
    }
  }
  if (length % 9) throw new Error("an ASCII STL whose facets don't have 3 vertices each: truncated or damaged");
  return mesh(values.subarray(0, length));
}

/** A Wavefront OBJ's vertices (`v x y z`) and faces (`f a b c ...`, 1-based or negative indices,
 * `a/t/n` forms; polygons as fans) as triangles, at most `maxTriangles`. An OBJ of vertices alone
 * is a point cloud, thinned to at most `maxPoints` (every k-th vertex) as it is read. */
export function readObj(text: string, maxTriangles: number, maxPoints: number): Scene3D {
  const lines = text.split("\n");
  let total = 0; // vertices
  let faces = false;
  for (const raw of lines) {
    const start = raw.trimStart();
    if (/^v\s/.test(start)) total++;
    else if (/^f(\s+\S+){3}/.test(start)) faces = true; // a face of 3 corners or more: a mesh
  }
  const stride = faces ? 1 : Math.max(1, Math.ceil(total / maxPoints));
  const vertices = new Float32Array(Math.ceil(total / stride) * 3);
  let read = 0; // vertices read so far
  let triangles = new Float32Array(0);
  let length = 0;
  let line = 0;
  for (const raw of lines) {
    line++;
    const parts = raw.trim().split(/\s+/);
    if (parts[0] === "v") {
      const xyz = parts.slice(1, 4).map(coordinate);
      if (xyz.length < 3 || xyz.some((x) => x === undefined)) throw new Error(`line ${line}: a vertex without 3 numbers: ${raw.slice(0, 60)}`);
      if (read % stride === 0) vertices.set(xyz as number[], (read / stride) * 3);
      read++;
    } else if (parts[0] === "f") {
      const corners = parts.slice(1).map((p) => {
        const index = parseInt(p.split("/")[0], 10);
        const at = index < 0 ? read + index : index - 1;
        if (!Number.isInteger(at) || at < 0 || at >= read) throw new Error(`line ${line}: a face naming vertex ${p}, of ${read} so far`);
        return at;
      });
      for (let k = 1; k + 1 < corners.length; k++) {
        if (length === maxTriangles * 9) throw new Error(`more than the ${maxTriangles.toLocaleString()} triangles drawn here`);
        if (length === triangles.length) {
          const larger = new Float32Array(Math.min(Math.max(9 * 1024, triangles.length * 2), maxTriangles * 9));
          larger.set(triangles);
          triangles = larger;
        }
        for (const at of [corners[0], corners[k], corners[k + 1]]) {
          triangles.set(vertices.subarray(at * 3, at * 3 + 3), length);
          length += 3;
        }
      }
    }
  }
  if (!length && read) { // vertices without faces: a point cloud
    const count = vertices.length / 3;
    return pointScene(vertices, new Float32Array(0), 3, count, total);
  }
  return mesh(triangles.subarray(0, length));
}
