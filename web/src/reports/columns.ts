// The binary form of a report's streamed panel data (`GET .../data?format=columns`,
// tracklet/reports/columns.py, docs/reports.md): one frame per panel, `header_length:u32
// body_length:u32` (little-endian), a JSON header `{index, stamp, data}` whose series name their
// arrays by index into `data.columns` (`[dtype, offset, length]`), and a body of raw little-endian
// columns (i4, f4, f8) at 8-byte-aligned offsets. The numbers need no parsing: each column is a
// typed-array view of the body, copied once into the plain array the charts take (non-finite
// values as null, as the JSON form's texts become).

import type { PanelLine } from "./api";

/** Whether typed arrays read little-endian here (every browser tracklet runs in): else ask for JSON. */
export const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

type Dtype = "i4" | "f4" | "f8";
const ARRAYS = ["x", "steps", "values", "min", "max", "last"] as const;
const VIEWS = { i4: Int32Array, f4: Float32Array, f8: Float64Array } as const;

/** A column as the charts take it: integers as they are; floats with NaN and ±inf as null (no point). */
function column(body: ArrayBuffer, dtype: Dtype, offset: number, length: number): (number | null)[] {
  const view = new VIEWS[dtype](body, offset, length);
  const out: (number | null)[] = new Array(length);
  if (dtype === "i4") for (let i = 0; i < length; i++) out[i] = view[i];
  else
    for (let i = 0; i < length; i++) {
      const value = view[i];
      out[i] = value - value === 0 ? value : null; // finite (NaN - NaN and inf - inf are NaN)
    }
  return out;
}

/** One frame's panel line: the header with each series' column indexes replaced by arrays (a
 * column several series share, such as a panel's common x, is one array). */
export function panelLine(header: { index: number; stamp: string | null; data: Record<string, unknown> | null }, body: ArrayBuffer): PanelLine {
  const data = header.data;
  if (data) {
    const table = (data.columns ?? []) as [Dtype, number, number][];
    const made = new Map<number, (number | null)[]>();
    const get = (index: number) => {
      let found = made.get(index);
      if (!found) {
        const [dtype, offset, length] = table[index];
        made.set(index, (found = column(body, dtype, offset, length)));
      }
      return found;
    };
    const history = data.history as { series: Record<string, unknown>[] } | null;
    for (const series of history?.series ?? []) for (const name of ARRAYS) if (typeof series[name] === "number") series[name] = get(series[name] as number);
    delete data.columns;
  }
  return header as unknown as PanelLine;
}

/** Frames out of a byte stream read in chunks of any size: `push` each chunk; every complete
 * frame is handed to `onLine` as soon as its last byte is in (a panel draws while the next is read). */
export class FrameReader {
  private chunks: Uint8Array[] = [];
  private buffered = 0;
  private lengths: [number, number] | null = null;
  private readonly text = new TextDecoder();

  constructor(private readonly onLine: (line: PanelLine) => void) {}

  push(chunk: Uint8Array): void {
    this.chunks.push(chunk);
    this.buffered += chunk.length;
    for (;;) {
      if (!this.lengths) {
        if (this.buffered < 8) return;
        const head = new DataView(this.take(8).buffer);
        this.lengths = [head.getUint32(0, true), head.getUint32(4, true)];
      }
      const [headerLength, bodyLength] = this.lengths;
      if (this.buffered < headerLength + bodyLength) return;
      const header = JSON.parse(this.text.decode(this.take(headerLength)));
      const body = this.take(bodyLength).buffer as ArrayBuffer; // its own buffer: columns start 8-aligned in it
      this.lengths = null;
      this.onLine(panelLine(header, body));
    }
  }

  /** The stream ended: anything left over is a frame cut short. */
  end(): void {
    if (this.buffered || this.lengths) throw new Error(`the panel data stream ended inside a frame (${this.buffered} bytes left)`);
  }

  /** The next `count` bytes, consumed, in a new buffer of their own. */
  private take(count: number): Uint8Array {
    const out = new Uint8Array(count);
    let filled = 0;
    while (filled < count) {
      const first = this.chunks[0];
      const used = Math.min(first.length, count - filled);
      out.set(used === first.length ? first : first.subarray(0, used), filled);
      filled += used;
      if (used === first.length) this.chunks.shift();
      else this.chunks[0] = first.subarray(used);
    }
    this.buffered -= count;
    return out;
  }
}
