// A table page (/projects/<p>/runs/<id>/tables/<key>): one logged table filling the page, with the
// table panel's sort, filter, group, version and compare (components/table-panel.ts).

import { h } from "../dom";
import { TablePanel } from "../components/table-panel";
import { runHref } from "../router";

export async function tablePage(root: HTMLElement, project: string, runId: string, key: string): Promise<() => void> {
  const panel = new TablePanel(project, runId, key, { tall: true });
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
