// The centre's retention page (保存期限与清理): the purge plan for a chosen day (what goes, how
// much, why; what holds keep), the last purge runs and their tombstones. Read only: the purge
// is a job (examvault retention purge --execute, or the daily schedule), never a button here.

import { call } from "../api.js";
import { showInstant, showSpan } from "../clock.js";
import { L, el, errorNode } from "../dom.js";
import { addStrings } from "../i18n.js";
import { bytesNode, field, hashQuery, setHashQuery, table, todayLocal } from "./records.js";

addStrings({
  "zh-CN": {
    "retention.nav": "保存与清理",
    "retention.heading": "保存期限与清理计划",
    "retention.readOnly":
      "本页只读：清理由定时任务或命令 examvault retention purge --execute 执行，页面不提供删除操作。",
    "retention.date": "清理日期",
    "retention.show": "查看计划",
    "retention.plan": "{date} 的清理计划",
    "retention.asOf": "计划时点",
    "retention.goes": "将清除",
    "retention.count": "{n} 个录像片段",
    "retention.rule": "规则",
    "retention.ruleText":
      "录像片段的到期时间为以下时间中最晚者所在当地日期结束时：录像自身结束后 {years} 个日历年，以及其涉及的每个场次（含前后余量）结束后 {years} 个日历年；被保全的不清除。",
    "retention.expiries": "到期时间范围",
    "retention.heldTotal": "因保全保留",
    "retention.nothing": "该日没有到期的录像。",
    "retention.groups": "按摄像机与到期日分组",
    "retention.col.camera": "摄像机",
    "retention.col.expires": "到期时间",
    "retention.col.segments": "片段数",
    "retention.col.bytes": "大小",
    "retention.col.span": "录像时段",
    "retention.col.why": "到期依据",
    "retention.why.sitting": "场次 {codes} 结束后 {years} 年",
    "retention.why.segment_end": "录像自身结束后 {years} 年（未涉及更晚结束的场次）",
    "retention.held": "因保全保留的录像",
    "retention.heldNone": "没有因保全而保留的到期录像。",
    "retention.col.segment": "片段",
    "retention.col.holds": "保全",
    "retention.hold": "保全 #{id}：{reason}",
    "retention.case": "案号 {case}",
    "retention.placed": "{by} 于 {at} 设立",
    "retention.heldMore": "仅显示前 {shown} 个，共 {total} 个。",
    "retention.runs": "最近的清理运行",
    "retention.runsNone": "尚未运行过清理。",
    "retention.col.started": "开始",
    "retention.col.actor": "执行者",
    "retention.col.status": "状态",
    "retention.col.planned": "计划",
    "retention.col.purged": "已清除",
    "retention.col.finished": "结束",
    "retention.col.run": "运行编号",
    "retention.status.running": "进行中",
    "retention.status.completed": "已完成",
    "retention.status.stopped": "已停止（存储故障）",
    "retention.status.interrupted": "被中断",
    "retention.tombstones": "墓碑记录（已清除录像的凭证）",
    "retention.search": "SHA-256 前缀、片段号或存储键",
    "retention.searchRun": "运行编号",
    "retention.searchCamera": "摄像机编号",
    "retention.find": "查找",
    "retention.tombstonesNone": "没有符合条件的墓碑记录。",
    "retention.col.sha": "SHA-256",
    "retention.col.purgedAt": "清除时间",
    "retention.col.blob": "文件删除",
    "retention.blobPending": "待下次运行删除",
  },
  en: {
    "retention.nav": "Retention",
    "retention.heading": "Retention and the purge plan",
    "retention.readOnly":
      "Read only: the purge runs as a job (the daily schedule, or examvault retention purge --execute); this page deletes nothing.",
    "retention.date": "Purge date",
    "retention.show": "Show plan",
    "retention.plan": "Purge plan for {date}",
    "retention.asOf": "As of",
    "retention.goes": "Goes",
    "retention.count": "{n} segments",
    "retention.rule": "Rule",
    "retention.ruleText":
      "A segment expires at the end of the local day that is {years} calendar years after the latest of its own end and the end of every sitting it touches (margins included); held segments never go.",
    "retention.expiries": "Expiries",
    "retention.heldTotal": "Kept by holds",
    "retention.nothing": "Nothing expires by that day.",
    "retention.groups": "By camera and expiry",
    "retention.col.camera": "Camera",
    "retention.col.expires": "Expires",
    "retention.col.segments": "Segments",
    "retention.col.bytes": "Size",
    "retention.col.span": "Footage",
    "retention.col.why": "Why then",
    "retention.why.sitting": "{years} years after sitting {codes} ended",
    "retention.why.segment_end": "{years} years after the footage's own end (no later sitting)",
    "retention.held": "Kept by holds",
    "retention.heldNone": "No expired footage is kept by a hold.",
    "retention.col.segment": "Segment",
    "retention.col.holds": "Holds",
    "retention.hold": "Hold #{id}: {reason}",
    "retention.case": "case {case}",
    "retention.placed": "placed by {by} at {at}",
    "retention.heldMore": "The first {shown} of {total} are shown.",
    "retention.runs": "Last purge runs",
    "retention.runsNone": "No purge has run yet.",
    "retention.col.started": "Started",
    "retention.col.actor": "By",
    "retention.col.status": "Status",
    "retention.col.planned": "Planned",
    "retention.col.purged": "Purged",
    "retention.col.finished": "Finished",
    "retention.col.run": "Run",
    "retention.status.running": "running",
    "retention.status.completed": "completed",
    "retention.status.stopped": "stopped (store failing)",
    "retention.status.interrupted": "interrupted",
    "retention.tombstones": "Tombstones (what purged footage was)",
    "retention.search": "SHA-256 prefix, segment id or key",
    "retention.searchRun": "Run id",
    "retention.searchCamera": "Camera code",
    "retention.find": "Find",
    "retention.tombstonesNone": "No tombstone matches.",
    "retention.col.sha": "SHA-256",
    "retention.col.purgedAt": "Purged",
    "retention.col.blob": "Bytes deleted",
    "retention.blobPending": "with the next run",
  },
});

const PATH = "#/admin/retention";
const GROUPS_PAGE = 50;
const RUNS_PAGE = 10;
const TOMBSTONES_PAGE = 25;

export function renderRetention(main) {
  const view = { alive: true, dispose() { this.alive = false; } };
  const query = hashQuery();
  const state = {
    date: /^\d{4}-\d{2}-\d{2}$/.test(query.get("date") ?? "") ? query.get("date") : todayLocal(),
    offset: Number(query.get("offset") ?? 0) || 0,
    runsOffset: 0,
  };
  const date = el("input", { id: "retention-date", type: "date", value: state.date, required: true });
  const form = el(
    "form",
    { class: "records-filters", id: "retention-form" },
    field("retention.date", date),
    el("button", { type: "submit", class: "primary" }, L("retention.show")),
  );
  const planBox = el("div", { id: "retention-plan", "aria-live": "polite" });
  const runsBox = el("div", { id: "retention-runs" });
  const tombstoneBox = el("div", { id: "retention-tombstones" });
  main.replaceChildren(
    el(
      "section",
      { "aria-labelledby": "retention-heading" },
      el("h1", { id: "retention-heading" }, L("retention.heading")),
      el("p", { class: "notice", id: "retention-readonly" }, L("retention.readOnly")),
      form,
      planBox,
    ),
    el(
      "section",
      { "aria-labelledby": "retention-runs-heading" },
      el("h2", { id: "retention-runs-heading" }, L("retention.runs")),
      runsBox,
    ),
    el(
      "section",
      { "aria-labelledby": "retention-tombstones-heading" },
      el("h2", { id: "retention-tombstones-heading" }, L("retention.tombstones")),
      tombstoneForm(tombstoneBox, view),
      tombstoneBox,
    ),
  );
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    state.date = date.value || todayLocal();
    state.offset = 0;
    loadPlan(planBox, state, view);
  });
  loadPlan(planBox, state, view);
  loadRuns(runsBox, state, view);
  return view;
}

async function loadPlan(box, state, view) {
  setHashQuery(PATH, { date: state.date, offset: state.offset || "" });
  box.replaceChildren(el("p", { class: "muted" }, L("records.loading")));
  let plan;
  try {
    plan = await call(
      `/api/v1/retention/plan?date=${encodeURIComponent(state.date)}&offset=${state.offset}&limit=${GROUPS_PAGE}`,
    );
  } catch (error) {
    if (view.alive) box.replaceChildren(errorNode(error));
    return;
  }
  if (!view.alive) return;
  const years = plan.retention_years;
  const summary = el(
    "dl",
    { class: "meta", id: "retention-summary" },
    el("dt", {}, L("retention.asOf")),
    el("dd", {}, showInstant(plan.as_of)),
    el("dt", {}, L("retention.goes")),
    el("dd", { id: "retention-goes" }, L("retention.count", { n: plan.segments }), " · ", bytesNode(plan.bytes)),
    el("dt", {}, L("retention.expiries")),
    el(
      "dd",
      {},
      plan.oldest_expiry ? `${showInstant(plan.oldest_expiry)} – ${showInstant(plan.newest_expiry)}` : L("records.none"),
    ),
    el("dt", {}, L("retention.heldTotal")),
    el("dd", { id: "retention-held-total" }, L("retention.count", { n: plan.held_segments }), " · ", bytesNode(plan.held_bytes)),
  );
  const parts = [
    el("h2", { id: "retention-plan-heading" }, L("retention.plan", { date: plan.date })),
    summary,
    el("p", { class: "small muted" }, el("strong", {}, L("retention.rule")), "：", L("retention.ruleText", { years })),
  ];
  if (!plan.groups.length) {
    parts.push(el("p", { class: "muted", id: "retention-nothing" }, L("retention.nothing")));
  } else {
    parts.push(
      el("h3", {}, L("retention.groups")),
      table(
        "retention-groups",
        ["retention.col.camera", "retention.col.expires", "retention.col.segments", "retention.col.bytes", "retention.col.span", "retention.col.why"],
        plan.groups.map((group) =>
          el(
            "tr",
            {},
            el("th", { scope: "row", class: "code" }, group.camera),
            el("td", { class: "nowrap" }, showInstant(group.expires_at)),
            el("td", { class: "num" }, group.segments),
            el("td", { class: "num" }, bytesNode(group.bytes)),
            el("td", { class: "nowrap" }, showSpan(group.first_start, group.last_end)),
            el(
              "td",
              {},
              group.anchor === "sitting"
                ? L("retention.why.sitting", { codes: group.sittings.join("、"), years })
                : L("retention.why.segment_end", { years }),
            ),
          ),
        ),
      ),
      pager(plan.offset, plan.groups.length, plan.groups_total, GROUPS_PAGE, (offset) => {
        state.offset = offset;
        loadPlan(box, state, view);
      }),
    );
  }
  parts.push(el("h3", {}, L("retention.held")));
  if (!plan.held.length) {
    parts.push(el("p", { class: "muted" }, L("retention.heldNone")));
  } else {
    parts.push(
      table(
        "retention-held",
        ["retention.col.segment", "retention.col.camera", "retention.col.span", "retention.col.bytes", "retention.col.expires", "retention.col.holds"],
        plan.held.map((held) =>
          el(
            "tr",
            { dataset: { segment: held.segment } },
            el("th", { scope: "row" }, `#${held.segment}`),
            el("td", { class: "code" }, held.camera),
            el("td", { class: "nowrap" }, showSpan(held.start, held.end)),
            el("td", { class: "num" }, bytesNode(held.size)),
            el("td", { class: "nowrap" }, showInstant(held.expires_at)),
            el(
              "td",
              {},
              el(
                "ul",
                { class: "retention-holds" },
                held.holds.map((hold) =>
                  el(
                    "li",
                    {},
                    el("span", { class: "badge retention-hold-badge" }, L("retention.hold", { id: hold.id, reason: hold.reason })),
                    hold.case_reference ? [" ", L("retention.case", { case: hold.case_reference })] : null,
                    el("br"),
                    el("span", { class: "small muted" }, L("retention.placed", { by: hold.placed_by, at: showInstant(hold.placed_at) })),
                  ),
                ),
              ),
            ),
          ),
        ),
      ),
    );
    if (plan.held_segments > plan.held.length) {
      parts.push(el("p", { class: "small muted" }, L("retention.heldMore", { shown: plan.held.length, total: plan.held_segments })));
    }
  }
  box.replaceChildren(...parts.filter(Boolean));
}

function pager(offset, shown, total, size, go) {
  if (total <= size) return null;
  const previous = el("button", { type: "button", class: "small-button", disabled: offset === 0 }, L("records.previous"));
  const next = el("button", { type: "button", class: "small-button", disabled: offset + shown >= total }, L("records.next"));
  previous.addEventListener("click", () => go(Math.max(0, offset - size)));
  next.addEventListener("click", () => go(offset + size));
  return el(
    "div",
    { class: "records-pager" },
    previous,
    el("span", { class: "muted" }, L("records.page", { from: offset + 1, to: offset + shown, total })),
    next,
  );
}

function statusBadge(status) {
  const known = ["running", "completed", "stopped", "interrupted"].includes(status) ? status : "running";
  return el("span", { class: `badge retention-status-${known}`, dataset: { status } }, L(`retention.status.${known}`));
}

async function loadRuns(box, state, view) {
  box.replaceChildren(el("p", { class: "muted" }, L("records.loading")));
  let answer;
  try {
    answer = await call(`/api/v1/retention/runs?offset=${state.runsOffset}&limit=${RUNS_PAGE}`);
  } catch (error) {
    if (view.alive) box.replaceChildren(errorNode(error));
    return;
  }
  if (!view.alive) return;
  if (!answer.runs.length) {
    box.replaceChildren(el("p", { class: "muted" }, L("retention.runsNone")));
    return;
  }
  box.replaceChildren(
    ...[
    table(
      "retention-runs-table",
      ["retention.col.started", "retention.col.actor", "retention.col.status", "retention.col.planned", "retention.col.purged", "retention.col.finished", "retention.col.run"],
      answer.runs.map((run) =>
        el(
          "tr",
          { dataset: { run: run.id } },
          el("td", { class: "nowrap" }, showInstant(run.started_at)),
          el("td", {}, run.actor),
          el("td", {}, statusBadge(run.status), run.stop_reason ? el("div", { class: "small muted" }, run.stop_reason) : null),
          el("td", { class: "num" }, run.planned, " · ", bytesNode(run.planned_bytes)),
          el("td", { class: "num" }, run.purged, " · ", bytesNode(run.purged_bytes)),
          el("td", { class: "nowrap" }, run.finished_at ? showInstant(run.finished_at) : "—"),
          el("td", { class: "code small" }, run.id),
        ),
      ),
    ),
    pager(answer.offset, answer.runs.length, answer.total, RUNS_PAGE, (offset) => {
      state.runsOffset = offset;
      loadRuns(box, state, view);
    }),
    ].filter(Boolean),
  );
}

function tombstoneForm(box, view) {
  const q = el("input", { id: "tombstone-q", type: "search", maxlength: 400 });
  const run = el("input", { id: "tombstone-run", maxlength: 36 });
  const camera = el("input", { id: "tombstone-camera", maxlength: 64 });
  const form = el(
    "form",
    { class: "records-filters", id: "tombstone-form", role: "search", "aria-label": "tombstones" },
    field("retention.search", q),
    field("retention.searchRun", run),
    field("retention.searchCamera", camera),
    el("button", { type: "submit" }, L("retention.find")),
  );
  const search = () => ({ q: q.value.trim(), run: run.value.trim(), camera: camera.value.trim() });
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    loadTombstones(box, search(), null, view, false);
  });
  queueMicrotask(() => loadTombstones(box, search(), null, view, false));
  return form;
}

async function loadTombstones(box, filters, before, view, append) {
  const params = new URLSearchParams({ limit: String(TOMBSTONES_PAGE) });
  for (const [name, value] of Object.entries(filters)) if (value) params.set(name, value);
  if (before) params.set("before", String(before));
  let answer;
  try {
    answer = await call(`/api/v1/retention/tombstones?${params}`);
  } catch (error) {
    if (view.alive) box.replaceChildren(errorNode(error));
    return;
  }
  if (!view.alive) return;
  const rows = answer.tombstones.map((tomb) =>
    el(
      "tr",
      { dataset: { tombstone: tomb.id } },
      el("th", { scope: "row" }, `#${tomb.segment}`),
      el("td", { class: "code" }, tomb.camera),
      el("td", { class: "nowrap" }, showSpan(tomb.start, tomb.end)),
      el("td", { class: "num" }, bytesNode(tomb.size)),
      el("td", { class: "code small", title: tomb.sha256 }, `${tomb.sha256.slice(0, 16)}…`),
      el("td", { class: "nowrap" }, showInstant(tomb.purged_at)),
      el("td", { class: "nowrap" }, tomb.blob_deleted_at ? showInstant(tomb.blob_deleted_at) : L("retention.blobPending")),
      el("td", { class: "code small" }, tomb.run.slice(0, 8)),
    ),
  );
  let tbody = box.querySelector("tbody");
  if (!append || !tbody) {
    if (!rows.length) {
      box.replaceChildren(el("p", { class: "muted", id: "tombstones-none" }, L("retention.tombstonesNone")));
      return;
    }
    box.replaceChildren(
      table(
        "retention-tombstones-table",
        ["retention.col.segment", "retention.col.camera", "retention.col.span", "retention.col.bytes", "retention.col.sha", "retention.col.purgedAt", "retention.col.blob", "retention.col.run"],
        rows,
      ),
    );
    tbody = box.querySelector("tbody");
  } else {
    tbody.append(...rows);
  }
  box.querySelector(".records-more")?.remove();
  if (answer.next_before) {
    const more = el("button", { type: "button", class: "small-button records-more" }, L("records.more"));
    more.addEventListener("click", () => loadTombstones(box, filters, answer.next_before, view, true));
    box.append(more);
  }
}
