// A tiny element builder: data from the API only ever becomes text nodes, never HTML.

import { setMessage, tx } from "./i18n.js";

export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (name === "class") node.className = value;
    else if (name === "dataset") Object.assign(node.dataset, value);
    // Through the CSSOM: the page's CSP forbids style attributes, not style properties.
    else if (name === "style") Object.assign(node.style, value);
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else if (value === true) node.setAttribute(name, "");
    else node.setAttribute(name, String(value));
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

// A translated label: `L("key")` or `L("key", {vars})`.
export const L = (key, vars) => tx(key, vars);

// An API error shown in the current language (and switched with it).
export function errorNode(error, tag = "p") {
  const node = el(tag, { class: "error", role: "alert" });
  setMessage(node, error.messageZh ?? String(error), error.messageEn ?? String(error));
  return node;
}

export function showError(container, error) {
  container.replaceChildren(errorNode(error));
}
