// Legal holds (保全): the centre places them (a whole sitting; a camera over an interval; one
// segment) with a reason and case number, lists them with what each protects (segments, bytes,
// until released, and when those segments would otherwise expire), and releases them with a
// reason. District officers see the holds in their district and may place holds there (SPEC.md
// "Security model"); releasing is the centre's.

import { call } from "../api.js";
import { showInstant } from "../clock.js";
import { L, el, errorNode } from "../dom.js";
import { addStrings } from "../i18n.js";
import { askReason, flash, flashError } from "../ui.js";
import { field, localInput, localToRfc3339, showBytes } from "./common.js";

addStrings({
  "zh-CN": {
    "nav.holds": "保全",
    "holds.heading": "证据保全",
    "holds.intro": "保全期间相关录像不会被清除，直至解除保全。",
    "holds.place": "新建保全",
    "holds.scope": "保全范围",
    "holds.scope.sitting": "整个场次",
    "holds.scope.camera": "摄像机 + 时间段",
    "holds.scope.segment": "单个录像片段",
    "holds.sitting": "场次编号",
    "holds.camera": "摄像机编号",
    "holds.from": "开始时间",
    "holds.until": "结束时间",
    "holds.timeHint": "北京时间（Asia/Shanghai）。",
    "holds.segment": "录像片段编号",
    "holds.reason": "保全原因",
    "holds.case": "案件编号",
    "holds.submit": "保全",
    "holds.placed": "已保全（编号 {id}）。",
    "holds.showReleased": "显示已解除的保全",
    "holds.refresh": "刷新",
    "holds.empty": "没有保全。",
    "holds.col.id": "编号",
    "holds.col.target": "范围",
    "holds.col.reason": "原因 / 案件编号",
    "holds.col.placed": "保全人 / 时间",
    "holds.col.protects": "保护的录像",
    "holds.col.state": "状态",
    "holds.target.sitting": "场次 {code}",
    "holds.target.camera": "摄像机 {code}：{from} – {until}",
    "holds.target.segment": "录像片段 {id}",
    "holds.protects": "{n} 个片段，{bytes}",
    "holds.protects.until": "保全至解除为止",
    "holds.protects.expiry": "正常保存期至 {at}",
    "holds.protects.expiryRange": "正常保存期 {from} 至 {until}",
    "holds.active": "保全中",
    "holds.released": "已解除：{by}，{at}（{reason}）",
    "holds.release": "解除",
    "holds.releaseReason": "解除保全的原因",
    "holds.releasedFlash": "已解除保全 {id}。",
  },
  en: {
    "nav.holds": "Holds",
    "holds.heading": "Legal holds",
    "holds.intro": "Footage under a hold is never purged until the hold is released.",
    "holds.place": "New hold",
    "holds.scope": "Hold what",
    "holds.scope.sitting": "A whole sitting",
    "holds.scope.camera": "A camera over an interval",
    "holds.scope.segment": "One segment",
    "holds.sitting": "Sitting code",
    "holds.camera": "Camera code",
    "holds.from": "From",
    "holds.until": "Until",
    "holds.timeHint": "Beijing time (Asia/Shanghai).",
    "holds.segment": "Segment id",
    "holds.reason": "Reason",
    "holds.case": "Case number",
    "holds.submit": "Place the hold",
    "holds.placed": "Hold {id} placed.",
    "holds.showReleased": "Show released holds",
    "holds.refresh": "Refresh",
    "holds.empty": "No holds.",
    "holds.col.id": "No.",
    "holds.col.target": "Scope",
    "holds.col.reason": "Reason / case",
    "holds.col.placed": "Placed by / at",
    "holds.col.protects": "Protects",
    "holds.col.state": "State",
    "holds.target.sitting": "Sitting {code}",
    "holds.target.camera": "Camera {code}: {from} – {until}",
    "holds.target.segment": "Segment {id}",
    "holds.protects": "{n} segment(s), {bytes}",
    "holds.protects.until": "held until released",
    "holds.protects.expiry": "normal expiry {at}",
    "holds.protects.expiryRange": "normal expiry {from} to {until}",
    "holds.active": "Active",
    "holds.released": "Released by {by}, {at} ({reason})",
    "holds.release": "Release",
    "holds.releaseReason": "Why release this hold?",
    "holds.releasedFlash": "Hold {id} released.",
  },
});

export function renderHolds(main, _match, me) {
  const view = { alive: true, dispose() { this.alive = false; } };
  const mayRelease = me.role === "admin";
  const listBody = el("div", { id: "holds-list", "aria-live": "polite" });

  const scope = el("select", { id: "hold-scope" });
  for (const value of ["sitting", "camera", "segment"]) {
    scope.append(el("option", { value }, L(`holds.scope.${value}`)));
  }
  const sitting = el("input", { id: "hold-sitting", maxlength: 64 });
  const camera = el("input", { id: "hold-camera", maxlength: 64 });
  const from = el("input", { id: "hold-from", type: "datetime-local", value: localInput(-1) });
  const until = el("input", { id: "hold-until", type: "datetime-local", value: localInput(0) });
  const segment = el("input", { id: "hold-segment", type: "number", min: 1, step: 1 });
  const reason = el("textarea", { id: "hold-reason", rows: 2, maxlength: 1000, required: true });
  const caseNumber = el("input", { id: "hold-case", maxlength: 200 });
  const parts = {
    sitting: el("div", { class: "admin-row" }, field("holds.sitting", sitting)),
    camera: el(
      "div",
      { class: "admin-row" },
      field("holds.camera", camera),
      field("holds.from", from, "holds.timeHint"),
      field("holds.until", until),
    ),
    segment: el("div", { class: "admin-row" }, field("holds.segment", segment)),
  };
  const inputs = { sitting: [sitting], camera: [camera, from, until], segment: [segment] };
  function showScope() {
    for (const [name, part] of Object.entries(parts)) {
      part.hidden = name !== scope.value;
      for (const input of inputs[name]) input.required = name === scope.value;
    }
  }
  scope.addEventListener("change", showScope);
  showScope();
  const placeError = el("div");
  const form = el(
    "form",
    { class: "admin-form", id: "hold-form" },
    el("h2", {}, L("holds.place")),
    el("div", { class: "admin-row" }, field("holds.scope", scope)),
    Object.values(parts),
    el("div", { class: "admin-row" }, field("holds.reason", reason), field("holds.case", caseNumber)),
    el("div", { class: "admin-actions" }, el("button", { type: "submit", class: "primary" }, L("holds.submit"))),
    placeError,
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    placeError.replaceChildren();
    const body = { reason: reason.value.trim() };
    if (caseNumber.value.trim()) body.case_reference = caseNumber.value.trim();
    if (scope.value === "sitting") body.sitting = sitting.value.trim();
    if (scope.value === "camera") {
      body.camera = camera.value.trim();
      body.from = localToRfc3339(from.value);
      body.until = localToRfc3339(until.value);
    }
    if (scope.value === "segment") body.segment = Number(segment.value);
    try {
      const hold = await call("/api/v1/holds", { method: "POST", json: body });
      flash("holds.placed", { id: hold.id });
      form.reset();
      showScope();
      await load();
    } catch (error) {
      placeError.replaceChildren(errorNode(error));
    }
  });

  const showReleased = el("input", { type: "checkbox", id: "holds-all" });
  const refresh = el("button", { type: "button", id: "holds-refresh" }, L("holds.refresh"));
  showReleased.addEventListener("change", () => load());
  refresh.addEventListener("click", () => load());

  async function load() {
    try {
      const { holds } = await call(`/api/v1/holds${showReleased.checked ? "?all=true" : ""}`);
      if (!view.alive) return;
      listBody.replaceChildren(holdsTable(holds));
    } catch (error) {
      if (view.alive) listBody.replaceChildren(errorNode(error));
    }
  }

  function target(hold) {
    if (hold.scope === "sitting" && hold.sitting) {
      return el(
        "a",
        { href: `#/sittings/${encodeURIComponent(hold.sitting)}` },
        L("holds.target.sitting", { code: hold.sitting }),
      );
    }
    if (hold.scope === "camera") {
      return L("holds.target.camera", {
        code: hold.camera ?? hold.camera_id,
        from: hold.held_from ? showInstant(hold.held_from) : "…",
        until: hold.held_until ? showInstant(hold.held_until) : "…",
      });
    }
    return L("holds.target.segment", { id: hold.segment_id });
  }

  function protects(hold) {
    const kept = hold.protects;
    if (!kept) return "–";
    const lines = [el("div", {}, L("holds.protects", { n: kept.segments, bytes: showBytes(kept.bytes) }))];
    if (!hold.released_at) lines.push(el("div", { class: "muted small" }, L("holds.protects.until")));
    if (kept.earliest_expiry && kept.latest_expiry) {
      const a = showInstant(kept.earliest_expiry);
      const b = showInstant(kept.latest_expiry);
      lines.push(
        el(
          "div",
          { class: "muted small" },
          a === b
            ? L("holds.protects.expiry", { at: a })
            : L("holds.protects.expiryRange", { from: a, until: b }),
        ),
      );
    }
    return lines;
  }

  function holdsTable(holds) {
    if (!holds.length) return el("p", { class: "muted" }, L("holds.empty"));
    const rows = holds.map((hold) => {
      const state = el("td");
      if (hold.released_at) {
        state.append(
          L("holds.released", {
            by: hold.released_by, at: showInstant(hold.released_at), reason: hold.release_reason,
          }),
        );
      } else {
        state.append(el("span", { class: "badge verdict-incomplete" }, L("holds.active")));
        if (mayRelease) {
          const release = el("button", { type: "button", class: "small-button" }, L("holds.release"));
          release.setAttribute("aria-label", `${release.textContent} ${hold.id}`);
          release.addEventListener("click", async () => {
            const why = await askReason("holds.release", "holds.releaseReason");
            if (!why) return;
            try {
              await call(`/api/v1/holds/${hold.id}/release`, { method: "POST", json: { reason: why } });
              flash("holds.releasedFlash", { id: hold.id });
              await load();
            } catch (error) {
              flashError(error);
            }
          });
          state.append(" ", release);
        }
      }
      return el(
        "tr",
        { dataset: { hold: hold.id } },
        el("th", { scope: "row" }, String(hold.id)),
        el("td", {}, target(hold)),
        el(
          "td",
          {},
          el("div", {}, hold.reason),
          hold.case_reference ? el("div", { class: "muted small" }, hold.case_reference) : null,
        ),
        el("td", {}, el("div", {}, hold.placed_by), el("div", { class: "muted small nowrap" }, showInstant(hold.placed_at))),
        el("td", { class: "holds-protects" }, protects(hold)),
        state,
      );
    });
    return el(
      "table",
      { class: "grid compact", id: "holds-table" },
      el(
        "thead",
        {},
        el(
          "tr",
          {},
          [
            "holds.col.id", "holds.col.target", "holds.col.reason", "holds.col.placed",
            "holds.col.protects", "holds.col.state",
          ].map((key) => el("th", { scope: "col" }, L(key))),
        ),
      ),
      el("tbody", {}, rows),
    );
  }

  main.replaceChildren(
    el(
      "section",
      { "aria-labelledby": "holds-heading", class: "admin-page" },
      el(
        "div",
        { class: "section-head" },
        el("h1", { id: "holds-heading" }, L("holds.heading")),
        el(
          "div",
          { class: "filters" },
          el("div", { class: "check-line" }, showReleased, el("label", { for: showReleased.id }, L("holds.showReleased"))),
          refresh,
        ),
      ),
      el("p", { class: "muted" }, L("holds.intro")),
      listBody,
    ),
    el("section", { "aria-labelledby": "hold-form-heading", class: "admin-page" }, form),
  );
  form.querySelector("h2").id = "hold-form-heading";
  load();
  return view;
}
