// The API as the page uses it: the bearer token lives in sessionStorage (gone with the tab),
// every error carries the API's message in both languages.

import { t } from "./i18n.js";

const TOKEN_KEY = "examvault.token";

export class ApiError extends Error {
  constructor(status, body) {
    super(body.message ?? `HTTP ${status}`);
    this.status = status;
    this.code = body.code ?? "http_error";
    this.messageEn = body.message ?? `HTTP ${status}`;
    this.messageZh = body.message_zh ?? this.messageEn;
    this.body = body;
  }
}

export function token() {
  return sessionStorage.getItem(TOKEN_KEY);
}

export function forgetToken() {
  sessionStorage.removeItem(TOKEN_KEY);
}

// Set by the app: what to do when the token stops working (back to the login form).
let onUnauthorized = () => {};
export function whenUnauthorized(callback) {
  onUnauthorized = callback;
}

async function errorOf(response) {
  let body = {};
  try {
    body = await response.json();
  } catch {
    body = { code: "http_error", message: `HTTP ${response.status}` };
  }
  return new ApiError(response.status, body);
}

function networkError() {
  return new ApiError(0, {
    code: "network",
    message: t("error.network"),
    message_zh: "无法连接服务器，请检查网络后重试。",
  });
}

// One call; `json` sends a JSON body; `raw` returns the Response itself (for a ZIP stream).
export async function call(path, { method = "GET", json, raw = false } = {}) {
  const headers = { Accept: "application/json" };
  const current = token();
  if (current) headers.Authorization = `Bearer ${current}`;
  let body;
  if (json !== undefined) {
    headers["Content-Type"] = "application/json";
    body = JSON.stringify(json);
  }
  let response;
  try {
    response = await fetch(path, { method, headers, body, cache: "no-store" });
  } catch {
    throw networkError();
  }
  if (!response.ok) {
    const error = await errorOf(response);
    if (response.status === 401 && current) {
      forgetToken();
      onUnauthorized(error);
    }
    throw error;
  }
  if (raw) return response;
  if (response.status === 204) return null;
  return response.json();
}

export async function logIn(username, password) {
  let response;
  try {
    response = await fetch("/api/v1/auth/token", {
      method: "POST",
      headers: { Accept: "application/json" },
      body: new URLSearchParams({ username, password }),
    });
  } catch {
    throw networkError();
  }
  if (!response.ok) throw await errorOf(response);
  const granted = await response.json();
  sessionStorage.setItem(TOKEN_KEY, granted.access_token);
  return granted;
}

export async function logOut() {
  try {
    if (token()) await call("/api/v1/auth/logout", { method: "POST" });
  } finally {
    forgetToken();
  }
}

// A footage URL a <video>/<img> can open without the header (services/footage/links.py).
export async function footageLink(path) {
  const link = await call("/api/v1/footage/links", { method: "POST", json: { url: path } });
  return link.url;
}
