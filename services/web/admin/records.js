// Pieces the centre's records pages share (retention, machines, ledger): sizes in words, the
// filter state kept in the URL's hash query, and a local wall-clock field read as +08:00.

import { L, el } from "../dom.js";
import { addStrings } from "../i18n.js";

addStrings({
  "zh-CN": {
    "records.bytes": "{n} 字节",
    "records.none": "无",
    "records.loading": "正在加载…",
    "records.previous": "上一页",
    "records.next": "下一页",
    "records.more": "更早的记录",
    "records.page": "第 {from}–{to} 项，共 {total} 项",
  },
  en: {
    "records.bytes": "{n} bytes",
    "records.none": "None",
    "records.loading": "Loading…",
    "records.previous": "Previous",
    "records.next": "Next",
    "records.more": "Older entries",
    "records.page": "Items {from}–{to} of {total}",
  },
});

const UNITS = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];

// "1.4 GiB" beside the exact byte count (as a title), so totals read at a glance.
export function bytesText(n) {
  let value = Number(n);
  let unit = 0;
  while (value >= 1024 && unit < UNITS.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return unit === 0 ? `${value} B` : `${value.toFixed(value < 10 ? 2 : 1)} ${UNITS[unit]}`;
}

export function bytesNode(n) {
  return el("span", { class: "nowrap", title: `${Number(n).toLocaleString("en")} B` }, bytesText(n));
}

// The hash's query ("#/admin/ledger?actor=..."): the filter state a link can share.
export function hashQuery() {
  const at = location.hash.indexOf("?");
  return new URLSearchParams(at < 0 ? "" : location.hash.slice(at + 1));
}

export function setHashQuery(path, params) {
  const query = new URLSearchParams();
  for (const [name, value] of Object.entries(params)) {
    if (value !== undefined && value !== null && value !== "") query.set(name, String(value));
  }
  const text = query.toString();
  const next = text ? `${path}?${text}` : path;
  if (location.hash !== next) history.replaceState(null, "", next);
}

// Today in Asia/Shanghai (the service's zone; no daylight saving), as YYYY-MM-DD.
export function todayLocal() {
  const shifted = new Date(Date.now() + 8 * 3600 * 1000);
  return shifted.toISOString().slice(0, 10);
}

// A <input type="datetime-local"> value ("2026-12-04T10:00") as RFC 3339 in +08:00.
export function localToRfc3339(value) {
  if (!value) return "";
  const withSeconds = value.length === 16 ? `${value}:00` : value;
  return `${withSeconds}+08:00`;
}

export function rfc3339ToLocal(value) {
  if (!value) return "";
  const match = /^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2})/.exec(value);
  return match ? match[1] : "";
}

// A labelled field: <div><label for=id>…</label><control id=id></div>.
export function field(labelKey, control) {
  return el("div", { class: "records-field" }, el("label", { for: control.id }, L(labelKey)), control);
}

export function table(id, headKeys, rows, caption) {
  return el(
    "table",
    { class: "grid compact", id },
    caption ? el("caption", { class: "records-caption" }, caption) : null,
    el("thead", {}, el("tr", {}, headKeys.map((key) => el("th", { scope: "col" }, L(key))))),
    el("tbody", {}, rows),
  );
}
