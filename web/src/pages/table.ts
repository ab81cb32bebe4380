// A table page (/projects/<p>/runs/<id>/tables/<key>): one logged table filling the page, with the
// table panel's sort, filter, group, version and compare (components/table-panel.ts). The view is
// in the URL (filter, sort, desc, group, version, vs: the compared run, vs_key: its table's key when not
// this one, on: the key column), so a link
// reproduces it.

import { h } from "../dom";
import { TablePanel, type PanelState } from "../components/table-panel";
import { readQuery, runHref, setQuery } from "../router";

function readState(query: URLSearchParams, key: string): Partial<PanelState> {
  const step = query.get("step"); // a link from before versions were numbered
  const version = query.get("version");
  const sort = query.get("sort");
  const vs = query.get("vs");
  return {
    filter: query.get("filter") ?? "",
    sort: sort ? { column: sort, descending: query.get("desc") === "1" } : null,
    group: query.get("group") ?? "",
    version: version !== null && /^\d+$/.test(version) ? Number(version) : null,
    step: step !== null && /^\d+$/.test(step) ? Number(step) : null,
    compare: vs ? { runId: vs, key: query.get("vs_key") ?? key, on: query.get("on") ?? "" } : null,
  };
}

function writeState(state: PanelState, key: string): void {
  setQuery({
    filter: state.filter || null,
    sort: state.sort?.column ?? null,
    desc: state.sort?.descending ? "1" : null,
    group: state.group || null,
    version: state.version === null ? null : String(state.version),
    step: state.step === null ? null : String(state.step),
    vs: state.compare?.runId ?? null,
    vs_key: state.compare && state.compare.key !== key ? state.compare.key : null,
    on: state.compare?.on ?? null,
  });
}

export async function tablePage(root: HTMLElement, project: string, runId: string, key: string): Promise<() => void> {
  const panel = new TablePanel(project, runId, key, { tall: true, state: readState(readQuery(), key), onState: (state) => writeState(state, key) });
  root.replaceChildren(
    h(
      "div.table-page",
      {},
      h("div.pane-head", {}, h("h1", { text: key }), h("a", { href: runHref(project, runId), "data-link": true, text: `← run ${runId}` })),
      panel.el,
    ),
  );
  await panel.load();
  return () => panel.destroy();
}
