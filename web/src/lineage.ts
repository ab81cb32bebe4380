// A layered left-to-right drawing of a directed graph (runs and artifact versions, data flowing
// left to right), as SVG. The layout is the usual layered ("Sugiyama") one, small enough to keep
// here: cycles broken by reversing DFS back edges (a run that used a version it logged), layers by
// longest path (sources then pulled right, next to what they feed), long edges split by dummy
// points, crossings reduced by barycenter sweeps, layers centred vertically. Node count is bounded
// by the server (max_nodes), so the quadratic parts don't matter.

const SVG_NS = "http://www.w3.org/2000/svg";

export interface GraphNode {
  id: string;
  kind: string; // a class of the node: "run" or "artifact"
  title: string;
  subtitle: string;
  href: string;
  root?: boolean;
  deleted?: boolean; // an artifact version whose files were deleted: drawn dashed, `data-deleted`
}

export interface GraphEdge {
  source: string;
  target: string;
  kind: string;
}

export interface LayoutOptions {
  nodeWidth: number;
  nodeHeight: number;
  gapX: number;
  gapY: number;
  pad: number;
}

export interface Layout {
  /** Top-left corner and layer of each node. */
  nodes: Map<string, { x: number; y: number; layer: number }>;
  /** Each edge's points, from its source's right side to its target's left side (a reversed
   * edge, drawn against the flow, from its source's left side). */
  edges: { source: string; target: string; kind: string; points: [number, number][]; back: boolean }[];
  width: number;
  height: number;
}

const DEFAULTS: LayoutOptions = { nodeWidth: 180, nodeHeight: 46, gapX: 56, gapY: 18, pad: 12 };
const DUMMY_SLOT = 14; // the height a long edge's bend point takes in its layer

export function layoutGraph(ids: string[], edges: GraphEdge[], options: Partial<LayoutOptions> = {}): Layout {
  const o = { ...DEFAULTS, ...options };
  const known = new Set(ids);
  const usable = edges.filter((e) => known.has(e.source) && known.has(e.target) && e.source !== e.target);

  // 1. Break cycles: edges to a node on the DFS stack are laid out reversed.
  const out = new Map<string, GraphEdge[]>(ids.map((id) => [id, []]));
  for (const e of usable) out.get(e.source)!.push(e);
  const state = new Map<string, number>(); // 1: on the stack, 2: done
  const reversed = new Set<GraphEdge>();
  const visit = (id: string) => {
    state.set(id, 1);
    for (const e of out.get(id)!) {
      const s = state.get(e.target);
      if (s === 1) reversed.add(e);
      else if (s === undefined) visit(e.target);
    }
    state.set(id, 2);
  };
  for (const id of ids) if (!state.has(id)) visit(id);
  const dag = usable.map((e) => (reversed.has(e) ? { from: e.target, to: e.source, edge: e } : { from: e.source, to: e.target, edge: e }));

  // 2. Layers: longest path from the sources (Kahn's order), then sources moved next to their first successor.
  const succ = new Map<string, string[]>(ids.map((id) => [id, []]));
  const pred = new Map<string, string[]>(ids.map((id) => [id, []]));
  for (const { from, to } of dag) {
    succ.get(from)!.push(to);
    pred.get(to)!.push(from);
  }
  const indegree = new Map(ids.map((id) => [id, pred.get(id)!.length]));
  const queue = ids.filter((id) => indegree.get(id) === 0);
  const topo: string[] = [];
  const layer = new Map<string, number>(ids.map((id) => [id, 0]));
  while (queue.length) {
    const id = queue.shift()!;
    topo.push(id);
    for (const next of succ.get(id)!) {
      layer.set(next, Math.max(layer.get(next)!, layer.get(id)! + 1));
      indegree.set(next, indegree.get(next)! - 1);
      if (indegree.get(next) === 0) queue.push(next);
    }
  }
  for (const id of [...topo].reverse()) {
    const next = succ.get(id)!;
    if (!pred.get(id)!.length && next.length) layer.set(id, Math.min(...next.map((n) => layer.get(n)!)) - 1);
  }

  // 3. Long edges get a dummy point in every layer they cross.
  const layers: string[][] = [];
  const place = (id: string, l: number) => (layers[l] ??= []).push(id);
  for (const id of ids) place(id, layer.get(id)!);
  const up = new Map<string, string[]>(); // neighbours in the layer before, per point
  const down = new Map<string, string[]>(); // ... in the layer after
  const link = (a: string, b: string) => {
    (down.get(a) ?? down.set(a, []).get(a)!).push(b);
    (up.get(b) ?? up.set(b, []).get(b)!).push(a);
  };
  const chains: string[][] = [];
  dag.forEach(({ from, to }, index) => {
    const chain = [from];
    for (let l = layer.get(from)! + 1; l < layer.get(to)!; l++) {
      const dummy = `\u0000${index}:${l}`;
      layer.set(dummy, l);
      place(dummy, l);
      chain.push(dummy);
    }
    chain.push(to);
    for (let i = 1; i < chain.length; i++) link(chain[i - 1], chain[i]);
    chains.push(chain);
  });
  for (let l = 0; l < layers.length; l++) layers[l] ??= [];

  // 4. Order within layers: barycenter sweeps down and up.
  const position = new Map<string, number>();
  const index = () => layers.forEach((ids) => ids.forEach((id, i) => position.set(id, i)));
  index();
  const sweep = (l: number, neighbours: Map<string, string[]>) => {
    const keyed = layers[l].map((id, i) => {
      const near = neighbours.get(id) ?? [];
      return { id, key: near.length ? near.reduce((sum, n) => sum + position.get(n)!, 0) / near.length : i };
    });
    keyed.sort((a, b) => a.key - b.key);
    layers[l] = keyed.map((k) => k.id);
    layers[l].forEach((id, i) => position.set(id, i));
  };
  for (let round = 0; round < 6; round++) {
    for (let l = 1; l < layers.length; l++) sweep(l, up);
    for (let l = layers.length - 2; l >= 0; l--) sweep(l, down);
  }

  // 5. Coordinates: layers left to right, each centred vertically.
  const slot = (id: string) => (known.has(id) ? o.nodeHeight + o.gapY : DUMMY_SLOT);
  const heights = layers.map((ids) => ids.reduce((sum, id) => sum + slot(id), 0));
  const tallest = Math.max(0, ...heights);
  const coords = new Map<string, { x: number; y: number; layer: number }>();
  layers.forEach((ids, l) => {
    let y = o.pad + (tallest - heights[l]) / 2;
    for (const id of ids) {
      coords.set(id, { x: o.pad + l * (o.nodeWidth + o.gapX), y: known.has(id) ? y : y + DUMMY_SLOT / 2, layer: l });
      y += slot(id);
    }
  });
  const nodes = new Map([...coords].filter(([id]) => known.has(id)));
  const edgesOut = dag.map(({ edge }, i) => {
    const back = reversed.has(edge);
    const points = chains[i].map((id, k): [number, number] => {
      const c = coords.get(id)!;
      if (!known.has(id)) return [c.x + o.nodeWidth / 2, c.y];
      // Out on the right, in on the left; an edge against the flow at three quarters of the height,
      // so it doesn't cover the edge the other way between the same two nodes.
      return [k === 0 ? c.x + o.nodeWidth : c.x, c.y + o.nodeHeight * (back ? 0.75 : 0.5)];
    });
    if (back) points.reverse();
    return { source: edge.source, target: edge.target, kind: edge.kind, points, back };
  });
  return {
    nodes,
    edges: edgesOut,
    width: o.pad * 2 + Math.max(1, layers.length) * (o.nodeWidth + o.gapX) - o.gapX,
    height: o.pad * 2 + tallest + (edgesOut.some((e) => e.back) ? 24 : 0), // room for a back edge bowing below
  };
}

/** A smooth path through the points: horizontal tangents at each, as a layered drawing's edges;
 * an edge against the flow (`back`) bows below the nodes it joins. */
function pathThrough(points: [number, number][], back: boolean): string {
  let d = `M${points[0][0]},${points[0][1]}`;
  for (let i = 1; i < points.length; i++) {
    const [x0, y0] = points[i - 1];
    const [x1, y1] = points[i];
    const dx = (x1 - x0) / 2;
    d += back ? ` C${x0},${y0 + 40} ${x1},${y1 + 40} ${x1},${y1}` : ` C${x0 + dx},${y0} ${x1 - dx},${y1} ${x1},${y1}`;
  }
  return d;
}

function svg<K extends keyof SVGElementTagNameMap>(tag: K, attrs: Record<string, string | number> = {}, ...children: (Node | string)[]): SVGElementTagNameMap[K] {
  const el = document.createElementNS(SVG_NS, tag);
  for (const [name, value] of Object.entries(attrs)) el.setAttribute(name, String(value));
  el.append(...children);
  return el;
}

function clip(text: string, chars: number): string {
  return text.length > chars ? text.slice(0, chars - 1) + "…" : text;
}

/** The graph as an SVG element: a node is a link (`a[data-link]`, the router follows it) around a
 * box with a title and subtitle; an edge a path with an arrowhead. Nodes and edges carry their ids
 * (`data-id`, `data-source`, `data-target`) and kinds (`data-kind`). */
export function lineageSvg(nodes: GraphNode[], edges: GraphEdge[], options: Partial<LayoutOptions> = {}): SVGSVGElement {
  const o = { ...DEFAULTS, ...options };
  const layout = layoutGraph(nodes.map((n) => n.id), edges, o);
  const chars = Math.floor((o.nodeWidth - 16) / 7);
  const root = svg("svg", {
    class: "lineage-graph",
    width: layout.width,
    height: layout.height,
    viewBox: `0 0 ${layout.width} ${layout.height}`,
  });
  root.append(
    svg("defs", {}, svg("marker", { id: "lineage-arrow", viewBox: "0 0 10 10", refX: 10, refY: 5, markerWidth: 7, markerHeight: 7, orient: "auto-start-reverse" },
      svg("path", { d: "M0,0 L10,5 L0,10 z", class: "lineage-arrowhead" }))),
  );
  for (const edge of layout.edges) {
    root.append(svg("path", {
      class: `lineage-edge ${edge.kind}${edge.back ? " back" : ""}`,
      d: pathThrough(edge.points, edge.back),
      "data-source": edge.source,
      "data-target": edge.target,
      "data-kind": edge.kind,
      "marker-end": "url(#lineage-arrow)",
    }));
  }
  for (const node of nodes) {
    const at = layout.nodes.get(node.id)!;
    root.append(svg("g", {
      class: `lineage-node ${node.kind}${node.root ? " root" : ""}${node.deleted ? " deleted" : ""}`,
      "data-id": node.id,
      ...(node.deleted ? { "data-deleted": "true" } : {}),
      "data-kind": node.kind,
      "data-layer": at.layer,
      transform: `translate(${at.x},${at.y})`,
    }, svg("a", { href: node.href, "data-link": "" },
      svg("title", {}, `${node.title}\n${node.subtitle}`),
      svg("rect", { width: o.nodeWidth, height: o.nodeHeight, rx: 6 }),
      svg("text", { x: 10, y: 19, class: "title" }, clip(node.title, chars)),
      svg("text", { x: 10, y: 36, class: "subtitle" }, clip(node.subtitle, chars + 4)),
    )));
  }
  return root;
}
