// The supervisors' findings across sittings (督导记录汇总), for the centre and district officers
// (theirs only: the API scopes the list). The filter lives in the URL (#/findings?...), so a
// link shows the same list to a colleague; each row opens the sitting at the finding's instant.

import { call } from "./api.js";
import { showInstant } from "./clock.js";
import { L, el, errorNode } from "./dom.js";
import { addStrings, setAttr } from "./i18n.js";

const PAGE_SIZE = 50;
const CATEGORIES = ["substitution", "absent_assessor", "camera_blocked", "off_site", "other"];
const STATUSES = ["open", "final", "withdrawn"];
// The filter's fields, in the URL and in the API's query alike.
const FIELDS = ["district", "institution", "category", "status", "date_from", "date_to", "sitting"];

addStrings({
  "zh-CN": {
    "findingsPage.nav": "督导记录",
    "findingsPage.heading": "督导记录汇总",
    "findingsPage.intro": "外部质量督导员在各场次录像中记录的问题。",
    "findingsPage.scope": "仅显示 {district} 的场次。",
    "findingsPage.filter.legend": "筛选",
    "findingsPage.filter.district": "区县",
    "findingsPage.filter.institution": "鉴定机构",
    "findingsPage.filter.category": "类别",
    "findingsPage.filter.status": "状态",
    "findingsPage.filter.dateFrom": "观察日期从",
    "findingsPage.filter.dateTo": "至",
    "findingsPage.filter.sitting": "场次编号",
    "findingsPage.filter.all": "全部",
    "findingsPage.filter.apply": "筛选",
    "findingsPage.filter.reset": "清除筛选",
    "findingsPage.status.open": "复核中",
    "findingsPage.status.final": "已定稿",
    "findingsPage.status.withdrawn": "已撤回",
    "findingsPage.count": "共 {total} 条，显示第 {first}–{last} 条",
    "findingsPage.empty": "没有符合条件的督导记录。",
    "findingsPage.col.when": "观察时间",
    "findingsPage.col.sitting": "场次",
    "findingsPage.col.institution": "鉴定机构",
    "findingsPage.col.camera": "摄像机",
    "findingsPage.col.category": "类别",
    "findingsPage.col.text": "说明",
    "findingsPage.col.author": "记录人",
    "findingsPage.col.status": "状态",
    "findingsPage.view": "查看录像",
    "findingsPage.viewLabel": "查看录像：{sitting} {when}",
    "findingsPage.previous": "上一页",
    "findingsPage.next": "下一页",
    "findingsPage.pages": "分页",
    "findingsPage.loading": "正在加载督导记录…",
  },
  en: {
    "findingsPage.nav": "Findings",
    "findingsPage.heading": "Supervisors' findings",
    "findingsPage.intro": "What the external quality supervisors noted in the sittings' footage.",
    "findingsPage.scope": "Sittings of {district} only.",
    "findingsPage.filter.legend": "Filter",
    "findingsPage.filter.district": "District",
    "findingsPage.filter.institution": "Institution",
    "findingsPage.filter.category": "Category",
    "findingsPage.filter.status": "Status",
    "findingsPage.filter.dateFrom": "Observed from",
    "findingsPage.filter.dateTo": "to",
    "findingsPage.filter.sitting": "Sitting code",
    "findingsPage.filter.all": "All",
    "findingsPage.filter.apply": "Filter",
    "findingsPage.filter.reset": "Clear the filter",
    "findingsPage.status.open": "under review",
    "findingsPage.status.final": "final",
    "findingsPage.status.withdrawn": "withdrawn",
    "findingsPage.count": "{total} finding(s), showing {first}–{last}",
    "findingsPage.empty": "No findings match.",
    "findingsPage.col.when": "Observed",
    "findingsPage.col.sitting": "Sitting",
    "findingsPage.col.institution": "Institution",
    "findingsPage.col.camera": "Camera",
    "findingsPage.col.category": "Category",
    "findingsPage.col.text": "Text",
    "findingsPage.col.author": "Author",
    "findingsPage.col.status": "Status",
    "findingsPage.view": "View footage",
    "findingsPage.viewLabel": "View footage: {sitting} {when}",
    "findingsPage.previous": "Previous page",
    "findingsPage.next": "Next page",
    "findingsPage.pages": "Pages",
    "findingsPage.loading": "Loading the findings…",
  },
});

export function renderFindings(container, params, me) {
  const view = { alive: true, dispose() { this.alive = false; } };
  const filter = Object.fromEntries(FIELDS.map((field) => [field, params.get(field) ?? ""]));
  const page = Math.max(Number.parseInt(params.get("page") ?? "1", 10) || 1, 1);
  const form = filterForm(filter, me);
  const body = el("div", { id: "findings-page-body", "aria-live": "polite" }, L("findingsPage.loading"));
  container.replaceChildren(
    el(
      "section",
      { "aria-labelledby": "findings-page-heading", class: "findings-page" },
      el("h1", { id: "findings-page-heading" }, L("findingsPage.heading")),
      el("p", { class: "muted" }, L("findingsPage.intro")),
      me.role === "district_officer"
        ? el("p", { class: "notice", id: "findings-page-scope" }, L("findingsPage.scope", { district: me.district ?? "" }))
        : null,
      form.node,
      body,
    ),
  );
  load(view, filter, page, form, body);
  return view;
}

// The list's URL for a filter and page: what the form submits and the pager links to.
function hashFor(filter, page) {
  const query = new URLSearchParams();
  for (const field of FIELDS) if (filter[field]) query.set(field, filter[field]);
  if (page > 1) query.set("page", String(page));
  const text = query.toString();
  return text ? `#/findings?${text}` : "#/findings";
}

async function load(view, filter, page, form, body) {
  const query = new URLSearchParams({
    limit: String(PAGE_SIZE),
    offset: String((page - 1) * PAGE_SIZE),
  });
  for (const field of FIELDS) if (filter[field]) query.set(field, filter[field]);
  try {
    const answer = await call(`/api/v1/findings?${query}`);
    if (!view.alive) return;
    form.offer(answer.institutions);
    body.replaceChildren(results(answer, filter, page));
  } catch (error) {
    if (view.alive) body.replaceChildren(errorNode(error));
  }
}

function select(id, field, value, options) {
  const node = el("select", { id, name: field });
  node.append(el("option", { value: "" }, L("findingsPage.filter.all")));
  for (const [optionValue, label] of options) {
    node.append(el("option", { value: optionValue, selected: optionValue === value }, label));
  }
  return node;
}

function filterForm(filter, me) {
  const fields = {};
  const rows = [];
  const add = (field, labelKey, control) => {
    fields[field] = control;
    rows.push(el("div", { class: "findings-page-field" }, el("label", { for: control.id }, L(labelKey)), control));
  };
  if (me.role === "admin") {
    add("district", "findingsPage.filter.district", select("fp-district", "district", filter.district, []));
  }
  add("institution", "findingsPage.filter.institution", select("fp-institution", "institution", filter.institution, []));
  add(
    "category",
    "findingsPage.filter.category",
    select("fp-category", "category", filter.category, CATEGORIES.map((c) => [c, L(`category.${c}`)])),
  );
  add(
    "status",
    "findingsPage.filter.status",
    select("fp-status", "status", filter.status, STATUSES.map((s) => [s, L(`findingsPage.status.${s}`)])),
  );
  add("date_from", "findingsPage.filter.dateFrom", el("input", { id: "fp-date-from", name: "date_from", type: "date", value: filter.date_from }));
  add("date_to", "findingsPage.filter.dateTo", el("input", { id: "fp-date-to", name: "date_to", type: "date", value: filter.date_to }));
  add(
    "sitting",
    "findingsPage.filter.sitting",
    el("input", { id: "fp-sitting", name: "sitting", autocomplete: "off", value: filter.sitting, size: "16" }),
  );
  const node = el(
    "form",
    { class: "findings-page-filter", id: "findings-filter", role: "search" },
    el(
      "fieldset",
      {},
      el("legend", {}, L("findingsPage.filter.legend")),
      el("div", { class: "findings-page-fields" }, rows),
      el(
        "div",
        { class: "actions" },
        el("button", { type: "submit", class: "primary", id: "fp-apply" }, L("findingsPage.filter.apply")),
        el("a", { href: "#/findings", id: "fp-reset", class: "findings-page-reset" }, L("findingsPage.filter.reset")),
      ),
    ),
  );
  node.addEventListener("submit", (event) => {
    event.preventDefault();
    const chosen = {};
    for (const field of FIELDS) chosen[field] = fields[field] ? fields[field].value.trim() : filter[field];
    location.hash = hashFor(chosen, 1);
  });
  return {
    node,
    // The choices come with the first answer: the institutions (and districts) in scope.
    offer(institutions) {
      const fill = (control, options, value) => {
        control.replaceChildren(el("option", { value: "" }, L("findingsPage.filter.all")));
        for (const [optionValue, label] of options) {
          control.append(el("option", { value: optionValue, selected: optionValue === value }, label));
        }
      };
      if (fields.district) {
        const districts = [...new Set(institutions.map((i) => i.district))].sort();
        fill(fields.district, districts.map((d) => [d, d]), filter.district);
      }
      const shown = filter.district ? institutions.filter((i) => i.district === filter.district) : institutions;
      fill(fields.institution, shown.map((i) => [i.code, `${i.name}（${i.code}）`]), filter.institution);
    },
  };
}

function results(answer, filter, page) {
  if (!answer.findings.length) {
    return el("p", { class: "muted", id: "findings-page-empty" }, L("findingsPage.empty"));
  }
  const first = answer.offset + 1;
  const last = answer.offset + answer.findings.length;
  const head = el(
    "tr",
    {},
    ["when", "sitting", "institution", "camera", "category", "text", "author", "status"].map((key) =>
      el("th", { scope: "col" }, L(`findingsPage.col.${key}`)),
    ),
  );
  const rows = answer.findings.map((finding) => {
    const when = finding.observed_until
      ? `${showInstant(finding.observed_from)}–${showInstant(finding.observed_until, false)}`
      : showInstant(finding.observed_from);
    const at = `#/sittings/${encodeURIComponent(finding.sitting)}?at=${encodeURIComponent(finding.observed_from)}`;
    const view = el("a", { href: at, class: "findings-page-view" }, L("findingsPage.view"));
    setAttr(view, "aria-label", "findingsPage.viewLabel", { sitting: finding.sitting, when });
    return el(
      "tr",
      { dataset: { finding: String(finding.id), sitting: finding.sitting, district: finding.district } },
      el("td", { class: "nowrap" }, when, el("br"), view),
      el("th", { scope: "row" }, el("a", { href: `#/sittings/${encodeURIComponent(finding.sitting)}` }, finding.sitting)),
      el("td", {}, finding.institution_name, el("br"), el("span", { class: "muted small" }, `${finding.institution} · ${finding.district}`)),
      el("td", {}, L(`position.${finding.position}`), el("br"), el("span", { class: "code small" }, finding.camera)),
      el("td", {}, el("span", { class: `badge category category-${finding.category}` }, L(`category.${finding.category}`))),
      el("td", { class: "findings-page-text" }, finding.text),
      el("td", {}, finding.author),
      el(
        "td",
        {},
        el("span", { class: `badge findings-page-status findings-page-status-${finding.status}`, dataset: { status: finding.status } }, L(`findingsPage.status.${finding.status}`)),
      ),
    );
  });
  const pages = Math.ceil(answer.total / answer.limit);
  const pager = el("nav", { class: "findings-page-pager" });
  setAttr(pager, "aria-label", "findingsPage.pages");
  pager.append(
    ...(page > 1 ? [el("a", { href: hashFor(filter, page - 1), rel: "prev" }, L("findingsPage.previous"))] : []),
    el("span", { class: "muted" }, `${page} / ${Math.max(pages, 1)}`),
    ...(page < pages ? [el("a", { href: hashFor(filter, page + 1), rel: "next" }, L("findingsPage.next"))] : []),
  );
  return el(
    "div",
    {},
    el("p", { class: "muted", id: "findings-page-count" }, L("findingsPage.count", { total: answer.total, first, last })),
    el(
      "div",
      { class: "findings-page-scroll" },
      el("table", { class: "grid", id: "findings-page-table" }, el("thead", {}, head), el("tbody", {}, rows)),
    ),
    pages > 1 ? pager : null,
  );
}
