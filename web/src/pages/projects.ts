import { api } from "../api";
import { h } from "../dom";
import { projectHref, registriesHref } from "../router";

export async function projectsPage(root: HTMLElement): Promise<() => void> {
  root.replaceChildren(h("p.loading", { text: "Loading projects…" }));
  const { projects } = await api.projects();
  const list = projects.length
    ? h(
        "ul.projects",
        {},
        ...projects.map((p) =>
          h("li", {}, h("a", { href: projectHref(p.name), "data-link": true, text: p.name }), h("span.count", { text: `${p.runs} runs` })),
        ),
      )
    : h("div.empty", {}, h("p", { text: "No runs yet." }), h("p", {}, "Record one with ", h("code", { text: "tracklet demo" }), "."));
  root.replaceChildren(
    h("section.page", {}, h("h1", { text: "Projects" }), list, h("p", {}, h("a.registry-link", { href: registriesHref, "data-link": true, text: "Model registry →" }))),
  );
  return () => {};
}
