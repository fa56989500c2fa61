/**
 * The standalone labeling pages (page.html: the list of sets, or one set): read the config the platform wrote
 * into the page, then either mount the labeling widget on one set or list the caller's sets.
 * A file of its own because the pages' CSP runs no inline script.
 */

import { h, mount, progressBar, setProgress } from "./labeler.js";

const ENTITIES = { "&lt;": "<", "&gt;": ">", "&amp;": "&", "&quot;": '"', "&#x27;": "'" };

/** The config: JSON written HTML-escaped into a script element, which the parser leaves as is. */
function readConfig() {
  const text = document.getElementById("himalia-label-config").textContent;
  return JSON.parse(text.replace(/&(lt|gt|amp|quot|#x27);/g, (entity) => ENTITIES[entity]));
}

/** One set of the list: a link to its page, its classes, and how far the caller is. */
function setEntry(labelset, base) {
  const { mine = 0, remaining_for_me: remaining = 0 } = labelset.progress || {};
  const total = mine + remaining;
  const entry = h("li", "himalia-label-set");
  const link = h("a", "himalia-label-set-name", labelset.name);
  link.href = `${base}${encodeURIComponent(labelset.id)}`;
  const about = h("div", "himalia-label-set-about",
    `${labelset.owner} · ${labelset.task === "multi" ? "multi-label" : "single label"} · ` +
    `${(labelset.classes || []).join(", ")}`);
  const bar = progressBar();
  setProgress(bar, mine, total, `${mine} of ${total} labeled by you`);
  const count = h("div", "himalia-label-set-count",
    remaining ? `${mine} labeled by you, ${remaining} left` : `${mine} labeled by you, nothing left`);
  entry.append(link, about, bar, count);
  return entry;
}

function listSets(root, config) {
  const title = h("h1", "himalia-label-heading", "Label sets");
  const who = h("p", "himalia-label-who", `Signed in as ${config.user}`);
  if (!config.labelsets.length) {
    root.replaceChildren(title, who, h("p", "himalia-label-empty",
      "No label set is shared with you yet: its owner shares it with you or your group."));
    return;
  }
  const list = h("ul", "himalia-label-sets");
  list.append(...config.labelsets.map((ls) => setEntry(ls, config.base)));
  root.replaceChildren(title, who, list);
}

const root = document.getElementById("himalia-label-root");
const config = readConfig();
if (config.labelsets) {
  listSets(root, config);
} else {
  mount(root, config);
}
