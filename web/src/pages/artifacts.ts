// Artifact pages: a project's collections (/projects/<p>/artifacts, with each collection's own
// description and tags), a collection's versions with aliases and metadata (/projects/<p>/artifacts/<name>), and one version (/.../<name>/<vN>): its
// details, the runs that logged and used it, and a file browser (a directory at a time, or
// filtered; sizes and sha256 digests; paged by the server).

import "./artifacts.css";

import { h } from "../dom";
import { artifactFileSource, viewer3d } from "../viewer3d";
import { row3d, viewToggle } from "./view3d";
import { flatten, fmtBytes, fmtTime, fmtValue } from "../format";
import { artifactHref, projectHref, readQuery, runHref, setQuery, versionHref, versionLineageHref } from "../router";
import { artifactApi, type ArtifactVersion, type DamagedVersion, type LineageRun } from "./artifact-api";

const PAGE = 200;

/** An alias as a chip (`latest` and `vN` muted: they are assigned, not chosen). */
export function aliasChips(aliases: string[]): HTMLElement {
  return h(
    "span.aliases",
    {},
    ...aliases.map((alias) =>
      h(`span.alias${alias === "latest" || /^v\d+$/.test(alias) ? ".auto" : ""}` as "span", { "data-alias": alias, text: alias }),
    ),
  );
}

/** A version's tags as chips (labels many versions may share; none: a muted dash). */
function tagChips(tags: string[]): HTMLElement {
  if (!tags.length) return h("span.muted", { text: "-" });
  return h("span.tags", {}, ...tags.map((tag) => h("span.tag", { "data-tag": tag, text: tag })));
}

/** The algorithm a digest names: the prefix of `blake3:<hex>` (a chunked file's BLAKE3), "sha256"
 * for 64 bare hex digits (a blob's sha256, a version's manifest digest), else "digest" (a
 * reference's checksum, such as an ETag, whose kind the string doesn't say). */
export function digestAlgorithm(digest: string): string {
  const prefixed = /^([a-z0-9]+):[0-9a-f]+$/.exec(digest);
  if (prefixed) return prefixed[1];
  return /^[0-9a-f]{64}$/.test(digest) ? "sha256" : "digest";
}

/** A digest's first 12 characters, the whole digest and its algorithm in the tooltip. */
export function shortDigest(digest: string): HTMLElement {
  return h("code.digest", { title: `${digestAlgorithm(digest)} ${digest}`, text: digest.slice(0, 12) });
}

function runLink(run: LineageRun): HTMLElement {
  return h("a.run-link", { href: runHref(run.project, run.run_id), "data-link": true, "data-run": run.run_id, text: run.name || run.run_id });
}

/** "project/run_id" of the run that logged a version, as a link. */
function loggedByLink(path: string | null): HTMLElement | string {
  if (!path || !path.includes("/")) return "";
  const [project, runId] = path.split("/");
  return h("a.run-link", { href: runHref(project, runId), "data-link": true, "data-run": runId, text: runId });
}

function metadataText(metadata: Record<string, unknown>): string {
  const entries = flatten(metadata);
  return entries.map(([key, value]) => `${key}=${fmtValue(value)}`).join(", ");
}

export async function artifactsPage(root: HTMLElement, project: string): Promise<() => void> {
  root.replaceChildren(h("p.loading", { text: "Loading artifacts…" }));
  const { collections } = await artifactApi.collections(project);
  const byType = new Map<string, typeof collections>();
  for (const c of collections) (byType.get(c.type) ?? byType.set(c.type, []).get(c.type)!).push(c);
  const sections = [...byType.keys()].sort().map((type) =>
    h(
      "section.card.wide",
      { "data-type": type },
      h("h2", { text: type || "unreadable" }),
      h(
        "table.artifact-table.collections",
        {},
        h("tr", {}, ...["Name", "Versions", "Latest", "Aliases", "Tags", "Updated"].map((t) => h("th", { text: t }))),
        ...byType.get(type)!.map((c) =>
          h(
            "tr",
            { "data-name": c.name },
            h(
              "td",
              {},
              h("a", { href: artifactHref(project, c.name), "data-link": true, text: c.name }),
              c.description ? h("div.collection-description", { title: c.description, text: c.description }) : null,
            ),
            h("td.num", { text: c.error ? "" : String(c.versions) }),
            h("td", {}, c.latest ? h("a", { href: versionHref(project, c.name, c.latest), "data-link": true, text: c.latest }) : ""),
            h("td", {}, c.error ? h("span.error", { text: c.error }) : aliasChips(c.aliases)),
            h("td.collection-tags", {}, tagChips(c.tags ?? [])),
            h("td.muted", { text: fmtTime(c.updated_at) }),
          ),
        ),
      ),
    ),
  );
  root.replaceChildren(
    h(
      "div.artifact-page",
      {},
      h("div.pane-head", {}, h("h1", { text: "Artifacts" }), h("span.count", { text: `${collections.length} collections` }),
        h("a", { href: projectHref(project), "data-link": true, text: `← ${project} runs` })),
      ...(sections.length ? sections : [h("div.empty", {}, h("p", { text: "No artifacts logged in this project yet." }),
        h("p", {}, "Log one with ", h("code", { text: "run.log_artifact(...)" }), "."))]),
    ),
  );
  return () => {};
}

function versionRow(project: string, v: ArtifactVersion): HTMLElement {
  return h(
    "tr",
    { "data-version": v.version },
    h("td", {}, h("a", { href: versionHref(project, v.name, v.version), "data-link": true, text: v.version })),
    h("td", {}, aliasChips(v.aliases.filter((a) => a !== v.version))),
    h("td", {}, shortDigest(v.digest)),
    h("td.num.size", { text: fmtBytes(v.size) }),
    h("td.num", { text: String(v.file_count) }),
    h("td.muted", { text: fmtTime(v.created_at) }),
    h("td", {}, loggedByLink(v.logged_by)),
    h("td.metadata", { title: JSON.stringify(v.metadata, null, 1), text: metadataText(v.metadata) }),
  );
}

/** A page of versions as rows, newest first; a version whose registry file is damaged says so. */
function versionRows(project: string, page: { versions: ArtifactVersion[]; damaged: DamagedVersion[] }): HTMLElement[] {
  const rows: [number, HTMLElement][] = [
    ...page.versions.map((v): [number, HTMLElement] => [v.index, versionRow(project, v)]),
    ...page.damaged.map((d): [number, HTMLElement] => [
      d.index,
      h("tr.damaged", { "data-version": d.version }, h("td", { text: d.version }), h("td.error", { colspan: 7, text: d.detail })),
    ]),
  ];
  return rows.sort((a, b) => b[0] - a[0]).map(([, row]) => row);
}

export async function collectionPage(root: HTMLElement, project: string, name: string): Promise<() => void> {
  root.replaceChildren(h("p.loading", { text: "Loading versions…" }));
  // The collection's own description and tags come with the project's listing (a failed listing
  // only leaves them out: the versions still show).
  const [first, own] = await Promise.all([
    artifactApi.versions(project, name, { limit: PAGE }),
    artifactApi.collections(project).then(
      (answer) => answer.collections.find((c) => c.name === name) ?? null,
      () => null,
    ),
  ]);
  const rows = h(
    "table.artifact-table.versions",
    {},
    h("tr", {}, ...["Version", "Aliases", "Digest", "Size", "Files", "Created", "Logged by", "Metadata"].map((t) => h("th", { text: t }))),
    ...versionRows(project, first),
  );
  let loaded = first.versions.length + first.damaged.length;
  const more = h("button.more", { text: `More (${first.total - loaded} older)`, hidden: loaded >= first.total });
  more.addEventListener("click", async () => {
    const page = await artifactApi.versions(project, name, { offset: loaded, limit: PAGE });
    rows.append(...versionRows(project, page));
    loaded += page.versions.length + page.damaged.length;
    more.textContent = `More (${page.total - loaded} older)`;
    more.hidden = loaded >= page.total;
  });
  const latest = first.versions[0];
  root.replaceChildren(
    h(
      "div.artifact-page",
      {},
      h("div.pane-head", {}, h("h1", { text: name }), h("span.type", { text: first.type }),
        h("span.count", { text: `${first.total} versions` }),
        own && own.tags?.length ? h("span.collection-tags", {}, tagChips(own.tags)) : null),
      // The collection's own description; without one, its latest version's (as before collections had one).
      own && own.description
        ? h("p.description", { "data-field": "collection-description", text: own.description })
        : latest && latest.description
          ? h("p.description", { "data-field": "version-description", text: latest.description })
          : null,
      h("section.card.wide", {}, h("h2", { text: "Versions" }), rows, more),
    ),
  );
  return () => {};
}

function details(v: ArtifactVersion, loggedBy: LineageRun[], usedBy: LineageRun[]): HTMLElement {
  const entries: [string, Node | string][] = [
    ["Type", v.type],
    ["Aliases", aliasChips(v.aliases)],
    ["Tags", tagChips(v.tags ?? [])],
    ["Digest", h("code.digest.full", { text: v.digest })],
    ["Size", `${fmtBytes(v.size)} (${v.size.toLocaleString("en-US")} bytes)`],
    ["Files", String(v.file_count)],
    ["Created", fmtTime(v.created_at, true)],
    ["Logged by", loggedBy.length ? h("span.logged-by", {}, ...loggedBy.map(runLink)) : loggedByLink(v.logged_by)],
    ["Used by", usedBy.length ? h("span.used-by", {}, ...usedBy.map(runLink)) : h("span.muted", { text: "no run yet" })],
    ["History step", v.history_step == null ? h("span.muted", { text: "-" }) : String(v.history_step)],
    ["Description", v.description],
  ];
  return h("dl.overview", {}, ...entries.flatMap(([label, value]) => [h("dt", { text: label }), h("dd", { "data-field": label.toLowerCase() }, value)]));
}

/** The file browser: a directory at a time (sub-directories with their file counts and sizes,
 * then files), or every file matching the filter; pages appended by "More". The directory and
 * filter are in the query string (`dir`, `q`). */
class FileBrowser {
  readonly el: HTMLElement;
  private readonly crumbs = h("div.file-crumbs");
  private readonly body = h("tbody");
  private readonly info = h("span.muted.file-info");
  private readonly more = h("button.more", { text: "More", hidden: true });
  private readonly filter = h("input.file-filter", { type: "search", placeholder: "Filter files by path" });
  private dir: string;
  private query: string;
  private next: number | null = null;
  private generation = 0;

  constructor(private readonly project: string, private readonly name: string, private readonly version: string) {
    const params = readQuery();
    this.dir = params.get("dir") ?? "";
    this.query = params.get("q") ?? "";
    this.filter.value = this.query;
    let timer: number | undefined;
    this.filter.addEventListener("input", () => {
      clearTimeout(timer);
      timer = window.setTimeout(() => void this.open(this.dir, this.filter.value.trim()), 200);
    });
    this.more.addEventListener("click", () => void this.load(true));
    this.el = h(
      "div.file-browser",
      {},
      h("div.toolbar", {}, this.filter, this.info),
      this.crumbs,
      h("table.artifact-table.files", {}, h("thead", {}, h("tr", {}, ...["Name", "Size", "Files", "Digest"].map((t) => h("th", { text: t })))), this.body),
      this.more,
    );
  }

  async open(dir: string, query: string): Promise<void> {
    this.dir = dir;
    this.query = query;
    setQuery({ dir: dir || null, q: query || null });
    await this.load(false);
  }

  async load(append: boolean): Promise<void> {
    const mine = ++this.generation;
    const page = await artifactApi.files(this.project, this.name, this.version, {
      dir: this.query ? undefined : this.dir,
      q: this.query || undefined,
      offset: append && this.next !== null ? this.next : 0,
      limit: PAGE,
    });
    if (mine !== this.generation) return;
    this.drawCrumbs();
    const rows = [
      ...page.dirs.map((d) => {
        const link = h("a.dir-link", { href: "#", "data-dir": d.path, text: `${d.name}/` });
        link.addEventListener("click", (event) => {
          event.preventDefault();
          void this.open(d.path, "");
        });
        return h("tr.dir", { "data-path": d.path }, h("td", {}, link), h("td.num.size", { text: fmtBytes(d.size) }),
          h("td.num", { text: String(d.files) }), h("td"));
      }),
      ...page.files.map((f) => {
        const source = f.ref ? null : artifactFileSource(this.project, this.name, this.version, f.path, f.size, f.digest);
        return h("tr.file", { "data-path": f.path }, h("td.file-name", { title: f.ref ? `reference: ${f.ref}` : f.path, text: this.query ? f.path : f.name }),
          h("td.num.size", { text: fmtBytes(f.size) }), h("td", {}, source ? viewToggle(row3d(() => viewer3d(source), 4)) : null),
          h("td", {}, shortDigest(f.digest), f.ref ? h("span.ref", { text: " ref" }) : null));
      }),
    ];
    if (append) this.body.append(...rows);
    else this.body.replaceChildren(...rows);
    if (!append && !rows.length) this.body.replaceChildren(h("tr", {}, h("td.empty", { colspan: 4, text: this.query ? "No file matches." : "Empty." })));
    this.next = page.next_offset ?? null;
    this.more.hidden = this.next === null;
    const shown = this.body.querySelectorAll("tr.dir, tr.file").length;
    this.info.textContent = this.query ? `${shown} of ${page.total} matching files` : `${shown} of ${page.total} entries`;
  }

  private drawCrumbs(): void {
    if (this.query) {
      this.crumbs.replaceChildren(h("span.muted", { text: `Files matching “${this.query}”` }));
      return;
    }
    const parts = this.dir ? this.dir.split("/") : [];
    const crumb = (label: string, dir: string) => {
      const link = h("a.crumb", { href: "#", "data-dir": dir, text: label });
      link.addEventListener("click", (event) => {
        event.preventDefault();
        void this.open(dir, "");
      });
      return link;
    };
    this.crumbs.replaceChildren(
      crumb(`${this.name}:${this.version}`, ""),
      ...parts.flatMap((part, i) => [" / ", crumb(part, parts.slice(0, i + 1).join("/"))]),
    );
  }
}

export async function versionPage(root: HTMLElement, project: string, name: string, selector: string): Promise<() => void> {
  root.replaceChildren(h("p.loading", { text: "Loading version…" }));
  const { version: v, logged_by, used_by } = await artifactApi.version(project, name, selector);
  const files = new FileBrowser(project, name, v.version);
  const metadata = flatten(v.metadata);
  root.replaceChildren(
    h(
      "div.artifact-page",
      {},
      h("div.pane-head", {}, h("h1", { text: `${name}:${v.version}` }), aliasChips(v.aliases.filter((a) => a !== v.version)),
        h("a", { href: artifactHref(project, name), "data-link": true, text: `← all versions of ${name}` }),
        h("a.lineage-link", { href: versionLineageHref(project, name, v.version), "data-link": true, text: "Lineage graph →" })),
      h(
        "div.columns",
        {},
        h("section.card", {}, h("h2", { text: "Version" }), details(v, logged_by, used_by)),
        h("section.card", {}, h("h2", { text: "Metadata" }), metadata.length
          ? h("table.metadata", {}, ...metadata.map(([key, value]) => h("tr", {}, h("th", { text: key }), h("td", { text: fmtValue(value) }))))
          : h("p.empty", { text: "None." })),
      ),
      h("section.card.wide", {}, h("h2", { text: "Files" }), files.el),
    ),
  );
  await files.load(false);
  return () => {};
}
