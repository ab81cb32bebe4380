// Min–max bands rasterised in script: each bucket is a whole-pixel column of one colour at one
// alpha, so compositing them here (src-over, in order) and blitting the result once draws the
// same pixels as filling them through the canvas, at a fraction of the cost. Chromium fills a
// path of thousands of rectangles with its anti-aliasing scan converter (4× supersampled rows):
// 20 panels of 50 runs' bands were most of a report's raster time on the main thread.

/** Translucent layers composited in order into premultiplied RGBA (floats, 0..1, column-major),
 * then one image.
 * A layer is the union of its rectangles, as one canvas path of them fills: a pixel two of its
 * rectangles cover takes its colour once. Reused between draws: its buffers only grow. */
export class BandRaster {
  width = 0;
  height = 0;
  private premultiplied = new Float32Array(0);
  /** Per pixel, the last layer that covered it (layers count up across draws, so no clearing). */
  private owner = new Int32Array(0);
  private layer = 0;
  private image: ImageData | null = null;
  private scratch: HTMLCanvasElement | null = null;

  /** Start a new picture of `width` × `height` pixels, all transparent. */
  reset(width: number, height: number): void {
    this.width = Math.max(0, width);
    this.height = Math.max(0, height);
    const size = this.width * this.height * 4;
    if (this.premultiplied.length < size) {
      this.premultiplied = new Float32Array(size);
      this.owner = new Int32Array(size / 4);
      this.layer = 0;
    } else this.premultiplied.fill(0, 0, size);
  }

  /** Start a new layer: the rectangles filled until the next are one shape. */
  beginLayer(): void {
    if (++this.layer === 0x7fffffff) {
      this.owner.fill(0);
      this.layer = 1;
    }
  }

  /** Composite [x0, x1) × [y0, y1) (clipped to the picture) in colour `rgb` at `alpha` over what is there. */
  fill(x0: number, y0: number, x1: number, y1: number, rgb: [number, number, number], alpha: number): void {
    const left = Math.max(0, x0);
    const right = Math.min(this.width, x1);
    const top = Math.max(0, y0);
    const bottom = Math.min(this.height, y1);
    if (left >= right || top >= bottom) return;
    const keep = 1 - alpha;
    const r = (rgb[0] / 255) * alpha;
    const g = (rgb[1] / 255) * alpha;
    const b = (rgb[2] / 255) * alpha;
    const data = this.premultiplied;
    const owner = this.owner;
    const layer = this.layer;
    const height = this.height;
    // Column-major: a bucket's column is one run of memory.
    for (let x = left; x < right; x++) {
      const end = x * height + bottom;
      for (let p = x * height + top; p < end; p++) {
        if (owner[p] === layer) continue;
        owner[p] = layer;
        const i = p * 4;
        data[i] = r + data[i] * keep;
        data[i + 1] = g + data[i + 1] * keep;
        data[i + 2] = b + data[i + 2] * keep;
        data[i + 3] = alpha + data[i + 3] * keep;
      }
    }
  }

  /** Draw the picture onto `ctx` with its top-left corner at (left, top) (device pixels), over what is there. */
  drawOnto(ctx: CanvasRenderingContext2D, left: number, top: number): void {
    const { width, height } = this;
    if (!width || !height) return;
    if (!this.image || this.image.width !== width || this.image.height !== height) this.image = new ImageData(width, height);
    const out = this.image.data;
    const data = this.premultiplied;
    for (let y = 0, o = 0; y < height; y++) {
      for (let x = 0; x < width; x++, o += 4) {
        const i = (x * height + y) * 4;
        const a = data[i + 3];
        if (a <= 0) {
          out[o + 3] = 0;
          continue;
        }
        out[o] = (data[i] / a) * 255; // a clamped array rounds to the nearest integer itself
        out[o + 1] = (data[i + 1] / a) * 255;
        out[o + 2] = (data[i + 2] / a) * 255;
        out[o + 3] = a * 255;
      }
    }
    this.scratch ??= document.createElement("canvas");
    if (this.scratch.width !== width || this.scratch.height !== height) {
      this.scratch.width = width;
      this.scratch.height = height;
    }
    this.scratch.getContext("2d")!.putImageData(this.image, 0, 0);
    ctx.drawImage(this.scratch, left, top);
  }
}

const parsed = new Map<string, [number, number, number]>();

/** A CSS colour as (r, g, b), 0..255: `#rrggbb` read directly, anything else as the canvas reads it. */
export function rgbOf(color: string): [number, number, number] {
  let found = parsed.get(color);
  if (found) return found;
  let hex = /^#([0-9a-f]{6})$/i.exec(color)?.[1];
  if (!hex) {
    const probe = document.createElement("canvas").getContext("2d")!;
    probe.fillStyle = color;
    hex = /^#([0-9a-f]{6})$/i.exec(String(probe.fillStyle))?.[1] ?? "808080";
  }
  found = [parseInt(hex.slice(0, 2), 16), parseInt(hex.slice(2, 4), 16), parseInt(hex.slice(4, 6), 16)];
  parsed.set(color, found);
  return found;
}
