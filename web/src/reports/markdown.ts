// A report's text blocks: Markdown (GitHub-flavoured, through `marked`) made safe by DOMPurify
// before it reaches the page. A report is written by anyone with write access and read by
// others (a view token, an exported file), so its HTML is untrusted: no scripts, no event
// handler attributes, no javascript: URLs, no forms or frames; links open in a new tab.

import DOMPurify from "dompurify";
import { Marked } from "marked";

const marked = new Marked({ gfm: true, breaks: false, async: false });

const purify = DOMPurify(window);
purify.addHook("afterSanitizeAttributes", (node) => {
  if (node.tagName === "A" && node.getAttribute("href")) {
    node.setAttribute("target", "_blank");
    node.setAttribute("rel", "noopener noreferrer");
  }
});

/** Markdown as sanitised HTML (a string safe to assign to innerHTML). */
export function markdownToSafeHtml(markdown: string): string {
  const html = marked.parse(markdown) as string;
  return purify.sanitize(html, {
    USE_PROFILES: { html: true },
    FORBID_TAGS: ["style", "form", "input", "button", "textarea", "select", "iframe", "object", "embed"],
    FORBID_ATTR: ["style"],
  });
}

/** An element holding a text block, rendered. */
export function renderMarkdown(markdown: string): HTMLElement {
  const el = document.createElement("div");
  el.className = "report-text";
  el.innerHTML = markdownToSafeHtml(markdown);
  return el;
}
