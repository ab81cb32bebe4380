// The geometry of the 3-D viewer (web/src/viewer3d.ts): 4×4 matrices in WebGL's column-major
// order, 3-vectors, a box's edges from its corners in any order, and a mesh's face normals.

export type Mat4 = Float32Array;

export function multiply(a: Mat4, b: Mat4): Mat4 {
  const out = new Float32Array(16);
  for (let c = 0; c < 4; c++) {
    for (let r = 0; r < 4; r++) {
      let sum = 0;
      for (let k = 0; k < 4; k++) sum += a[k * 4 + r] * b[c * 4 + k];
      out[c * 4 + r] = sum;
    }
  }
  return out;
}

export function perspective(fov: number, aspect: number, near: number, far: number): Mat4 {
  const f = 1 / Math.tan(fov / 2);
  return new Float32Array([f / aspect, 0, 0, 0, 0, f, 0, 0, 0, 0, (far + near) / (near - far), -1,
    0, 0, (2 * far * near) / (near - far), 0]);
}

export function sub(a: number[], b: number[]): number[] { return [a[0] - b[0], a[1] - b[1], a[2] - b[2]]; }
export function cross(a: number[], b: number[]): number[] {
  return [a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]];
}
export function norm(a: number[]): number[] { const l = Math.hypot(a[0], a[1], a[2]) || 1; return [a[0] / l, a[1] / l, a[2] / l]; }
export function dot(a: number[], b: number[]): number { return a[0] * b[0] + a[1] * b[1] + a[2] * b[2]; }

export function lookAt(eye: number[], target: number[], up: number[]): Mat4 {
  const z = norm(sub(eye, target));
  const x = norm(cross(up, z));
  const y = cross(z, x);
  return new Float32Array([x[0], y[0], z[0], 0, x[1], y[1], z[1], 0, x[2], y[2], z[2], 0,
    -dot(x, eye), -dot(y, eye), -dot(z, eye), 1]);
}

/** A box's 12 edges, whatever order its corners come in: from corner 0, the three others that are
 * not the sum of two other offsets are its edges (a face or body diagonal is such a sum). */
export function boxEdges(corners: number[][]): [number[], number[]][] {
  const origin = corners[0];
  const offsets = corners.slice(1).map((corner) => sub(corner, origin));
  const size = Math.max(...offsets.map((d) => Math.hypot(d[0], d[1], d[2]))) || 1;
  const near = (a: number[], b: number[]) => Math.hypot(a[0] - b[0], a[1] - b[1], a[2] - b[2]) < size * 1e-3;
  const axes = offsets.filter((d) => !offsets.some((p, i) => offsets.some((q, j) => i < j && near([p[0] + q[0], p[1] + q[1], p[2] + q[2]], d))));
  if (axes.length !== 3) { // not a parallelepiped: each corner to its three nearest
    const edges: [number[], number[]][] = [];
    corners.forEach((a, i) => {
      const nearest = corners.map((b, j) => [Math.hypot(...sub(a, b)), j]).filter(([, j]) => j !== i)
        .sort((p, q) => p[0] - q[0]).slice(0, 3);
      for (const [, j] of nearest) if (j > i) edges.push([a, corners[j]]);
    });
    return edges;
  }
  const at = (s: number[]) => [0, 1, 2].map((c) => origin[c] + s[0] * axes[0][c] + s[1] * axes[1][c] + s[2] * axes[2][c]);
  const edges: [number[], number[]][] = [];
  for (let axis = 0; axis < 3; axis++) {
    for (const u of [0, 1]) {
      for (const v of [0, 1]) {
        const from = [0, 0, 0];
        const others = [0, 1, 2].filter((a) => a !== axis);
        from[others[0]] = u;
        from[others[1]] = v;
        const to = [...from];
        to[axis] = 1;
        edges.push([at(from), at(to)]);
      }
    }
  }
  return edges;
}

/** Each triangle's unit normal, once per corner. */
export function faceNormals(triangles: Float32Array): Float32Array {
  const normals = new Float32Array(triangles.length);
  for (let i = 0; i < triangles.length; i += 9) {
    const a = [triangles[i], triangles[i + 1], triangles[i + 2]];
    const n = norm(cross(sub([triangles[i + 3], triangles[i + 4], triangles[i + 5]], a), sub([triangles[i + 6], triangles[i + 7], triangles[i + 8]], a)));
    for (let k = 0; k < 9; k += 3) normals.set(n, i + k);
  }
  return normals;
}
