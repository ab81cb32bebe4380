// Traces (docs/tracing.md): /projects/<p>/traces lists the project's latest traces (root span,
// spans, duration, status, tokens, cost, run), filtered by the typed columns in the query string
// (status, operation, provider, model, run); /projects/<p>/traces/<trace id> shows one trace as a
// tree of spans beside a waterfall of their times, and the selected span's details (typed
// columns, inputs, output, attributes, events). Spans come from GET /api/v1/projects/<p>/traces.
// A span without an end (status "open": still running, or cut off by a kill) shows as
// "unfinished", its bar reaching the trace's last known time. An LLM call's span shows its
// conversation as a chat (chatOf). ?compare=<trace id> adds a diff of the two traces (diffTraces:
// spans paired by their place in the tree). runTracesCard: a run page's traces by step.

import "./traces.css";

import { get, traceBlob } from "../api";
import type { components } from "../api-types";
import { registerProbe } from "../debug";
import { h } from "../dom";
import { fmtDuration, fmtTime } from "../format";
import { navigate, readQuery, runHref, setQuery, traceHref, tracesHref } from "../router";

type Trace = components["schemas"]["TraceModel"];
type Span = components["schemas"]["TraceSpanModel"];

const FILTERS = ["status", "operation", "provider", "model", "run"] as const;
const LIST_LIMIT = 200;

function fmtCost(cost: number | null | undefined): string {
  if (cost === null || cost === undefined) return "";
  return cost >= 0.01 ? `$${cost.toFixed(2)}` : `$${cost.toPrecision(2)}`;
}

function fmtTokens(input: number | null | undefined, output: number | null | undefined): string {
  if ((input ?? null) === null && (output ?? null) === null) return "";
  return `${input ?? 0} → ${output ?? 0}`;
}

/** A status as shown: a span without an end ("open") is unfinished. */
const statusLabel = (status: string) => (status === "open" ? "unfinished" : status);

function statusBadge(status: string, message = ""): HTMLElement {
  return h("span.span-status", { "data-status": status, text: statusLabel(status), title: message || null });
}

/** A trace's status: error if a span failed, else unfinished if one has no end, else its root's. */
function traceStatus(trace: Trace): string {
  if (trace.spans.some((s) => s.status === "error")) return "error";
  if (trace.spans.some((s) => s.status === "open")) return "open";
  return rootOf(trace).status;
}

function rootOf(trace: Trace): Span {
  const ids = new Set(trace.spans.map((s) => s.span_id));
  return trace.spans.find((s) => !s.parent_span_id || !ids.has(s.parent_span_id)) ?? trace.spans[0];
}

const durationMs = (trace: Trace) => (trace.end_ns - trace.start_ns) / 1e6;

export async function tracesPage(root: HTMLElement, project: string): Promise<() => void> {
  root.replaceChildren(h("p.loading", { text: "Loading traces…" }));
  const query = readQuery();
  const inputs = Object.fromEntries(
    FILTERS.map((name) => [name, h("input", { type: "search", name, placeholder: name, value: query.get(name) ?? "" })]),
  ) as Record<(typeof FILTERS)[number], HTMLInputElement>;
  const body = h("tbody");
  const count = h("span.count");
  const error = h("p.error", { hidden: true });
  let shown: Trace[] = [];
  let asked = 0;

  async function load(): Promise<void> {
    const mine = ++asked;
    const filters = Object.fromEntries(FILTERS.map((name) => [name, inputs[name].value.trim()]));
    setQuery(filters);
    try {
      const data = await get<components["schemas"]["TracesResponse"]>(`/projects/${encodeURIComponent(project)}/traces`,
        { ...filters, limit: LIST_LIMIT });
      if (mine !== asked) return;
      error.hidden = true;
      shown = data.traces;
      count.textContent = `${shown.length}${shown.length === LIST_LIMIT ? "+" : ""} traces`;
      body.replaceChildren(...shown.map((trace) => traceRow(project, trace)));
      if (!shown.length) body.append(h("tr", {}, h("td.empty", { colspan: 8, text: "No traces match." })));
    } catch (failure) {
      if (mine !== asked) return;
      error.hidden = false;
      error.textContent = String(failure instanceof Error ? failure.message : failure);
    }
  }

  for (const input of Object.values(inputs)) input.addEventListener("change", () => void load());
  const unregister = registerProbe("traces", () => ({
    traces: shown.map((t) => ({ trace_id: t.trace_id, root: rootOf(t).name, spans: t.spans.length, cost: t.cost ?? null })),
  }));
  root.replaceChildren(
    h("section.traces-page", {},
      h("div.pane-head", {}, h("h1", { text: `Traces of ${project}` }), count),
      h("div.toolbar", {}, ...FILTERS.map((name) => inputs[name])),
      error,
      h("table.traces", {},
        h("thead", {}, h("tr", {}, ...["started", "root span", "spans", "duration", "status", "tokens in → out", "cost", "run"]
          .map((label) => h("th", { text: label })))),
        body)));
  await load();
  return unregister;
}

function traceRow(project: string, trace: Trace): HTMLElement {
  const first = rootOf(trace);
  return h("tr", { "data-trace": trace.trace_id },
    h("td", { text: fmtTime(trace.start_ns / 1e9) }),
    h("td", {}, h("a", { href: traceHref(project, trace.trace_id), "data-link": true, text: first.name || trace.trace_id })),
    h("td.num", { text: String(trace.spans.length) }),
    h("td.num", { text: fmtDuration(durationMs(trace) / 1000) }),
    h("td", {}, statusBadge(traceStatus(trace))),
    h("td.num", { text: fmtTokens(trace.input_tokens, trace.output_tokens) }),
    h("td.num", { text: fmtCost(trace.cost) }),
    h("td", {}, trace.run_id ? h("a", { href: runHref(project, trace.run_id), "data-link": true, text: trace.run_id }) : ""));
}

const RUN_TRACES_LIMIT = 500;

/** A run page's card: the run's traces grouped by the step their root started at (a link to each,
 * and to the traces page filtered on the run). Hidden while the run has none. */
export function runTracesCard(project: string, runId: string): HTMLElement {
  const body = h("div.run-traces");
  const card = h("section.card.wide.run-traces-card", { hidden: true },
    h("div.pane-head", {}, h("h2", { text: "Traces" }),
      h("a.run-traces-all", { href: `${tracesHref(project)}?run=${encodeURIComponent(runId)}`, "data-link": true,
        text: "all traces of this run" })),
    body);
  void get<components["schemas"]["TracesResponse"]>(`/projects/${encodeURIComponent(project)}/traces`,
    { run: runId, limit: RUN_TRACES_LIMIT }).then((data) => {
    if (!data.traces.length) return;
    const byStep = new Map<number | null, Trace[]>();
    for (const trace of data.traces) {
      const step = rootOf(trace).step ?? null;
      byStep.set(step, [...(byStep.get(step) ?? []), trace]);
    }
    const order = [...byStep.keys()].sort((a, b) => (a ?? -1) - (b ?? -1));
    const steps = order.map((step) => ({ step, traces: byStep.get(step)!.sort((a, b) => a.start_ns - b.start_ns).map((t) => t.trace_id) }));
    body.replaceChildren(h("table.traces", {},
      h("thead", {}, h("tr", {}, ...["step", "root span", "spans", "duration", "status", "tokens in → out", "cost"]
        .map((label) => h("th", { text: label })))),
      h("tbody", {}, ...steps.flatMap(({ step, traces }) => traces.map((id, index) => {
        const trace = data.traces.find((t) => t.trace_id === id)!;
        return h("tr", { "data-trace": id, "data-step": step === null ? "" : String(step) },
          h("td.num", { text: index === 0 && step !== null ? String(step) : "" }),
          h("td", {}, h("a", { href: traceHref(project, id), "data-link": true, text: rootOf(trace).name || id })),
          h("td.num", { text: String(trace.spans.length) }),
          h("td.num", { text: fmtDuration(durationMs(trace) / 1000) }),
          h("td", {}, statusBadge(traceStatus(trace))),
          h("td.num", { text: fmtTokens(trace.input_tokens, trace.output_tokens) }),
          h("td.num", { text: fmtCost(trace.cost) }));
      })))));
    card.hidden = false;
  }).catch(() => undefined);
  return card;
}

/** Spans in tree order (depth first, children by start) with their depth. */
export function treeOrder(trace: Trace): { span: Span; depth: number }[] {
  const ids = new Set(trace.spans.map((s) => s.span_id));
  const children = new Map<string, Span[]>();
  const roots: Span[] = [];
  for (const span of trace.spans) {
    if (span.parent_span_id && ids.has(span.parent_span_id) && span.parent_span_id !== span.span_id) {
      const list = children.get(span.parent_span_id) ?? [];
      list.push(span);
      children.set(span.parent_span_id, list);
    } else roots.push(span);
  }
  const out: { span: Span; depth: number }[] = [];
  const seen = new Set<string>();
  const visit = (span: Span, depth: number) => {
    if (seen.has(span.span_id)) return; // a cycle of parent ids (a bad exporter): each span once
    seen.add(span.span_id);
    out.push({ span, depth });
    for (const child of (children.get(span.span_id) ?? []).sort((a, b) => a.start_ns - b.start_ns)) visit(child, depth + 1);
  };
  for (const span of roots.sort((a, b) => a.start_ns - b.start_ns)) visit(span, 0);
  for (const span of trace.spans) if (!seen.has(span.span_id)) visit(span, 0);
  return out;
}

function payload(text: string, blob: string): string {
  if (text) {
    try {
      return JSON.stringify(JSON.parse(text), null, 2);
    } catch {
      return text;
    }
  }
  return blob ? `(stored as blob sha256:${blob})` : "";
}

type ChatMessage = { role: string; text: string };

/** A message content as text: a string, or the text of its parts (OpenAI/Anthropic content parts,
 * OTel GenAI `parts`), tool calls and tool uses written as `name(arguments)`. */
function contentText(content: unknown): string {
  if (typeof content === "string") return content;
  if (!Array.isArray(content)) return content === null || content === undefined ? "" : JSON.stringify(content);
  return content.map((part) => {
    if (typeof part === "string") return part;
    if (!part || typeof part !== "object") return "";
    const p = part as Record<string, unknown>;
    if (typeof p.text === "string") return p.text;
    if (typeof p.content === "string") return p.content;
    if (p.type === "tool_use" || p.type === "tool_call" || p.type === "function_call")
      return `→ ${String(p.name ?? "")}(${typeof p.arguments === "string" ? p.arguments : JSON.stringify(p.input ?? p.arguments ?? {})})`;
    return "";
  }).filter(Boolean).join("\n");
}

function toMessage(value: unknown, fallbackRole: string): ChatMessage | null {
  if (!value || typeof value !== "object") return null;
  const m = value as Record<string, unknown>;
  if (m.type === "function_call") return { role: "assistant", text: contentText([m]) };
  let text = contentText(m.content ?? m.parts);
  const calls = Array.isArray(m.tool_calls) ? (m.tool_calls as { function?: { name?: string; arguments?: string } }[]) : [];
  for (const call of calls) text += `${text ? "\n" : ""}→ ${call.function?.name ?? ""}(${call.function?.arguments ?? ""})`;
  return { role: typeof m.role === "string" ? m.role : fallbackRole, text };
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

/** The GenAI conversation of a span, if it has one: the request's system prompt and messages
 * (OpenAI/Anthropic arguments, Responses API `instructions`/`input`, or OTel's
 * `gen_ai.input.messages`), then the answer's messages. Null for other spans. */
export function chatOf(span: Span): ChatMessage[] | null {
  const inputs = span.input ? parseJson(span.input) : undefined;
  const attr = span.attributes as Record<string, unknown>;
  let asked: unknown = undefined;
  const out: ChatMessage[] = [];
  if (inputs && typeof inputs === "object" && !Array.isArray(inputs)) {
    const i = inputs as Record<string, unknown>;
    const system = i.system ?? i.instructions;
    if (typeof system === "string" && system) out.push({ role: "system", text: system });
    asked = i.messages ?? (typeof i.input === "string" ? [{ role: "user", content: i.input }] : i.input);
  }
  if (asked === undefined && typeof attr["gen_ai.input.messages"] === "string") asked = parseJson(attr["gen_ai.input.messages"] as string);
  if (!Array.isArray(asked)) return null;
  for (const message of asked) {
    const m = toMessage(message, "user");
    if (m) out.push(m);
  }
  let answer: unknown = span.output ? parseJson(span.output) : undefined;
  if (answer === undefined && typeof attr["gen_ai.output.messages"] === "string") answer = parseJson(attr["gen_ai.output.messages"] as string);
  for (const message of Array.isArray(answer) ? answer : answer ? [answer] : []) {
    const m = toMessage(message, "assistant");
    if (m && (m.text || m.role)) out.push(m);
  }
  return out;
}

function chatView(messages: ChatMessage[]): HTMLElement {
  return h("div.chat-view", {}, h("h3", { text: "chat" }),
    ...messages.map((m) => h("div.chat-message", { "data-role": m.role },
      h("span.chat-role", { text: m.role }), h("div.chat-text", { text: m.text }))));
}

/** A media reference an op's payload holds in place of an image, audio clip, video or long bytes
 * (tracklet/tracing/media.py). */
export type MediaRef = { _type: "tracklet.media"; kind: string; sha256: string; mime: string; size: number;
  width?: number; height?: number; thumbnail?: string; caption?: string; format?: string };

/** The media references in a JSON payload, in order, each with the path to it ("inputs.image"). */
export function mediaRefs(value: unknown, path: string, found: { path: string; ref: MediaRef }[] = [],
  depth = 0): { path: string; ref: MediaRef }[] {
  if (depth > 40 || value === null || typeof value !== "object") return found;
  const record = value as Record<string, unknown>;
  if (record._type === "tracklet.media" && typeof record.sha256 === "string") {
    found.push({ path, ref: record as unknown as MediaRef });
    return found;
  }
  for (const [key, item] of Array.isArray(value) ? value.entries() : Object.entries(record))
    mediaRefs(item, `${path}${Array.isArray(value) ? `[${key}]` : `.${key}`}`, found, depth + 1);
  return found;
}

const fmtBytes = (size: number) => size >= 1 << 20 ? `${(size / (1 << 20)).toFixed(1)} MB`
  : size >= 1024 ? `${(size / 1024).toFixed(1)} KB` : `${size} B`;

const blobUrls = new Map<string, Promise<string>>(); // digest -> object URL (content-addressed: never stale)

function traceBlobUrl(project: string, traceId: string, digest: string): Promise<string> {
  let url = blobUrls.get(digest);
  if (!url) {
    url = traceBlob(project, traceId, digest).then((blob) => URL.createObjectURL(blob));
    url.catch(() => blobUrls.delete(digest));
    blobUrls.set(digest, url);
  }
  return url;
}

/** One media reference: an image (its thumbnail, linking to the full image), an audio or video
 * player, or a download link; the file is fetched with the key header an <img src> can't send. */
function mediaItem(project: string, traceId: string, path: string, ref: MediaRef): HTMLElement {
  const kind = ref.mime.startsWith("image/") ? "image" : ref.mime.startsWith("audio/") ? "audio"
    : ref.mime.startsWith("video/") ? "video" : "file";
  const label = [path, ref.kind, ref.width && ref.height ? `${ref.width}×${ref.height}` : "", fmtBytes(ref.size),
    ref.caption ?? ""].filter(Boolean).join(" · ");
  const item = h("figure.span-media", { "data-kind": kind, "data-sha256": ref.sha256 }, h("figcaption", { text: label }));
  const name = `${path.replace(/[^\w.-]+/g, "_")}.${ref.format || ref.mime.split("/")[1] || "bin"}`;
  const link = h("a.span-media-download", { text: "download", download: name, href: "#" }) as HTMLAnchorElement;
  item.append(link);
  const failed = (error: unknown) => item.append(h("span.error", { text: `not readable: ${String(error)}` }));
  traceBlobUrl(project, traceId, ref.sha256).then((url) => {
    link.href = url;
    if (kind === "audio" || kind === "video") {
      item.insertBefore(h(kind === "audio" ? "audio" : "video", { controls: true, src: url, preload: "metadata" }), link);
    } else if (kind === "image" && !ref.thumbnail) {
      item.insertBefore(h("img.span-media-image", { src: url, alt: label }), link);
    }
  }, failed);
  if (kind === "image" && ref.thumbnail) {
    traceBlobUrl(project, traceId, ref.thumbnail).then(
      (url) => item.insertBefore(h("img.span-media-image", { src: url, alt: label }), link), failed);
  }
  return item;
}

function mediaSection(project: string, span: Span): HTMLElement | null {
  const parse = (text: string) => { try { return JSON.parse(text) as unknown; } catch { return null; } };
  const refs = [...mediaRefs(parse(span.input), "inputs"), ...mediaRefs(parse(span.output), "output")];
  if (!refs.length) return null;
  return h("div.span-media-list", {}, h("h3", { text: "media" }),
    ...refs.map(({ path, ref }) => mediaItem(project, span.trace_id, path, ref)));
}

/** A payload stored as a blob (JSON over 8 KiB): fetched from the trace blob route and shown like an
 * inline one, with the media it references. */
function blobSection(project: string, span: Span, title: string, blob: string): HTMLElement {
  const pre = h("pre.span-blob", { "data-blob": blob, text: `(loading blob sha256:${blob}…)` });
  const box = h("div", {}, h("h3", { text: title }), pre);
  traceBlob(project, span.trace_id, blob).then((data) => data.text()).then((text) => {
    pre.textContent = payload(text, "");
    let parsed: unknown = null;
    try { parsed = JSON.parse(text); } catch { /* shown as text */ }
    const refs = mediaRefs(parsed, title);
    if (refs.length) box.append(h("div.span-media-list", {}, ...refs.map(({ path, ref }) => mediaItem(project, span.trace_id, path, ref))));
  }, (error) => { pre.textContent = `(stored as blob sha256:${blob}; not readable: ${String(error)})`; });
  return box;
}

function details(span: Span, project: string): HTMLElement {
  const rows: [string, string][] = [
    ["name", span.name], ["status", statusLabel(span.status) + (span.status_message ? `: ${span.status_message}` : "")],
    ["kind", span.kind], ["duration", span.status === "open" ? "unfinished" : fmtDuration(span.duration_ms / 1000)],
    ["operation", span.operation],
    ["provider", span.provider], ["model", span.model], ["tokens in → out", fmtTokens(span.input_tokens, span.output_tokens)],
    ["cost", fmtCost(span.cost)], ["step", span.step === null ? "" : String(span.step)], ["span id", span.span_id],
  ];
  const section = (title: string, text: string) => text ? h("div", {}, h("h3", { text: title }), h("pre", { text })) : null;
  const chat = chatOf(span);
  return h("div.span-details", { "data-span": span.span_id },
    h("table.kv", {}, ...rows.filter(([, v]) => v).map(([k, v]) => h("tr", {}, h("th", { text: k }), h("td", { text: v })))),
    chat && chat.length ? chatView(chat) : null,
    mediaSection(project, span),
    span.input || !span.input_blob ? section("inputs", payload(span.input, "")) : blobSection(project, span, "inputs", span.input_blob),
    span.output || !span.output_blob ? section("output", payload(span.output, "")) : blobSection(project, span, "output", span.output_blob),
    section("attributes", Object.keys(span.attributes).length ? JSON.stringify(span.attributes, null, 2) : ""),
    section("events", span.events.length ? JSON.stringify(span.events, null, 2) : ""));
}

type DiffRow = { path: string; a: Span | null; b: Span | null; changed: string[] };

/** Two traces' spans paired by their place in the tree (the names from the root down, and the
 * index among same-named siblings), with what differs: status, tokens, output, inputs, model. */
export function diffTraces(a: Trace, b: Trace): DiffRow[] {
  const paths = (trace: Trace): Map<string, Span> => {
    const byPath = new Map<string, Span>();
    const pathOf = new Map<string, string>();
    const seen = new Map<string, number>();
    for (const { span } of treeOrder(trace)) {
      const parent = span.parent_span_id ? pathOf.get(span.parent_span_id) ?? "" : "";
      const base = parent ? `${parent} / ${span.name}` : span.name;
      const count = seen.get(base) ?? 0;
      seen.set(base, count + 1);
      const path = count ? `${base} #${count + 1}` : base;
      pathOf.set(span.span_id, path);
      byPath.set(path, span);
    }
    return byPath;
  };
  const left = paths(a), right = paths(b);
  const order = [...left.keys(), ...[...right.keys()].filter((k) => !left.has(k))];
  return order.map((path) => {
    const x = left.get(path) ?? null, y = right.get(path) ?? null;
    const changed: string[] = [];
    if (x && y) {
      if (x.status !== y.status) changed.push("status");
      if (x.model !== y.model) changed.push("model");
      if (x.input_tokens !== y.input_tokens || x.output_tokens !== y.output_tokens) changed.push("tokens");
      if (x.input !== y.input || x.input_blob !== y.input_blob) changed.push("inputs");
      if (x.output !== y.output || x.output_blob !== y.output_blob) changed.push("output");
    } else changed.push(x ? "only in A" : "only in B");
    return { path, a: x, b: y, changed };
  });
}

function diffCard(project: string, a: Trace, b: Trace): HTMLElement {
  const rows = diffTraces(a, b);
  const cell = (span: Span | null) => span
    ? `${statusLabel(span.status)} · ${span.status === "open" ? "unfinished" : fmtDuration(span.duration_ms / 1000)}${
      fmtTokens(span.input_tokens, span.output_tokens) ? ` · ${fmtTokens(span.input_tokens, span.output_tokens)}` : ""}`
    : "—";
  return h("section.card.wide.trace-diff", {},
    h("h2", {}, "Compared with ", h("a", { href: traceHref(project, b.trace_id), "data-link": true, text: rootOf(b).name || b.trace_id })),
    h("table.traces", {},
      h("thead", {}, h("tr", {}, ...["span", "this trace (A)", "other (B)", "differs in"].map((label) => h("th", { text: label })))),
      h("tbody", {}, ...rows.map((row) => h("tr.diff-row", { "data-path": row.path, "data-changed": row.changed.join(",") },
        h("td", { text: row.path }), h("td", { text: cell(row.a) }), h("td", { text: cell(row.b) }),
        h("td", { text: row.changed.join(", ") }))))));
}

export async function tracePage(root: HTMLElement, project: string, traceId: string): Promise<() => void> {
  root.replaceChildren(h("p.loading", { text: "Loading trace…" }));
  const data = await get<components["schemas"]["TracesResponse"]>(`/projects/${encodeURIComponent(project)}/traces`,
    { trace_id: traceId, limit: 1 });
  const trace = data.traces[0];
  if (!trace) {
    root.replaceChildren(h("p.error", { text: `No trace ${traceId} in ${project}` }));
    return () => {};
  }
  const compareId = readQuery().get("compare");
  const other = compareId
    ? (await get<components["schemas"]["TracesResponse"]>(`/projects/${encodeURIComponent(project)}/traces`,
      { trace_id: compareId, limit: 1 })).traces[0]
    : undefined;
  const compareInput = h("input.compare-input", { type: "search", name: "compare", placeholder: "compare with trace id",
    value: compareId ?? "" }) as HTMLInputElement;
  compareInput.addEventListener("change", () => {
    const params = readQuery();
    const value = compareInput.value.trim();
    if (value) params.set("compare", value);
    else params.delete("compare");
    navigate(`${location.pathname}${params.toString() ? `?${params}` : ""}`); // the page again, with the diff
  });
  const ordered = treeOrder(trace);
  const total = Math.max(1, trace.end_ns - trace.start_ns);
  const panel = h("section.card.span-panel");
  let selected = readQuery().get("span") ?? rootOf(trace).span_id;
  const rows = ordered.map(({ span, depth }) => {
    const open = span.status === "open";
    const end = open ? trace.end_ns : span.end_ns; // an unfinished span: up to the last time the trace knows
    const left = ((span.start_ns - trace.start_ns) / total) * 100;
    const width = Math.max(0.3, ((end - span.start_ns) / total) * 100);
    const row = h("div.span-row", { "data-span": span.span_id, "data-status": span.status, role: "button", tabindex: 0 },
      h("div.span-name", { style: `padding-left: ${depth * 16 + 4}px`, title: span.name },
        h("span", { text: span.name }), span.model ? h("span.span-model", { text: span.model }) : null),
      h("div.span-lane", {},
        h("div.span-bar", { style: `left: ${left}%; width: ${Math.min(width, 100 - left)}%`, "data-status": span.status,
          title: `${open ? "unfinished" : fmtDuration(span.duration_ms / 1000)} from +${fmtDuration((span.start_ns - trace.start_ns) / 1e9)}` })),
      h("span.span-time", { text: open ? "unfinished" : fmtDuration(span.duration_ms / 1000) }));
    row.addEventListener("click", () => select(span.span_id));
    row.addEventListener("keydown", (event) => { if (event.key === "Enter") select(span.span_id); });
    return row;
  });

  function select(spanId: string): void {
    selected = spanId;
    setQuery({ span: spanId });
    for (const row of rows) row.classList.toggle("selected", row.dataset.span === spanId);
    const span = trace.spans.find((s) => s.span_id === spanId);
    panel.replaceChildren(span ? details(span, project) : h("p", { text: "Select a span." }));
  }

  const unregister = registerProbe("trace", () => ({
    trace_id: trace.trace_id,
    selected,
    rows: rows.map((row) => {
      const bar = row.querySelector(".span-bar") as HTMLElement;
      const entry = ordered.find((o) => o.span.span_id === row.dataset.span)!;
      return { span_id: row.dataset.span, name: entry.span.name, depth: entry.depth, status: statusLabel(entry.span.status),
        left: parseFloat(bar.style.left), width: parseFloat(bar.style.width) };
    }),
  }));
  const summary = [`${trace.spans.length} spans`, fmtDuration(durationMs(trace) / 1000), fmtTime(trace.start_ns / 1e9),
    fmtTokens(trace.input_tokens, trace.output_tokens) && `tokens ${fmtTokens(trace.input_tokens, trace.output_tokens)}`,
    fmtCost(trace.cost) && `cost ${fmtCost(trace.cost)}`].filter(Boolean).join(" · ");
  root.replaceChildren(
    h("section.trace-page", {},
      h("div.pane-head", {}, h("h1", { text: rootOf(trace).name || trace.trace_id }), h("span.count", { text: summary }),
        trace.run_id ? h("a", { href: runHref(project, trace.run_id), "data-link": true, text: `run ${trace.run_id}` }) : null,
        compareInput),
      compareId ? (other ? diffCard(project, trace, other) : h("p.error", { text: `No trace ${compareId} in ${project}` })) : null,
      h("div.trace-columns", {},
        h("section.card.waterfall", {},
          h("div.span-row.span-head", {}, h("div.span-name", { text: "span" }), h("div.span-lane", { text: "timeline" }),
            h("span.span-time", { text: "duration" })),
          ...rows),
        panel)));
  select(trace.spans.some((s) => s.span_id === selected) ? selected : rootOf(trace).span_id);
  return unregister;
}
