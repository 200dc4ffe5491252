// The centre's ledger page (台账): its length, the latest signed checkpoint and its age, the
// witnesses' cosignatures, the last recorded checks with a bounded check of the newest entries
// (a full linear verify of a 10^7-entry ledger stays `examvault ledger verify`), and the search
// of who did what: who watched which footage when. The filters live in the URL.

import { call } from "../api.js";
import { showInstant } from "../clock.js";
import { L, el, errorNode } from "../dom.js";
import { addStrings } from "../i18n.js";
import { flashError } from "../ui.js";
import { field, hashQuery, localToRfc3339, rfc3339ToLocal, setHashQuery, table } from "./records.js";

addStrings({
  "zh-CN": {
    "ledger.nav": "台账",
    "ledger.heading": "台账（防篡改记录）",
    "ledger.status": "台账状态",
    "ledger.size": "条目数",
    "ledger.checkpoint": "最新签名检查点",
    "ledger.checkpointNone": "尚无检查点",
    "ledger.checkpointLine": "覆盖第 1–{size} 条 · 签名于 {at}",
    "ledger.ago": "前",
    "ledger.unsigned": "其后 {n} 条尚未被检查点覆盖",
    "ledger.root": "根哈希",
    "ledger.treeRoot": "存储树与检查点",
    "ledger.treeOk": "一致：存储的默克尔树在第 {size} 条处给出与签名检查点相同的根",
    "ledger.treeBad": "不一致：{problem}",
    "ledger.witnesses": "见证方副署",
    "ledger.witnessesNone": "未配置见证方（EXAMVAULT_WITNESSES）",
    "ledger.witnessSigned": "已副署最新检查点（{at}）",
    "ledger.witnessBehind": "最近副署至第 {size} 条",
    "ledger.witnessNever": "尚未副署",
    "ledger.lastFull": "最近一次完整校验",
    "ledger.lastRecent": "最近一次近期条目检查",
    "ledger.neverChecked": "尚无记录",
    "ledger.checkOk": "通过：第 {first}–{last} 条（{by}，{at}）",
    "ledger.checkBad": "未通过：{problem}（第 {first}–{last} 条，{by}，{at}）",
    "ledger.fullHint": "完整校验需逐条读取整个台账，请在服务器上运行 examvault ledger verify（结果会记录在此）。",
    "ledger.checkCount": "检查最新条目数",
    "ledger.check": "立即检查",
    "ledger.checking": "正在检查…",
    "ledger.search": "查找记录",
    "ledger.actor": "操作者（如 supervisor:zhang）",
    "ledger.kind": "类别",
    "ledger.kind.all": "全部",
    "ledger.kind.footage": "录像查看（footage）",
    "ledger.kind.export": "证据导出（export）",
    "ledger.kind.hold": "保全（hold）",
    "ledger.kind.finding": "督导记录（finding）",
    "ledger.kind.segment": "录像片段（segment）",
    "ledger.kind.user": "用户（user）",
    "ledger.kind.token": "令牌（token）",
    "ledger.kind.assignment": "督导分派（assignment）",
    "ledger.sitting": "场次编号",
    "ledger.camera": "摄像机编号",
    "ledger.from": "起始时间（北京时间）",
    "ledger.until": "截止时间（北京时间）",
    "ledger.find": "查找",
    "ledger.clear": "清除条件",
    "ledger.none": "没有符合条件的记录。",
    "ledger.col.seq": "序号",
    "ledger.col.at": "时间",
    "ledger.col.actor": "操作者",
    "ledger.col.action": "动作",
    "ledger.col.subject": "对象",
    "ledger.col.details": "详情",
    "ledger.age.s": "{n} 秒",
    "ledger.age.m": "{n} 分钟",
    "ledger.age.h": "{n} 小时",
    "ledger.age.d": "{n} 天",
  },
  en: {
    "ledger.nav": "Ledger",
    "ledger.heading": "Ledger (tamper-evident record)",
    "ledger.status": "Status",
    "ledger.size": "Entries",
    "ledger.checkpoint": "Latest signed checkpoint",
    "ledger.checkpointNone": "No checkpoint yet",
    "ledger.checkpointLine": "covers entries 1–{size} · signed {at}",
    "ledger.ago": " ago",
    "ledger.unsigned": "{n} newer entries not yet covered by a checkpoint",
    "ledger.root": "Root",
    "ledger.treeRoot": "Stored tree vs checkpoint",
    "ledger.treeOk": "consistent: the stored Merkle tree gives the signed root at entry {size}",
    "ledger.treeBad": "INCONSISTENT: {problem}",
    "ledger.witnesses": "Witness cosignatures",
    "ledger.witnessesNone": "No witness configured (EXAMVAULT_WITNESSES)",
    "ledger.witnessSigned": "cosigned the latest checkpoint ({at})",
    "ledger.witnessBehind": "last cosigned up to entry {size}",
    "ledger.witnessNever": "never cosigned",
    "ledger.lastFull": "Last full verification",
    "ledger.lastRecent": "Last check of the newest entries",
    "ledger.neverChecked": "none recorded",
    "ledger.checkOk": "passed: entries {first}–{last} ({by}, {at})",
    "ledger.checkBad": "FAILED: {problem} (entries {first}–{last}, {by}, {at})",
    "ledger.fullHint": "A full verification reads the whole ledger: run examvault ledger verify on the server (its result is recorded here).",
    "ledger.checkCount": "Newest entries to check",
    "ledger.check": "Check now",
    "ledger.checking": "Checking…",
    "ledger.search": "Search entries",
    "ledger.actor": "Actor (e.g. supervisor:zhang)",
    "ledger.kind": "Kind",
    "ledger.kind.all": "All",
    "ledger.kind.footage": "Footage reads (footage)",
    "ledger.kind.export": "Exports (export)",
    "ledger.kind.hold": "Holds (hold)",
    "ledger.kind.finding": "Findings (finding)",
    "ledger.kind.segment": "Segments (segment)",
    "ledger.kind.user": "Users (user)",
    "ledger.kind.token": "Tokens (token)",
    "ledger.kind.assignment": "Assignments (assignment)",
    "ledger.sitting": "Sitting code",
    "ledger.camera": "Camera code",
    "ledger.from": "From (Beijing time)",
    "ledger.until": "Until (Beijing time)",
    "ledger.find": "Search",
    "ledger.clear": "Clear",
    "ledger.none": "No entry matches.",
    "ledger.col.seq": "Seq",
    "ledger.col.at": "Recorded",
    "ledger.col.actor": "Actor",
    "ledger.col.action": "Action",
    "ledger.col.subject": "Subject",
    "ledger.col.details": "Details",
    "ledger.age.s": "{n} s",
    "ledger.age.m": "{n} min",
    "ledger.age.h": "{n} h",
    "ledger.age.d": "{n} days",
  },
});

const PATH = "#/admin/ledger";
const PAGE = 50;
const KINDS = ["footage", "export", "hold", "finding", "segment", "user", "token", "assignment"];
const FILTERS = ["actor", "kind", "sitting", "camera", "from", "until"];

function ageNode(seconds) {
  if (seconds < 120) return L("ledger.age.s", { n: Math.round(seconds) });
  if (seconds < 7200) return L("ledger.age.m", { n: Math.round(seconds / 60) });
  if (seconds < 172800) return L("ledger.age.h", { n: Math.round(seconds / 3600) });
  return L("ledger.age.d", { n: Math.round(seconds / 86400) });
}

export function renderLedger(main) {
  const view = { alive: true, dispose() { this.alive = false; } };
  const statusBox = el("div", { id: "ledger-status", "aria-live": "polite" }, el("p", { class: "muted" }, L("records.loading")));
  const results = el("div", { id: "ledger-results", "aria-live": "polite" });
  main.replaceChildren(
    el(
      "section",
      { "aria-labelledby": "ledger-heading" },
      el("h1", { id: "ledger-heading" }, L("ledger.heading")),
      el("h2", { id: "ledger-status-heading" }, L("ledger.status")),
      statusBox,
    ),
    el(
      "section",
      { "aria-labelledby": "ledger-search-heading" },
      el("h2", { id: "ledger-search-heading" }, L("ledger.search")),
      searchForm(results, view),
      results,
    ),
  );
  loadStatus(statusBox, view);
  return view;
}

function checkLine(check) {
  if (!check) return el("span", { class: "muted" }, L("ledger.neverChecked"));
  const vars = { first: check.first_seq, last: check.last_seq, by: check.actor, at: showInstant(check.finished_at) };
  return check.ok
    ? el("span", { class: "badge ledger-ok" }, L("ledger.checkOk", vars))
    : el("span", { class: "badge ledger-bad" }, L("ledger.checkBad", { ...vars, problem: check.problem }));
}

async function loadStatus(box, view) {
  let status;
  try {
    status = await call("/api/v1/ledger/status");
  } catch (error) {
    if (view.alive) box.replaceChildren(errorNode(error));
    return;
  }
  if (!view.alive) return;
  const checkpoint = status.checkpoint;
  const witnesses = status.witnesses.length
    ? el(
        "ul",
        { class: "ledger-witnesses" },
        status.witnesses.map((witness) =>
          el(
            "li",
            {},
            el("span", { class: "code" }, witness.key_id), " ", witness.url, " · ",
            witness.cosigned_latest
              ? L("ledger.witnessSigned", { at: showInstant(witness.cosigned_at) })
              : witness.cosigned_size
                ? L("ledger.witnessBehind", { size: witness.cosigned_size })
                : L("ledger.witnessNever"),
          ),
        ),
      )
    : el("span", { class: "muted" }, L("ledger.witnessesNone"));
  const count = el("input", { id: "ledger-check-count", type: "number", min: 1, max: status.recent_max, value: Math.min(5000, status.recent_max) });
  const button = el("button", { type: "button", id: "ledger-check" }, L("ledger.check"));
  button.addEventListener("click", async () => {
    button.disabled = true;
    button.replaceChildren(L("ledger.checking"));
    try {
      await call("/api/v1/ledger/checks", { method: "POST", json: { entries: Number(count.value) || 1 } });
      await loadStatus(box, view);
    } catch (error) {
      flashError(error);
      button.disabled = false;
      button.replaceChildren(L("ledger.check"));
    }
  });
  box.replaceChildren(
    el(
      "dl",
      { class: "meta ledger-meta" },
      el("dt", {}, L("ledger.size")),
      el("dd", { id: "ledger-size" }, status.size.toLocaleString("en")),
      el("dt", {}, L("ledger.checkpoint")),
      el(
        "dd",
        { id: "ledger-checkpoint" },
        checkpoint
          ? [
              L("ledger.checkpointLine", { size: checkpoint.size, at: showInstant(checkpoint.signed_at) }),
              " · ",
              el("span", { id: "ledger-checkpoint-age" }, ageNode(checkpoint.age_seconds), L("ledger.ago")),
              checkpoint.unsigned_entries ? el("div", { class: "small muted" }, L("ledger.unsigned", { n: checkpoint.unsigned_entries })) : null,
              el("div", { class: "small muted" }, L("ledger.root"), " ", el("span", { class: "code" }, checkpoint.root)),
            ]
          : el("span", { class: "muted" }, L("ledger.checkpointNone")),
      ),
      el("dt", {}, L("ledger.treeRoot")),
      el(
        "dd",
        { id: "ledger-tree-root" },
        status.tree_root
          ? status.tree_root.ok
            ? el("span", { class: "badge ledger-ok" }, L("ledger.treeOk", { size: status.tree_root.size }))
            : el("span", { class: "badge ledger-bad" }, L("ledger.treeBad", { problem: status.tree_root.problem }))
          : "—",
      ),
      el("dt", {}, L("ledger.witnesses")),
      el("dd", { id: "ledger-witnesses" }, witnesses),
      el("dt", {}, L("ledger.lastFull")),
      el("dd", { id: "ledger-last-full" }, checkLine(status.last_full_check), el("div", { class: "small muted" }, L("ledger.fullHint"))),
      el("dt", {}, L("ledger.lastRecent")),
      el(
        "dd",
        { id: "ledger-last-recent" },
        checkLine(status.last_recent_check),
        el("div", { class: "inline ledger-check-form" }, el("label", { for: "ledger-check-count" }, L("ledger.checkCount")), count, button),
      ),
    ),
  );
}

function searchForm(results, view) {
  const query = hashQuery();
  const inputs = {
    actor: el("input", { id: "ledger-actor", maxlength: 200, value: query.get("actor") ?? "" }),
    kind: el("select", { id: "ledger-kind" }),
    sitting: el("input", { id: "ledger-sitting", maxlength: 64, value: query.get("sitting") ?? "" }),
    camera: el("input", { id: "ledger-camera", maxlength: 64, value: query.get("camera") ?? "" }),
    from: el("input", { id: "ledger-from", type: "datetime-local", value: rfc3339ToLocal(query.get("from")) }),
    until: el("input", { id: "ledger-until", type: "datetime-local", value: rfc3339ToLocal(query.get("until")) }),
  };
  inputs.kind.append(el("option", { value: "" }, L("ledger.kind.all")));
  for (const kind of KINDS) inputs.kind.append(el("option", { value: kind }, L(`ledger.kind.${kind}`)));
  inputs.kind.value = KINDS.includes(query.get("kind")) ? query.get("kind") : "";
  const clear = el("button", { type: "button", id: "ledger-clear" }, L("ledger.clear"));
  const form = el(
    "form",
    { class: "records-filters", id: "ledger-form", role: "search", "aria-labelledby": "ledger-search-heading" },
    field("ledger.actor", inputs.actor),
    field("ledger.kind", inputs.kind),
    field("ledger.sitting", inputs.sitting),
    field("ledger.camera", inputs.camera),
    field("ledger.from", inputs.from),
    field("ledger.until", inputs.until),
    el("div", { class: "actions" }, el("button", { type: "submit", class: "primary", id: "ledger-find" }, L("ledger.find")), clear),
  );
  const filters = () => {
    const wanted = {};
    for (const name of FILTERS) {
      const value = inputs[name].value.trim();
      if (!value) continue;
      wanted[name] = name === "from" || name === "until" ? localToRfc3339(value) : value;
    }
    return wanted;
  };
  const search = () => {
    const wanted = filters();
    setHashQuery(PATH, wanted);
    loadEntries(results, wanted, null, view, false);
  };
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    search();
  });
  clear.addEventListener("click", () => {
    form.reset();
    for (const input of Object.values(inputs)) input.value = "";
    search();
  });
  queueMicrotask(search);
  return form;
}

function subjectText(entry) {
  return `${entry.subject_type} ${entry.subject_id}`;
}

async function loadEntries(box, wanted, before, view, append) {
  const params = new URLSearchParams({ ...wanted, order: "desc", limit: String(PAGE) });
  if (before) params.set("before", String(before));
  if (!append) box.replaceChildren(el("p", { class: "muted" }, L("records.loading")));
  let answer;
  try {
    answer = await call(`/api/v1/ledger/entries?${params}`);
  } catch (error) {
    if (view.alive) box.replaceChildren(errorNode(error));
    return;
  }
  if (!view.alive) return;
  const rows = answer.entries.map((entry) =>
    el(
      "tr",
      { dataset: { seq: entry.seq, action: entry.action } },
      el("th", { scope: "row", class: "num" }, entry.seq),
      el("td", { class: "nowrap" }, showInstant(entry.recorded_at)),
      el("td", { class: "code" }, entry.actor),
      el("td", { class: "code" }, entry.action),
      el("td", { class: "code" }, subjectText(entry)),
      el("td", { class: "code small ledger-details" }, entry.details),
    ),
  );
  let tbody = box.querySelector("tbody");
  if (!append || !tbody) {
    if (!rows.length) {
      box.replaceChildren(el("p", { class: "muted", id: "ledger-none" }, L("ledger.none")));
      return;
    }
    box.replaceChildren(
      table("ledger-entries", ["ledger.col.seq", "ledger.col.at", "ledger.col.actor", "ledger.col.action", "ledger.col.subject", "ledger.col.details"], rows),
    );
    tbody = box.querySelector("tbody");
  } else {
    tbody.append(...rows);
  }
  box.querySelector(".records-more")?.remove();
  if (answer.next_before) {
    const more = el("button", { type: "button", class: "small-button records-more", id: "ledger-more" }, L("records.more"));
    more.addEventListener("click", () => loadEntries(box, wanted, answer.next_before, view, true));
    box.append(more);
  }
}
