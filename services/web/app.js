// The page's shell: log in, the sittings list, and routing between it and one sitting
// (#/ and #/sittings/CODE), so the browser's back button and bookmarks work.

import { call, logIn, logOut, token, whenUnauthorized } from "./api.js";
import { L, el, errorNode } from "./dom.js";
import { applyLanguage, lang, setLang, setText } from "./i18n.js";
import { showSpan } from "./clock.js";
import { ROUTES, menuFor } from "./routes.js";
import { VERDICTS, flashError, verdictBadge } from "./ui.js";

const state = { me: null, view: null };

const main = () => document.getElementById("main");

// The pages this user's role may open (routes.js), as links in the top bar.
function renderMenu(me) {
  const menu = document.getElementById("pages");
  const entries = me ? menuFor(me.role) : [];
  menu.hidden = entries.length === 0;
  menu.replaceChildren(
    ...(entries.length ? [el("a", { href: "#/" }, L("nav.sittings"))] : []),
    ...entries.map((route) => el("a", { href: route.href }, L(route.nav))),
  );
}

function setSession(me) {
  state.me = me;
  renderMenu(me);
  const who = document.getElementById("who");
  const logout = document.getElementById("logout");
  if (!me) {
    who.hidden = true;
    logout.hidden = true;
    who.replaceChildren();
    return;
  }
  who.replaceChildren(
    el("span", { class: "who-name" }, me.name),
    " · ",
    L(`role.${me.role}`),
  );
  who.hidden = false;
  logout.hidden = false;
}

function leaveView() {
  if (state.view?.dispose) state.view.dispose();
  state.view = null;
}

function renderLogin(noticeKey) {
  leaveView();
  setSession(null);
  const error = el("div", { id: "login-error", "aria-live": "assertive" });
  const username = el("input", {
    id: "login-username",
    name: "username",
    autocomplete: "username",
    required: true,
  });
  const password = el("input", {
    id: "login-password",
    name: "password",
    type: "password",
    autocomplete: "current-password",
    required: true,
  });
  const submit = el("button", { type: "submit", class: "primary", id: "login-submit" });
  setText(submit, "login.submit");
  const form = el(
    "form",
    { class: "login card", id: "login-form", "aria-labelledby": "login-heading" },
    el("h1", { id: "login-heading" }, L("login.heading")),
    el("p", { class: "muted" }, L("login.intro")),
    noticeKey ? el("p", { class: "notice", role: "status" }, L(noticeKey)) : null,
    el("label", { for: "login-username" }, L("login.username")),
    username,
    el("label", { for: "login-password" }, L("login.password")),
    password,
    error,
    submit,
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    error.replaceChildren();
    submit.disabled = true;
    setText(submit, "login.busy");
    try {
      await logIn(username.value.trim(), password.value);
      password.value = "";
      const me = await call("/api/v1/me");
      setSession(me);
      // Back to where the visitor was headed (a bookmarked sitting), else the list.
      const target = location.hash.startsWith("#/sittings/") ? location.hash : "#/";
      if (location.hash === target) route();
      else location.hash = target;
    } catch (failure) {
      error.replaceChildren(errorNode(failure));
      password.select();
    } finally {
      submit.disabled = false;
      setText(submit, "login.submit");
    }
  });
  main().replaceChildren(form);
  username.focus();
}

async function renderList() {
  leaveView();
  const status = el("select", { id: "status-filter" });
  status.append(el("option", { value: "" }, L("list.filter.all")));
  for (const verdict of VERDICTS) {
    status.append(el("option", { value: verdict }, L(`verdict.${verdict}`)));
  }
  const body = el("div", { id: "sittings-body", "aria-live": "polite" }, L("list.loading"));
  const refresh = el("button", { type: "button", id: "refresh" }, L("list.refresh"));
  const section = el(
    "section",
    { "aria-labelledby": "list-heading" },
    el(
      "div",
      { class: "section-head" },
      el("h1", { id: "list-heading" }, L("list.heading")),
      el(
        "div",
        { class: "filters" },
        el("label", { for: "status-filter" }, L("list.filter.status")),
        status,
        refresh,
      ),
    ),
    body,
  );
  main().replaceChildren(section);
  const view = { alive: true, dispose() { this.alive = false; } };
  state.view = view;

  async function load() {
    const query = status.value ? `?status=${encodeURIComponent(status.value)}` : "";
    try {
      const { sittings } = await call(`/api/v1/sittings${query}`);
      if (!view.alive) return;
      body.replaceChildren(sittingsTable(sittings));
    } catch (error) {
      if (view.alive) body.replaceChildren(errorNode(error));
    }
  }
  status.addEventListener("change", load);
  refresh.addEventListener("click", load);
  await load();
}

function sittingsTable(sittings) {
  if (!sittings.length) return el("p", { class: "muted", id: "sittings-empty" }, L("list.empty"));
  const head = el(
    "tr",
    {},
    ["col.code", "col.room", "col.institution", "col.occupation", "col.time", "col.verdict"].map(
      (key) => el("th", { scope: "col" }, L(key)),
    ),
  );
  const rows = sittings.map((sitting) =>
    el(
      "tr",
      { dataset: { sitting: sitting.code } },
      el(
        "th",
        { scope: "row" },
        el("a", { href: `#/sittings/${encodeURIComponent(sitting.code)}` }, sitting.code),
      ),
      el("td", {}, sitting.room, " ", el("span", { class: "muted" }, L(`kind.${sitting.kind}`))),
      el("td", {}, sitting.institution),
      el("td", {}, `${sitting.occupation} / ${sitting.level}`),
      el("td", { class: "nowrap" }, showSpan(sitting.starts_at, sitting.ends_at)),
      el("td", {}, verdictBadge(sitting.status)),
    ),
  );
  return el(
    "div",
    {},
    el("p", { class: "muted" }, L("list.count", { n: sittings.length })),
    el("table", { class: "grid", id: "sittings-table" }, el("thead", {}, head), el("tbody", {}, rows)),
  );
}

async function route() {
  if (!token()) {
    renderLogin();
    return;
  }
  if (!state.me) {
    try {
      setSession(await call("/api/v1/me"));
    } catch {
      renderLogin("login.expired");
      return;
    }
  }
  const route = ROUTES.find((entry) => entry.pattern.test(location.hash));
  if (route && (!route.roles || route.roles.includes(state.me.role))) {
    leaveView();
    state.view = (await route.render(main(), route.pattern.exec(location.hash), state.me)) ?? null;
  } else {
    await renderList();
  }
  main().focus({ preventScroll: true });
}

function boot() {
  applyLanguage();
  document.getElementById("lang-toggle").addEventListener("click", () => {
    setLang(lang() === "zh-CN" ? "en" : "zh-CN");
    document.getElementById("lang-toggle").lang = lang() === "zh-CN" ? "en" : "zh-CN";
  });
  document.getElementById("lang-toggle").lang = lang() === "zh-CN" ? "en" : "zh-CN";
  document.getElementById("logout").addEventListener("click", async () => {
    leaveView();
    try {
      await logOut();
    } catch (error) {
      flashError(error);
    }
    state.me = null;
    history.replaceState(null, "", "#/");
    renderLogin("login.loggedOut");
  });
  whenUnauthorized(() => {
    state.me = null;
    renderLogin("login.expired");
  });
  window.addEventListener("hashchange", () => {
    document.getElementById("flash").replaceChildren();
    route();
  });
  route();
}

boot();
