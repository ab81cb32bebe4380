// "view" on a 3-D file in a list of files (a run's Files card, an artifact version's file browser):
// opens the viewer (web/src/viewer3d.ts) in a row under the file's, and closes it again.

import { h } from "../dom";

/** A row under the file's, spanning `columns`, made (and the file read) only when first opened. */
export function row3d(make: () => HTMLElement, columns: number): () => HTMLTableRowElement {
  return () => h("tr.viewer3d-row", {}, h("td", { colspan: columns }, make()));
}

/** The "view" button: puts the row under its own row, or takes it away. */
export function viewToggle(row: () => HTMLTableRowElement): HTMLButtonElement {
  let shown: HTMLTableRowElement | null = null;
  const button = h("button.file-view", { type: "button", text: "view" });
  button.addEventListener("click", () => {
    if (shown) {
      shown.remove();
      shown = null;
      button.textContent = "view";
      return;
    }
    shown = row();
    button.closest("tr")?.after(shown);
    button.textContent = "close";
  });
  return button;
}
