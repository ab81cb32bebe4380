// The report editor: the Markdown in a textarea beside a live preview (the server parses it,
// POST .../reports/preview, and each panel is drawn from the run and history routes as the page
// would draw it), Save (a new version, whose parent is the version edited: 409 when someone saved
// meanwhile), Publish, Freeze, and the versions: view, diff two, revert to one.

import { api, ApiError } from "../api";
import { debounce, h } from "../dom";
import { reportHref } from "../router";
import { reportsApi, type PanelBlock, type PanelData, type Report, type ReportVersion } from "../reports/api";
import { ReportDocument, runSetOf, type PanelWindow } from "../reports/document";
import { fmtWhen } from "../reports/header";
import "../reports/reports.css";

const PREVIEW_DELAY_MS = 400;
const PREVIEW_BUCKETS = 600;

/** A panel of unsaved Markdown, drawn from the runs list and the history route (what the data route does on save). */
export async function previewPanelData(project: string, block: PanelBlock, window: PanelWindow = null): Promise<PanelData> {
  const spec = block.spec!;
  const set = runSetOf(block);
  const from = set.project || project;
  const frozen = set.frozen?.run_ids;
  const filter = frozen ? `run_id in [${frozen.map((id) => JSON.stringify(id)).join(", ")}]` : set.filter || undefined;
  const { runs } = await api.runs(from, { filter, order_by: set.sort || undefined, limit: set.limit ?? 10 });
  const rows = runs.map((run) => ({ id: run.run_id, name: run.name ?? null, project: from }));
  if (!rows.length) return { access: "ok", error: "the run set matches no runs", runs: [], history: { series: [] } };
  const history = await api.history(from, {
    runs: rows.map((r) => r.id),
    keys: spec.keys,
    x: spec.x || "step",
    start: window?.start ?? null,
    end: window?.end ?? set.frozen?.max_step ?? null,
    buckets: window?.buckets ?? PREVIEW_BUCKETS,
  });
  return { access: "ok", error: null, runs: rows, history: history as PanelData["history"] };
}

function message(error: unknown): string {
  return error instanceof ApiError ? `${error.message} (HTTP ${error.status})` : String((error as Error).message ?? error);
}

export async function reportEditPage(root: HTMLElement, project: string, id: string): Promise<() => void> {
  // The editor edits the newest version (a report's page shows the published one by default).
  let report: Report = await reportsApi.get(project, id);
  if (report.latest_version && report.latest_version !== report.version) report = await reportsApi.get(project, id, report.latest_version);
  let saved = report.markdown;
  let preview: ReportDocument | null = null;
  let previewGeneration = 0;

  const titleInput = h("input.report-title", { type: "text", name: "title", value: report.title });
  const editor = h("textarea.report-markdown", { name: "markdown", spellcheck: "false" });
  editor.value = report.markdown;
  const status = h("span.editor-status");
  const errorBox = h("p.error.editor-error", { hidden: true });
  const previewBox = h("div.report-preview");
  const versionsBox = h("div.report-versions");
  const diffBox = h("pre.report-diff", { hidden: true });
  const saveButton = h("button.save", { text: "Save" });
  const publishButton = h("button.publish", { text: "Publish", title: "Make the saved version the published one (immutable)" });
  const freezeButton = h("button.freeze", { text: "Freeze run sets", title: "Pin each panel's runs and max step: new runs no longer appear" });
  const viewLink = h("a.button", { href: reportHref(project, id), "data-link": true, text: "View" });

  const showError = (text: string | null) => {
    errorBox.textContent = text ?? "";
    errorBox.hidden = text === null;
  };
  const dirty = () => editor.value !== saved || titleInput.value !== report.title;
  const updateStatus = () => {
    const published = report.published_version;
    status.textContent = `version ${report.version}${published ? ` · published: version ${published} (read-only)` : ""}${dirty() ? " · unsaved changes" : ""}`;
    // A published report is immutable: it can be read and exported, not saved, reverted or frozen.
    for (const button of [saveButton, publishButton, freezeButton]) button.disabled = Boolean(published);
    editor.readOnly = Boolean(published);
  };

  async function renderPreview(): Promise<void> {
    const generation = ++previewGeneration;
    let blocks;
    try {
      ({ blocks } = await reportsApi.preview(project, editor.value));
    } catch (error) {
      if (generation === previewGeneration) showError(`preview: ${message(error)}`);
      return;
    }
    if (generation !== previewGeneration) return;
    showError(null);
    preview?.destroy();
    preview = new ReportDocument(blocks, (block, window) => previewPanelData(project, block, window), "preview");
    previewBox.replaceChildren(preview.el);
    await preview.load();
  }

  function load(next: Report): void {
    report = next;
    saved = next.markdown;
    editor.value = next.markdown;
    titleInput.value = next.title;
    updateStatus();
    void renderPreview();
    void renderVersions();
  }

  async function renderVersions(): Promise<void> {
    let versions: ReportVersion[];
    try {
      versions = await reportsApi.versions(project, id);
    } catch (error) {
      versionsBox.replaceChildren(h("p.error", { text: message(error) }));
      return;
    }
    versions = [...versions].sort((a, b) => b.version - a.version);
    const pick = (name: string, chosen: number) => {
      const select = h("select", { name }, ...versions.map((v) => h("option", { value: v.version, text: `v${v.version}` })));
      select.value = String(chosen);
      return select;
    };
    const a = pick("a", versions[1]?.version ?? versions[0]?.version ?? 1);
    const b = pick("b", versions[0]?.version ?? 1);
    const diffButton = h("button.diff", { text: "Diff" });
    diffButton.addEventListener("click", async () => {
      try {
        const { diff } = await reportsApi.diff(project, id, Number(a.value), Number(b.value));
        diffBox.replaceChildren(
          ...(diff ? diff.split("\n") : ["(no difference)"]).map((line) =>
            h(`span.${line.startsWith("+") && !line.startsWith("+++") ? "add" : line.startsWith("-") && !line.startsWith("---") ? "del" : line.startsWith("@@") ? "hunk" : "same"}`, { text: line + "\n" }),
          ),
        );
        diffBox.hidden = false;
      } catch (error) {
        showError(message(error));
      }
    });
    versionsBox.replaceChildren(
      h("h2", { text: "Versions" }),
      h("div.toolbar", {}, a, h("span", { text: "→" }), b, diffButton),
      h(
        "ol.version-list",
        {},
        ...versions.map((v) => {
          const revert = h("button.small.revert", { text: "Revert to this", disabled: v.version === report.version || Boolean(report.published_version) });
          revert.addEventListener("click", async () => {
            try {
              load(await reportsApi.revert(project, id, v.version));
            } catch (error) {
              showError(message(error));
            }
          });
          const published = v.published || report.published_version === v.version;
          return h(
            "li",
            { "data-version": v.version },
            h("a", { href: `${reportHref(project, id)}?version=${v.version}`, "data-link": true, text: `v${v.version}` }),
            h("span.muted", { text: [v.note ?? "", v.author ? `by ${v.author}` : "", fmtWhen(v.created_at), published ? "published" : ""].filter(Boolean).join(" · ") }),
            revert,
          );
        }),
      ),
      diffBox,
    );
  }

  saveButton.addEventListener("click", async () => {
    try {
      const next = await reportsApi.save(project, id, { markdown: editor.value, title: titleInput.value.trim() || report.title, parent: report.version });
      load(next);
      status.textContent += " · saved";
    } catch (error) {
      showError(
        error instanceof ApiError && error.status === 409
          ? `Someone saved a newer version meanwhile (${error.message}). Copy your text, reload, and apply it again.`
          : message(error),
      );
    }
  });
  publishButton.addEventListener("click", async () => {
    if (dirty()) return showError("Save first: publishing publishes a saved version.");
    try {
      load(await reportsApi.publish(project, id, report.version));
    } catch (error) {
      showError(message(error));
    }
  });
  freezeButton.addEventListener("click", async () => {
    if (dirty()) return showError("Save first: freezing pins the saved version's run sets.");
    try {
      load(await reportsApi.freeze(project, id));
    } catch (error) {
      showError(message(error));
    }
  });
  const onInput = debounce(() => void renderPreview(), PREVIEW_DELAY_MS);
  editor.addEventListener("input", () => {
    updateStatus();
    onInput();
  });
  titleInput.addEventListener("input", updateStatus);
  const beforeUnload = (event: BeforeUnloadEvent) => {
    if (dirty()) event.preventDefault();
  };
  window.addEventListener("beforeunload", beforeUnload);

  root.replaceChildren(
    h(
      "div.report-editor",
      {},
      h("div.editor-head", {}, titleInput, saveButton, publishButton, freezeButton, viewLink, status),
      errorBox,
      h("div.editor-split", {}, h("div.editor-pane", {}, editor, versionsBox), h("div.preview-pane", {}, previewBox)),
    ),
  );
  updateStatus();
  void renderVersions();
  void renderPreview();
  return () => {
    previewGeneration++;
    preview?.destroy();
    window.removeEventListener("beforeunload", beforeUnload);
  };
}
