// The run page's Tables card: the keys the run logged tables under (a selector when there are
// several) and the chosen one's table panel; hidden when the run logged no table.

import { api } from "../api";
import { h } from "../dom";
import { TablePanel } from "./table-panel";

export class TablesView {
  private readonly keySelect = h("select.tp-keys", { title: "The table to show" });
  private readonly body = h("div");
  readonly card = h("section.card.wide.tables-card", { hidden: true }, h("h2", { text: "Tables" }), this.keySelect, this.body);
  private panel: TablePanel | null = null;
  private keys: string[] = [];

  constructor(private readonly project: string, private readonly runId: string) {
    this.keySelect.addEventListener("change", () => void this.show(this.keySelect.value));
  }

  /** The run's table keys; the first is shown (new keys of a live run are added to the selector). */
  async load(): Promise<void> {
    const { keys } = await api.tableKeys(this.project, this.runId);
    if (!keys.length) return;
    if (keys.length === this.keys.length) {
      await this.panel?.refresh();
      return;
    }
    this.keys = keys;
    const current = this.panel?.key ?? keys[0];
    this.keySelect.replaceChildren(...keys.map((key) => h("option", { value: key, text: key, selected: key === current })));
    this.keySelect.hidden = keys.length < 2;
    this.card.hidden = false;
    if (!this.panel) await this.show(current);
  }

  private async show(key: string): Promise<void> {
    this.panel?.destroy();
    this.panel = new TablePanel(this.project, this.runId, key);
    this.body.replaceChildren(this.panel.el);
    await this.panel.load();
  }

  destroy(): void {
    this.panel?.destroy();
  }
}
