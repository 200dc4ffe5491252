// Small pieces the centre's pages share: a labelled field, local date-times read as
// Asia/Shanghai, byte counts, a raw upload with the API's error shape.

import { ApiError, token } from "../api.js";
import { L, el } from "../dom.js";
import { t } from "../i18n.js";

// The page shows and takes wall-clock times in Asia/Shanghai (no daylight saving).
export const SHANGHAI = "+08:00";

let fieldSeq = 0;

// A label above its control; `id` given or made up, so the label always names the control.
export function field(labelKey, control, hintKey) {
  if (!control.id) control.id = `admin-field-${++fieldSeq}`;
  const parts = [el("label", { for: control.id }, L(labelKey)), control];
  if (hintKey) {
    const hint = el("span", { class: "muted small", id: `${control.id}-hint` }, L(hintKey));
    control.setAttribute("aria-describedby", hint.id);
    parts.push(hint);
  }
  return el("div", { class: "admin-field" }, parts);
}

// "2026-12-01T09:00" from <input type=datetime-local> -> RFC 3339 in Asia/Shanghai.
export function localToRfc3339(value) {
  if (!value) return null;
  return `${value.length === 16 ? `${value}:00` : value}${SHANGHAI}`;
}

// Date.now() + hours, as a datetime-local value in Asia/Shanghai.
export function localInput(hoursFromNow = 0) {
  const shifted = new Date(Date.now() + hoursFromNow * 3600_000 + 8 * 3600_000);
  return shifted.toISOString().slice(0, 16);
}

export function showBytes(bytes) {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return `${unit === 0 ? value : value.toFixed(1)} ${units[unit]}`;
}

// POST a file as the request body; errors come back as the API's ApiError (with .body).
export async function upload(path, file, contentType) {
  const headers = { Accept: "application/json", "Content-Type": contentType };
  const current = token();
  if (current) headers.Authorization = `Bearer ${current}`;
  let response;
  try {
    response = await fetch(path, { method: "POST", headers, body: file, cache: "no-store" });
  } catch {
    throw new ApiError(0, {
      code: "network",
      message: t("error.network"),
      message_zh: "无法连接服务器，请检查网络后重试。",
    });
  }
  let body;
  try {
    body = await response.json();
  } catch {
    body = { code: "http_error", message: `HTTP ${response.status}` };
  }
  if (!response.ok) throw new ApiError(response.status, body);
  return body;
}
