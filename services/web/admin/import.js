// The centre imports the registry (JSON) and the schedule (CSV) from the page: the file is
// checked first (a dry run on the server: every problem with its line and field, nothing
// written), then imported on confirmation; the answer lists what was created, updated and
// left unchanged.

import { L, el, errorNode } from "../dom.js";
import { addStrings, setMessage, setText } from "../i18n.js";
import { flash } from "../ui.js";
import { field, upload } from "./common.js";

// The server's limit (services/api/imports/endpoints.py); checked here first to spare the upload.
const MAX_BYTES = 4 * 1024 * 1024;

const KINDS = {
  schedule: { accept: ".csv,text/csv", type: "text/csv; charset=utf-8" },
  registry: { accept: ".json,application/json", type: "application/json" },
};

addStrings({
  "zh-CN": {
    "nav.import": "导入",
    "import.heading": "导入登记数据与场次",
    "import.intro":
      "先检查文件：所有问题连同行号和字段一并列出，检查不会写入任何数据；确认后才导入（全部成功或全部不导入）。",
    "import.kind": "文件类型",
    "import.kind.schedule": "场次表（CSV）",
    "import.kind.registry": "机构登记（JSON）",
    "import.file": "选择文件",
    "import.fileHint": "UTF-8 编码，最大 4 MiB。",
    "import.check": "检查文件",
    "import.checking": "正在检查…",
    "import.confirm": "确认导入",
    "import.importing": "正在导入…",
    "import.noFile": "请先选择文件。",
    "import.tooBig": "文件超过 4 MiB 上限。",
    "import.problems": "发现 {n} 个问题，未写入任何数据。请修改文件后重新检查。",
    "import.col.line": "行号",
    "import.col.field": "字段",
    "import.col.message": "问题",
    "import.col.what": "类别",
    "import.codes": "查看编号",
    "import.preview": "检查通过。确认后将：",
    "import.done": "导入完成：",
    "import.created": "新增",
    "import.updated": "更新",
    "import.unchanged": "未变化",
    "import.retired": "停用的摄像机",
    "import.zoneAssumed": "未带时区偏移的时间按 Asia/Shanghai 读取：",
    "import.what.sitting": "场次",
    "import.what.institution": "机构",
    "import.what.site": "场所",
    "import.what.room": "考场",
    "import.what.camera": "摄像机",
    "import.flash.done": "导入完成。",
  },
  en: {
    "nav.import": "Import",
    "import.heading": "Import the registry and the schedule",
    "import.intro":
      "Check the file first: every problem is listed with its line and field and nothing is written; import only after confirming (all or nothing).",
    "import.kind": "File type",
    "import.kind.schedule": "Schedule (CSV)",
    "import.kind.registry": "Registry (JSON)",
    "import.file": "Choose a file",
    "import.fileHint": "UTF-8, at most 4 MiB.",
    "import.check": "Check the file",
    "import.checking": "Checking…",
    "import.confirm": "Confirm the import",
    "import.importing": "Importing…",
    "import.noFile": "Choose a file first.",
    "import.tooBig": "The file is over the 4 MiB limit.",
    "import.problems": "{n} problem(s) found; nothing was written. Fix the file and check again.",
    "import.col.line": "Line",
    "import.col.field": "Field",
    "import.col.message": "Problem",
    "import.col.what": "Kind",
    "import.codes": "Show the codes",
    "import.preview": "The file is fine. Confirming will:",
    "import.done": "Imported:",
    "import.created": "Created",
    "import.updated": "Updated",
    "import.unchanged": "Unchanged",
    "import.retired": "Cameras retired",
    "import.zoneAssumed": "Times without an offset were read as Asia/Shanghai:",
    "import.what.sitting": "sittings",
    "import.what.institution": "institutions",
    "import.what.site": "sites",
    "import.what.room": "rooms",
    "import.what.camera": "cameras",
    "import.flash.done": "Imported.",
  },
});

export function renderImport(main) {
  const view = { alive: true, dispose() { this.alive = false; } };
  const kind = el("select", { id: "import-kind" });
  for (const name of Object.keys(KINDS)) {
    kind.append(el("option", { value: name }, L(`import.kind.${name}`)));
  }
  const file = el("input", { type: "file", id: "import-file", accept: KINDS.schedule.accept });
  const check = el("button", { type: "submit", id: "import-check", class: "primary" }, L("import.check"));
  const result = el("div", { id: "import-result", "aria-live": "polite" });
  kind.addEventListener("change", () => {
    file.accept = KINDS[kind.value].accept;
    result.replaceChildren();
  });
  file.addEventListener("change", () => result.replaceChildren());

  const form = el(
    "form",
    { class: "admin-form", id: "import-form" },
    field("import.kind", kind),
    field("import.file", file, "import.fileHint"),
    el("div", { class: "admin-actions" }, check),
  );

  // The confirmation sends the very bytes that were checked, even if the file on disk has
  // changed since; choosing another file or kind clears the check.
  async function send(dryRun, button, busyKey, idleKey, checked) {
    const chosen = checked ?? file.files[0];
    if (!chosen) {
      result.replaceChildren(el("p", { class: "error", role: "alert" }, L("import.noFile")));
      return;
    }
    if (chosen.size > MAX_BYTES) {
      result.replaceChildren(el("p", { class: "error", role: "alert" }, L("import.tooBig")));
      return;
    }
    button.disabled = true;
    setText(button, busyKey);
    const which = kind.value;
    try {
      const bytes = checked ?? new Blob([await chosen.arrayBuffer()]);
      const answer = await upload(
        `/api/v1/imports/${which}?dry_run=${dryRun}`,
        bytes,
        KINDS[which].type,
      );
      if (!view.alive) return;
      result.replaceChildren(summary(answer, dryRun));
      if (dryRun) {
        const confirm = el(
          "button",
          { type: "button", id: "import-confirm", class: "primary" },
          L("import.confirm"),
        );
        confirm.addEventListener("click", () =>
          send(false, confirm, "import.importing", "import.confirm", bytes),
        );
        result.append(el("div", { class: "admin-actions" }, confirm));
      } else {
        flash("import.flash.done");
      }
    } catch (error) {
      if (!view.alive) return;
      result.replaceChildren(error.body?.problems ? problemList(error) : errorNode(error));
    } finally {
      button.disabled = false;
      setText(button, idleKey);
    }
  }

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    send(true, check, "import.checking", "import.check");
  });

  main.replaceChildren(
    el(
      "section",
      { "aria-labelledby": "import-heading", class: "admin-page" },
      el("h1", { id: "import-heading" }, L("import.heading")),
      el("p", { class: "muted" }, L("import.intro")),
      form,
      result,
    ),
  );
  file.focus();
  return view;
}

function message(problem) {
  const cell = el("td");
  setMessage(cell, problem.message_zh ?? problem.message, problem.message);
  return cell;
}

function problemList(error) {
  const problems = error.body.problems;
  const rows = problems.map((problem) =>
    el(
      "tr",
      { dataset: { line: problem.line ?? "" } },
      el("td", { class: "num" }, problem.line ?? "–"),
      el("td", { class: "code" }, problem.field ?? "–"),
      message(problem),
    ),
  );
  return el(
    "div",
    { id: "import-problems" },
    el("p", { class: "error", role: "alert" }, L("import.problems", { n: problems.length })),
    el(
      "table",
      { class: "grid compact" },
      el(
        "thead",
        {},
        el(
          "tr",
          {},
          ["import.col.line", "import.col.field", "import.col.message"].map((key) =>
            el("th", { scope: "col" }, L(key)),
          ),
        ),
      ),
      el("tbody", {}, rows),
    ),
  );
}

function summary(answer, dryRun) {
  const kinds = Object.keys(answer.created);
  const head = el(
    "tr",
    {},
    el("th", { scope: "col" }, L("import.col.what")),
    ["import.created", "import.updated", "import.unchanged"].map((key) =>
      el("th", { scope: "col" }, L(key)),
    ),
  );
  const cell = (codes, status) =>
    el(
      "td",
      { dataset: { status } },
      el("strong", { class: "import-count" }, String(codes.length)),
      codes.length
        ? el(
            "details",
            {},
            el("summary", {}, L("import.codes")),
            el("p", { class: "code small" }, codes.join(", ")),
          )
        : null,
    );
  const rows = kinds.map((what) =>
    el(
      "tr",
      { dataset: { kind: what } },
      el("th", { scope: "row" }, L(`import.what.${what}`)),
      cell(answer.created[what], "created"),
      cell(answer.updated[what], "updated"),
      cell(answer.unchanged[what], "unchanged"),
    ),
  );
  const notes = [];
  if (answer.retired_cameras?.length) {
    notes.push(el("p", {}, L("import.retired"), " ", el("span", { class: "code" }, answer.retired_cameras.join(", "))));
  }
  if (answer.zone_assumed?.length) {
    notes.push(el("p", { class: "notice" }, L("import.zoneAssumed"), " ", answer.zone_assumed.join("; ")));
  }
  return el(
    "div",
    { id: dryRun ? "import-preview" : "import-done" },
    el("p", { class: dryRun ? "" : "admin-ok" }, L(dryRun ? "import.preview" : "import.done")),
    el("table", { class: "grid compact admin-summary" }, el("thead", {}, head), el("tbody", {}, rows)),
    notes,
  );
}
