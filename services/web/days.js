// The day's sittings (#/ and #/?date=...): everyone's list, scoped by the API to what the caller
// may see. The filter state lives in the hash query, so a link can be shared and back/forward
// work; the page re-reads it on every hash change and never trusts it for scope (a district in
// the link that is not the officer's simply finds nothing).

import { call } from "./api.js";
import { L, el, errorNode } from "./dom.js";
import { addStrings, setAttr, setText } from "./i18n.js";
import { parseInstant, showSpan } from "./clock.js";
import { VERDICTS, flashError, verdictBadge } from "./ui.js";

const PAGE_SIZE = 50;
const FILTERS = ["district", "institution", "site", "room_kind", "occupation", "status"];
const SORTS = ["time", "-time", "institution", "verdict"];
// Shown worst first in the counts, as the "verdict" sort orders them.
const COUNT_ORDER = ["missing", "incomplete", "pending", "complete"];
const DAY = /^\d{4}-\d{2}-\d{2}$/;
// The last day-view state in this tab: a bare "#/" (the menu, a sitting's back link) returns
// to it, while a link with a query always shows exactly what it says.
const LAST_KEY = "examvault.days";
const SHANGHAI_MS = 8 * 3600 * 1000;
const POSITION_ORDER = { front: 0, back: 1 };
const byPosition = (a, b) =>
  (POSITION_ORDER[a.position] ?? 9) - (POSITION_ORDER[b.position] ?? 9) ||
  a.camera.localeCompare(b.camera);

addStrings({
  "zh-CN": {
    "days.heading": "场次",
    "days.heading.institution": "本机构场次",
    "days.date": "日期",
    "days.to": "至（可选）",
    "days.today": "今天",
    "days.filters": "筛选",
    "days.district": "区县",
    "days.institution": "鉴定机构",
    "days.site": "鉴定场所",
    "days.roomKind": "考场类型",
    "days.occupation": "职业（工种）",
    "days.verdict": "核验结论",
    "days.sort": "排序",
    "days.sort.time": "按时间（早→晚）",
    "days.sort.-time": "按时间（晚→早）",
    "days.sort.institution": "按鉴定机构",
    "days.sort.verdict": "按结论（问题优先）",
    "days.any": "全部",
    "days.clear": "清除筛选",
    "days.refresh": "刷新",
    "days.csv": "下载 CSV（当前筛选）",
    "days.csv.busy": "正在生成 CSV…",
    "days.counts": "各结论场次数（当前筛选）",
    "days.counts.all": "全部 {n}",
    "days.count.one": "{label} {n}",
    "days.shown": "第 {first}–{last} 个，共 {total} 个场次",
    "days.none": "没有符合条件的场次。",
    "days.loading": "正在加载…",
    "days.prev": "上一页",
    "days.next": "下一页",
    "days.page": "第 {page} / {pages} 页",
    "days.pager": "分页",
    "days.caption.day": "{date} 的场次",
    "days.caption.range": "{from} 至 {to} 的场次",
    "days.col.code": "场次编号",
    "days.col.time": "考核时间",
    "days.col.institution": "鉴定机构",
    "days.col.room": "考场",
    "days.col.occupation": "职业 / 等级",
    "days.col.verdict": "结论",
    "days.col.glance": "问题一览",
    "days.missingMin": "{position} 缺录 {n} 分钟",
    "days.missingSec": "{position} 缺录 {n} 秒",
    "days.noFootage": "{position} 无录像",
    "days.problem": "{position} {kind} {seconds} 秒",
    "days.findings": "督导记录 {n} 条",
    "days.holds": "保全 {n} 项",
    "days.allGood": "无问题",
    "days.notEnded": "考核未结束",
    "days.notJudged": "尚未统计",
    "days.gapLine": "{position} {start}–{end} {cause}，补传截止 {deadline}",
    "days.moreGaps": "另有 {n} 处缺口",
    "days.deadlineOpen": "仍可补传",
    "days.deadlinePassed": "补传期已过",
    "days.whatsMissing": "缺少的录像",
    "days.institutionIntro":
      "下表列出本机构的场次及其录像核验结论。对于缺少录像的场次，请在补传截止时间前由录像主机补传对应时段的录像。本账号不能查看录像。",
  },
  en: {
    "days.heading": "Sittings",
    "days.heading.institution": "Our sittings",
    "days.date": "Date",
    "days.to": "to (optional)",
    "days.today": "Today",
    "days.filters": "Filters",
    "days.district": "District",
    "days.institution": "Institution",
    "days.site": "Site",
    "days.roomKind": "Room kind",
    "days.occupation": "Occupation",
    "days.verdict": "Verdict",
    "days.sort": "Sort",
    "days.sort.time": "By time (earliest first)",
    "days.sort.-time": "By time (latest first)",
    "days.sort.institution": "By institution",
    "days.sort.verdict": "By verdict (problems first)",
    "days.any": "All",
    "days.clear": "Clear filters",
    "days.refresh": "Refresh",
    "days.csv": "Download CSV (current filters)",
    "days.csv.busy": "Preparing CSV…",
    "days.counts": "Sittings per verdict (current filters)",
    "days.counts.all": "All {n}",
    "days.count.one": "{label} {n}",
    "days.shown": "{first}–{last} of {total} sittings",
    "days.none": "No sittings match.",
    "days.loading": "Loading…",
    "days.prev": "Previous",
    "days.next": "Next",
    "days.page": "Page {page} of {pages}",
    "days.pager": "Pages",
    "days.caption.day": "Sittings on {date}",
    "days.caption.range": "Sittings from {from} to {to}",
    "days.col.code": "Sitting",
    "days.col.time": "Time",
    "days.col.institution": "Institution",
    "days.col.room": "Room",
    "days.col.occupation": "Occupation / level",
    "days.col.verdict": "Verdict",
    "days.col.glance": "At a glance",
    "days.missingMin": "{position}: {n} min missing",
    "days.missingSec": "{position}: {n} s missing",
    "days.noFootage": "{position}: no footage",
    "days.problem": "{position}: {kind} {seconds} s",
    "days.findings": "{n} finding(s)",
    "days.holds": "{n} hold(s)",
    "days.allGood": "No problems",
    "days.notEnded": "Not over yet",
    "days.notJudged": "Not yet summarised",
    "days.gapLine": "{position} {start}–{end} {cause}, upload by {deadline}",
    "days.moreGaps": "{n} more gap(s)",
    "days.deadlineOpen": "late upload still accepted",
    "days.deadlinePassed": "upload period over",
    "days.whatsMissing": "Missing footage",
    "days.institutionIntro":
      "Your institution's sittings and their coverage verdicts. Where footage is missing, have the camera host push that time before the upload deadline. This account cannot watch footage.",
  },
});

export function todayInShanghai() {
  return new Date(Date.now() + SHANGHAI_MS).toISOString().slice(0, 10);
}

// The view's state from the hash query; anything malformed falls back to the default.
export function stateFromHash(hash = location.hash) {
  const query = new URLSearchParams(hash.includes("?") ? hash.slice(hash.indexOf("?") + 1) : "");
  const state = { sort: "time", page: 1 };
  const from = query.get("from");
  const to = query.get("to");
  if (from && DAY.test(from) && to && DAY.test(to) && to >= from) {
    state.from = from;
    state.to = to;
  } else {
    const date = query.get("date");
    state.date = date && DAY.test(date) ? date : todayInShanghai();
  }
  for (const name of FILTERS) {
    const value = query.get(name);
    if (value) state[name] = value.slice(0, 100);
  }
  if (state.status && !VERDICTS.includes(state.status)) delete state.status;
  if (state.room_kind && !["theory", "practical"].includes(state.room_kind)) delete state.room_kind;
  const sort = query.get("sort");
  if (SORTS.includes(sort)) state.sort = sort;
  const page = Number(query.get("page"));
  if (Number.isInteger(page) && page > 1) state.page = Math.min(page, 100000);
  return state;
}

export function hashFor(state) {
  const query = new URLSearchParams();
  if (state.from) {
    query.set("from", state.from);
    query.set("to", state.to);
  } else {
    query.set("date", state.date);
  }
  for (const name of FILTERS) if (state[name]) query.set(name, state[name]);
  if (state.sort !== "time") query.set("sort", state.sort);
  if (state.page > 1) query.set("page", String(state.page));
  return `#/?${query}`;
}

function dates(state) {
  const query = new URLSearchParams();
  if (state.from) {
    query.set("from", state.from);
    query.set("to", state.to);
  } else {
    query.set("date", state.date);
  }
  return query;
}

function apiQuery(state, { csv = false } = {}) {
  const query = dates(state);
  for (const name of FILTERS) if (state[name]) query.set(name, state[name]);
  query.set("sort", state.sort);
  if (csv) {
    query.set("format", "csv");
  } else {
    query.set("limit", String(PAGE_SIZE));
    query.set("offset", String((state.page - 1) * PAGE_SIZE));
  }
  return query;
}

function go(state) {
  const next = hashFor(state);
  if (location.hash !== next) location.hash = next;
}

// "02:15" in the API's offset (Asia/Shanghai), "02:15:20" when not on a whole minute (a gap of
// seconds must not read "02:15–02:15"), "12-02 02:26" with the date.
function clockOf(text, withDate = false) {
  const { ms, offsetMin } = parseInstant(text);
  const shifted = new Date(ms + offsetMin * 60000).toISOString();
  const seconds = shifted.slice(17, 19);
  const clock = seconds === "00" ? shifted.slice(11, 16) : shifted.slice(11, 19);
  return withDate ? `${shifted.slice(5, 10)} ${clock}` : clock;
}

function missingText(position, seconds) {
  return seconds < 60
    ? L("days.missingSec", { position, n: Math.round(seconds) })
    : L("days.missingMin", { position, n: Math.round(seconds / 60) });
}

function selectOf(id, labelKey, options, chosen, labelOf) {
  const select = el("select", { id, name: id });
  select.append(el("option", { value: "" }, L("days.any")));
  const values = options.map((option) => (typeof option === "string" ? option : option.code));
  // A value from a shared link that is not among the caller's choices stays visible (and finds
  // nothing), so the page never pretends the filter is something else.
  const all = chosen && !values.includes(chosen) ? [...options, chosen] : options;
  for (const option of all) {
    const value = typeof option === "string" ? option : option.code;
    select.append(el("option", { value, selected: value === chosen }, labelOf(option)));
  }
  return [el("label", { for: id }, L(labelKey)), select];
}

function glanceCell(sitting, me) {
  const cell = el("td", { class: "days-glance" });
  const notes = [];
  if (!sitting.ended) {
    notes.push(el("span", { class: "muted" }, L("days.notEnded")));
  } else if (!sitting.summarised) {
    notes.push(el("span", { class: "muted" }, L("days.notJudged")));
  } else {
    for (const camera of [...sitting.missing].sort(byPosition)) {
      if (camera.missing_seconds <= 0) continue;
      const position = `@position.${camera.position}`;
      notes.push(
        el(
          "span",
          { class: "days-flag days-flag-missing", dataset: { camera: camera.camera } },
          camera.has_footage
            ? missingText(position, camera.missing_seconds)
            : L("days.noFootage", { position }),
        ),
      );
    }
  }
  for (const problem of [...sitting.picture_problems].sort(byPosition)) {
    notes.push(
      el(
        "span",
        { class: "days-flag days-flag-picture" },
        L("days.problem", {
          position: `@position.${problem.position}`,
          kind: `@health.${problem.kind}`,
          seconds: problem.seconds,
        }),
      ),
    );
  }
  if (sitting.open_findings) {
    notes.push(
      el("span", { class: "days-flag days-flag-finding" }, L("days.findings", { n: sitting.open_findings })),
    );
  }
  if (sitting.active_holds) {
    notes.push(
      el("span", { class: "days-flag days-flag-hold" }, L("days.holds", { n: sitting.active_holds })),
    );
  }
  if (!notes.length) notes.push(el("span", { class: "muted" }, L("days.allGood")));
  cell.append(el("div", { class: "days-flags" }, notes));
  if (me.role === "institution" && sitting.ended && sitting.summarised) {
    cell.append(...missingDetail(sitting));
  }
  return cell;
}

// For the institution's technician: exactly which camera lacks which minutes, and until when
// the upload is still accepted ("后置摄像机 02:15–02:17 未收到录像, 补传截止 12-02 02:26").
function missingDetail(sitting) {
  const lines = [];
  const deadline = clockOf(sitting.upload_deadline, true);
  for (const camera of [...sitting.missing].sort(byPosition)) {
    for (const gap of camera.gaps) {
      const crosses = gap.start.slice(0, 10) !== gap.end.slice(0, 10);
      lines.push(
        el(
          "li",
          { class: "days-gap", dataset: { camera: camera.camera } },
          L("days.gapLine", {
            position: `@position.${camera.position}`,
            start: clockOf(gap.start, crosses),
            end: clockOf(gap.end, crosses),
            cause: `@cause.${gap.cause}`,
            deadline,
          }),
        ),
      );
    }
    if (camera.gap_count > camera.gaps.length) {
      lines.push(el("li", { class: "muted" }, L("days.moreGaps", { n: camera.gap_count - camera.gaps.length })));
    }
  }
  if (!lines.length) return [];
  const open = Date.parse(sitting.upload_deadline) > Date.now();
  return [
    el(
      "div",
      { class: "days-missing" },
      el(
        "p",
        { class: "days-missing-head" },
        L("days.whatsMissing"),
        " · ",
        el("span", { class: open ? "days-open" : "days-closed" }, L(open ? "days.deadlineOpen" : "days.deadlinePassed")),
      ),
      el("ul", {}, lines),
    ),
  ];
}

function table(body, me, caption) {
  const head = el(
    "tr",
    {},
    [
      "days.col.code",
      "days.col.time",
      "days.col.institution",
      "days.col.room",
      "days.col.occupation",
      "days.col.verdict",
      "days.col.glance",
    ].map((key) => el("th", { scope: "col" }, L(key))),
  );
  const rows = body.sittings.map((sitting) =>
    el(
      "tr",
      { dataset: { sitting: sitting.code, verdict: sitting.status } },
      el(
        "th",
        { scope: "row" },
        el("a", { href: `#/sittings/${encodeURIComponent(sitting.code)}`, class: "code" }, sitting.code),
      ),
      el("td", { class: "nowrap" }, showSpan(sitting.starts_at, sitting.ends_at)),
      el(
        "td",
        {},
        el("div", {}, sitting.institution_name),
        el("div", { class: "muted small" }, el("span", { class: "code" }, sitting.institution), " · ", sitting.district),
      ),
      el(
        "td",
        {},
        el("div", {}, sitting.room_name ?? sitting.room, " ", el("span", { class: "muted" }, L(`kind.${sitting.room_kind}`))),
        el("div", { class: "muted small" }, el("span", { class: "code" }, sitting.room), " · ", sitting.site_address),
      ),
      el("td", {}, `${sitting.occupation} / ${sitting.level}`),
      el("td", {}, verdictBadge(sitting.status)),
      glanceCell(sitting, me),
    ),
  );
  if (!rows.length) {
    rows.push(el("tr", { class: "days-empty-row" }, el("td", { colspan: 7 }, L("days.none"))));
  }
  return el(
    "table",
    { class: "grid days-table", id: "sittings-table" },
    el("caption", { class: "days-caption" }, caption),
    el("thead", {}, head),
    el("tbody", {}, rows),
  );
}

async function downloadCsv(state, button) {
  button.disabled = true;
  setText(button, "days.csv.busy");
  try {
    const response = await call(`/api/v1/sittings?${apiQuery(state, { csv: true })}`, { raw: true });
    const blob = await response.blob();
    const url = URL.createObjectURL(blob);
    const name = state.from ? `sittings-${state.from}-${state.to}.csv` : `sittings-${state.date}.csv`;
    const link = el("a", { href: url, download: name, hidden: true });
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10000);
  } catch (error) {
    flashError(error);
  } finally {
    button.disabled = false;
    setText(button, "days.csv");
  }
}

// Draws the day view into `main`; returns the view, whose update() re-reads the hash in place
// (app.js calls it on hash changes, so focus stays on the control that changed).
export async function renderDays(main, me) {
  const view = { kind: "days", alive: true, seq: 0, choicesKey: null, choices: null };
  view.dispose = () => {
    view.alive = false;
  };

  const heading = el("h1", { id: "days-heading" }, L(me.role === "institution" ? "days.heading.institution" : "days.heading"));
  const controls = el("form", { class: "days-controls", id: "days-controls", "aria-label": "filters" });
  setAttr(controls, "aria-label", "days.filters");
  const counts = el("div", { class: "days-counts", id: "days-counts", role: "group" });
  setAttr(counts, "aria-label", "days.counts");
  const status = el("p", { class: "muted", id: "days-status", "aria-live": "polite" }, L("days.loading"));
  const results = el("div", { id: "days-results" });
  const pager = el("nav", { class: "days-pager", id: "days-pager" });
  setAttr(pager, "aria-label", "days.pager");
  const intro =
    me.role === "institution" ? el("p", { class: "notice", id: "days-intro" }, L("days.institutionIntro")) : null;
  main.replaceChildren(
    el(
      "section",
      { "aria-labelledby": "days-heading", class: "days" },
      el("div", { class: "section-head" }, heading),
      intro,
      controls,
      counts,
      status,
      results,
      pager,
    ),
  );

  function drawControls(state, choices) {
    const focused = document.activeElement?.id;
    const date = el("input", { type: "date", id: "days-date", name: "date", value: state.from ?? state.date, required: true });
    const to = el("input", { type: "date", id: "days-to", name: "to", value: state.to ?? "" });
    const today = el("button", { type: "button", id: "days-today" }, L("days.today"));
    const sort = el("select", { id: "days-sort", name: "sort" });
    for (const option of SORTS) sort.append(el("option", { value: option, selected: option === state.sort }, L(`days.sort.${option}`)));
    const clear = el("button", { type: "button", id: "days-clear" }, L("days.clear"));
    const refresh = el("button", { type: "button", id: "days-refresh" }, L("days.refresh"));
    const csv = el("button", { type: "button", id: "days-csv" }, L("days.csv"));
    const kindLabel = (kind) => L(`kind.${kind}`);
    controls.replaceChildren(
      el("div", { class: "days-field" }, el("label", { for: "days-date" }, L("days.date")), date),
      el("div", { class: "days-field" }, el("label", { for: "days-to" }, L("days.to")), to),
      el("div", { class: "days-field days-field-button" }, today),
      ...[
        ["days-district", "days.district", choices.districts, state.district, (d) => d],
        [
          "days-institution",
          "days.institution",
          choices.institutions,
          state.institution,
          (i) => (typeof i === "string" ? i : `${i.name}（${i.code}）`),
        ],
        ["days-site", "days.site", choices.sites, state.site, (s) => (typeof s === "string" ? s : `${s.address}（${s.code}）`)],
        ["days-room_kind", "days.roomKind", choices.room_kinds, state.room_kind, kindLabel],
        ["days-occupation", "days.occupation", choices.occupations, state.occupation, (o) => o],
        ["days-verdict", "days.verdict", VERDICTS, state.status, (v) => L(`verdict.${v}`)],
      ].map(([id, key, options, chosen, labelOf]) => el("div", { class: "days-field" }, ...selectOf(id, key, options, chosen, labelOf))),
      el("div", { class: "days-field" }, el("label", { for: "days-sort" }, L("days.sort")), sort),
      el("div", { class: "days-field days-field-button" }, refresh, clear, csv),
    );

    const change = (patch) => go({ ...stateFromHash(), ...patch, page: 1 });
    date.addEventListener("change", () => {
      if (!DAY.test(date.value)) return;
      const current = stateFromHash();
      if (current.to && current.to >= date.value) change({ from: date.value, to: current.to, date: undefined });
      else change({ date: date.value, from: undefined, to: undefined });
    });
    to.addEventListener("change", () => {
      const first = date.value;
      if (to.value && DAY.test(to.value) && to.value >= first) change({ from: first, to: to.value, date: undefined });
      else change({ date: first, from: undefined, to: undefined });
    });
    today.addEventListener("click", () => change({ date: todayInShanghai(), from: undefined, to: undefined }));
    for (const name of FILTERS) {
      const select = controls.querySelector(name === "status" ? "#days-verdict" : `#days-${name}`);
      select.addEventListener("change", () => change({ [name]: select.value || undefined }));
    }
    sort.addEventListener("change", () => change({ sort: sort.value }));
    clear.addEventListener("click", () => {
      const current = stateFromHash();
      go({ date: current.date, from: current.from, to: current.to, sort: current.sort, page: 1 });
    });
    csv.addEventListener("click", () => downloadCsv(stateFromHash(), csv));
    refresh.addEventListener("click", () => {
      view.choicesKey = null;
      view.update();
    });
    controls.addEventListener("submit", (event) => event.preventDefault());
    if (focused) {
      const again = document.getElementById(focused);
      if (again && controls.contains(again)) again.focus();
    }
  }

  function drawCounts(state, body) {
    const all = Object.values(body.counts).reduce((a, b) => a + b, 0);
    const chip = (value, label) => {
      const button = el(
        "button",
        {
          type: "button",
          class: `days-count ${value ? `verdict-${value}` : ""}`,
          "aria-pressed": String((state.status ?? "") === value),
          dataset: { verdict: value || "all" },
        },
        label,
      );
      button.addEventListener("click", () => go({ ...stateFromHash(), status: value || undefined, page: 1 }));
      return button;
    };
    counts.replaceChildren(
      chip("", L("days.counts.all", { n: all })),
      ...COUNT_ORDER.map((verdict) =>
        chip(verdict, L("days.count.one", { label: `@verdict.${verdict}`, n: body.counts[verdict] ?? 0 })),
      ),
    );
  }

  function drawPager(state, body) {
    const pages = Math.max(1, Math.ceil(body.total / PAGE_SIZE));
    const prev = el("button", { type: "button", id: "days-prev", disabled: state.page <= 1 }, L("days.prev"));
    const next = el("button", { type: "button", id: "days-next", disabled: state.page >= pages }, L("days.next"));
    prev.addEventListener("click", () => go({ ...stateFromHash(), page: state.page - 1 }));
    next.addEventListener("click", () => go({ ...stateFromHash(), page: state.page + 1 }));
    pager.replaceChildren(prev, el("span", { id: "days-page" }, L("days.page", { page: state.page, pages })), next);
    pager.hidden = body.total <= PAGE_SIZE && state.page === 1;
  }

  view.update = async () => {
    const last = sessionStorage.getItem(LAST_KEY);
    if (!location.hash.includes("?") && last) history.replaceState(null, "", last);
    const state = stateFromHash();
    sessionStorage.setItem(LAST_KEY, hashFor(state));
    const seq = ++view.seq;
    const key = dates(state).toString();
    try {
      if (view.choicesKey !== key) {
        view.choices = await call(`/api/v1/sitting-choices?${key}`);
        view.choicesKey = key;
      }
      if (!view.alive || seq !== view.seq) return;
      drawControls(state, view.choices);
      setText(status, "days.loading");
      const body = await call(`/api/v1/sittings?${apiQuery(state)}`);
      if (!view.alive || seq !== view.seq) return;
      drawCounts(state, body);
      const caption = state.from
        ? L("days.caption.range", { from: state.from, to: state.to })
        : L("days.caption.day", { date: state.date });
      if (!body.sittings.length) {
        setText(status, "days.none");
      } else {
        const first = body.offset + 1;
        setText(status, "days.shown", { first, last: body.offset + body.sittings.length, total: body.total });
      }
      results.replaceChildren(table(body, me, caption));
      drawPager(state, body);
    } catch (error) {
      if (view.alive && seq === view.seq) {
        status.replaceChildren();
        results.replaceChildren(errorNode(error));
      }
    }
  };
  await view.update();
  return view;
}
