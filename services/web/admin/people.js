// The centre's people and supervisor assignments: create a person with their role and scope
// (district for district officers, institution for institutions), disable them, reset a
// password (the new one is shown once); assign supervisors to a sitting or to an institution
// over dates, each with its validity window; list who is assigned to what, either way.

import { call } from "../api.js";
import { showInstant } from "../clock.js";
import { L, el, errorNode } from "../dom.js";
import { addStrings } from "../i18n.js";
import { askReason, flash, flashError } from "../ui.js";
import { field, localInput, localToRfc3339 } from "./common.js";

const ROLES = ["supervisor", "district_officer", "institution", "admin"];

addStrings({
  "zh-CN": {
    "nav.people": "人员与分派",
    "people.heading": "人员",
    "people.create": "新建人员",
    "people.name": "用户名",
    "people.role": "角色",
    "people.password": "初始密码",
    "people.passwordHint": "至少 10 个字符；请线下告知本人。",
    "people.district": "所属区县",
    "people.institution": "所属鉴定机构编号",
    "people.submit": "创建",
    "people.created": "已创建人员 {name}。",
    "people.col.name": "用户名",
    "people.col.role": "角色",
    "people.col.scope": "范围",
    "people.col.created": "创建时间",
    "people.col.status": "状态",
    "people.col.actions": "操作",
    "people.active": "启用",
    "people.disabled": "已停用 {at}",
    "people.disable": "停用",
    "people.disableReason": "停用原因",
    "people.disabledFlash": "已停用 {name}，其登录会话已全部结束。",
    "people.reset": "重置密码",
    "people.resetDone": "{name} 的新密码（仅显示这一次，请立即转告本人）：",
    "people.resetHide": "我已记下，隐藏",
    "people.assignments": "督导分派",
    "people.assign": "新建分派",
    "people.assign.user": "督导员",
    "people.assign.target": "分派对象",
    "people.assign.sitting": "单个场次",
    "people.assign.institution": "机构在日期范围内的场次",
    "people.assign.sittingCode": "场次编号",
    "people.assign.institutionCode": "鉴定机构编号",
    "people.assign.coversFrom": "场次开始时间从",
    "people.assign.coversUntil": "场次开始时间至",
    "people.assign.validFrom": "授权生效",
    "people.assign.validUntil": "授权截止",
    "people.assign.timeHint": "北京时间（Asia/Shanghai）。",
    "people.assign.submit": "分派",
    "people.assign.done": "已分派 {user}。",
    "people.assign.none": "没有督导员账号，请先新建角色为督导员的人员。",
    "people.filter": "查看",
    "people.filter.all": "全部分派",
    "people.filter.user": "按人员",
    "people.filter.sitting": "按场次",
    "people.filter.institution": "按机构",
    "people.filter.value": "名称或编号",
    "people.filter.live": "仅当前有效",
    "people.filter.go": "查询",
    "people.col.user": "督导员",
    "people.col.target": "对象",
    "people.col.valid": "授权时段",
    "people.col.granted": "分派人",
    "people.live": "有效",
    "people.notLive": "未生效或已过期",
    "people.revoked": "已撤销",
    "people.revoke": "撤销",
    "people.revokeReason": "撤销原因",
    "people.revokedFlash": "已撤销分派 {id}。",
    "people.empty": "没有符合条件的分派。",
    "people.targetInstitution": "机构 {code}：{from} – {until} 开始的场次",
  },
  en: {
    "nav.people": "People",
    "people.heading": "People",
    "people.create": "New person",
    "people.name": "User name",
    "people.role": "Role",
    "people.password": "First password",
    "people.passwordHint": "At least 10 characters; hand it over in person.",
    "people.district": "District",
    "people.institution": "Institution code",
    "people.submit": "Create",
    "people.created": "Created {name}.",
    "people.col.name": "User name",
    "people.col.role": "Role",
    "people.col.scope": "Scope",
    "people.col.created": "Created",
    "people.col.status": "Status",
    "people.col.actions": "Actions",
    "people.active": "Active",
    "people.disabled": "Disabled {at}",
    "people.disable": "Disable",
    "people.disableReason": "Why disable this person?",
    "people.disabledFlash": "Disabled {name}; their sessions have ended.",
    "people.reset": "Reset password",
    "people.resetDone": "New password for {name} (shown only this once; pass it on now):",
    "people.resetHide": "Noted, hide it",
    "people.assignments": "Supervisor assignments",
    "people.assign": "New assignment",
    "people.assign.user": "Supervisor",
    "people.assign.target": "Assign to",
    "people.assign.sitting": "One sitting",
    "people.assign.institution": "An institution's sittings over dates",
    "people.assign.sittingCode": "Sitting code",
    "people.assign.institutionCode": "Institution code",
    "people.assign.coversFrom": "Sittings starting from",
    "people.assign.coversUntil": "Sittings starting before",
    "people.assign.validFrom": "Access from",
    "people.assign.validUntil": "Access until",
    "people.assign.timeHint": "Beijing time (Asia/Shanghai).",
    "people.assign.submit": "Assign",
    "people.assign.done": "Assigned {user}.",
    "people.assign.none": "No supervisors yet: create a person with the supervisor role first.",
    "people.filter": "Show",
    "people.filter.all": "All assignments",
    "people.filter.user": "By person",
    "people.filter.sitting": "By sitting",
    "people.filter.institution": "By institution",
    "people.filter.value": "Name or code",
    "people.filter.live": "Only those valid now",
    "people.filter.go": "Search",
    "people.col.user": "Supervisor",
    "people.col.target": "Target",
    "people.col.valid": "Access window",
    "people.col.granted": "Granted by",
    "people.live": "Valid now",
    "people.notLive": "Not valid now",
    "people.revoked": "Revoked",
    "people.revoke": "Revoke",
    "people.revokeReason": "Why revoke this assignment?",
    "people.revokedFlash": "Revoked assignment {id}.",
    "people.empty": "No assignments match.",
    "people.targetInstitution": "Institution {code}: sittings starting {from} – {until}",
  },
});

function headRow(keys) {
  return el("thead", {}, el("tr", {}, keys.map((key) => el("th", { scope: "col" }, L(key)))));
}

export function renderPeople(main, me) {
  const view = { alive: true, dispose() { this.alive = false; } };
  const usersBody = el("div", { id: "people-users", "aria-live": "polite" });
  const secret = el("div", { id: "people-secret" });
  const assignForm = el("div", { id: "people-assign" });
  const listBody = el("div", { id: "people-assignments", "aria-live": "polite" });
  let users = [];

  // --- people ---
  const name = el("input", { id: "people-name", autocomplete: "off", required: true, maxlength: 64 });
  const role = el("select", { id: "people-role" });
  for (const value of ROLES) role.append(el("option", { value }, L(`role.${value}`)));
  const password = el("input", {
    id: "people-password", type: "password", autocomplete: "new-password", required: true, minlength: 10,
  });
  const district = el("input", { id: "people-district", maxlength: 100 });
  const institution = el("input", { id: "people-institution", maxlength: 64 });
  const districtField = field("people.district", district);
  const institutionField = field("people.institution", institution);
  const createError = el("div");
  function showScope() {
    districtField.hidden = role.value !== "district_officer";
    institutionField.hidden = role.value !== "institution";
    district.required = !districtField.hidden;
    institution.required = !institutionField.hidden;
  }
  role.addEventListener("change", showScope);
  showScope();
  const createForm = el(
    "form",
    { class: "admin-form", id: "people-create" },
    el("h2", {}, L("people.create")),
    el(
      "div",
      { class: "admin-row" },
      field("people.name", name),
      field("people.role", role),
      field("people.password", password, "people.passwordHint"),
      districtField,
      institutionField,
    ),
    el("div", { class: "admin-actions" }, el("button", { type: "submit", class: "primary" }, L("people.submit"))),
    createError,
  );
  createForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    createError.replaceChildren();
    const body = { name: name.value.trim(), role: role.value, password: password.value };
    if (role.value === "district_officer") body.district = district.value.trim();
    if (role.value === "institution") body.institution = institution.value.trim();
    try {
      await call("/api/v1/users", { method: "POST", json: body });
      flash("people.created", { name: body.name });
      createForm.reset();
      showScope();
      await loadUsers();
    } catch (error) {
      createError.replaceChildren(errorNode(error));
    }
  });

  async function loadUsers() {
    try {
      ({ users } = await call("/api/v1/users"));
      if (!view.alive) return;
      usersBody.replaceChildren(usersTable());
      drawAssignForm();
    } catch (error) {
      if (view.alive) usersBody.replaceChildren(errorNode(error));
    }
  }

  function usersTable() {
    const rows = users.map((user) => {
      const actions = el("td", { class: "admin-buttons" });
      // Not on oneself: disabling or resetting ends one's own session mid-task.
      if (!user.disabled_at && user.name !== me.name) {
        const disable = el("button", { type: "button", class: "small-button" }, L("people.disable"));
        disable.setAttribute("aria-label", `${disable.textContent} ${user.name}`);
        disable.addEventListener("click", async () => {
          const reason = await askReason("people.disable", "people.disableReason");
          if (!reason) return;
          try {
            await call(`/api/v1/users/${encodeURIComponent(user.name)}/disable`, {
              method: "POST", json: { reason },
            });
            flash("people.disabledFlash", { name: user.name });
            await loadUsers();
          } catch (error) {
            flashError(error);
          }
        });
        const reset = el("button", { type: "button", class: "small-button" }, L("people.reset"));
        reset.setAttribute("aria-label", `${reset.textContent} ${user.name}`);
        reset.addEventListener("click", async () => {
          try {
            const answer = await call(`/api/v1/users/${encodeURIComponent(user.name)}/password`, {
              method: "POST",
            });
            const hide = el("button", { type: "button", class: "small-button" }, L("people.resetHide"));
            hide.addEventListener("click", () => secret.replaceChildren());
            secret.replaceChildren(
              el(
                "div",
                { class: "notice admin-secret", role: "alert" },
                L("people.resetDone", { name: answer.name }),
                " ",
                el("code", { class: "code", id: "people-new-password" }, answer.password),
                " ",
                hide,
              ),
            );
          } catch (error) {
            flashError(error);
          }
        });
        actions.append(reset, " ", disable);
      }
      return el(
        "tr",
        { dataset: { user: user.name } },
        el("th", { scope: "row" }, user.name),
        el("td", {}, L(`role.${user.role}`)),
        el("td", {}, user.district ?? user.institution ?? "–"),
        el("td", { class: "nowrap" }, showInstant(user.created_at)),
        el(
          "td",
          {},
          user.disabled_at
            ? L("people.disabled", { at: showInstant(user.disabled_at) })
            : L("people.active"),
        ),
        actions,
      );
    });
    return el(
      "table",
      { class: "grid compact", id: "people-table" },
      headRow([
        "people.col.name", "people.col.role", "people.col.scope", "people.col.created",
        "people.col.status", "people.col.actions",
      ]),
      el("tbody", {}, rows),
    );
  }

  // --- assignments ---
  function drawAssignForm() {
    const supervisors = users.filter((u) => u.role === "supervisor" && !u.disabled_at);
    if (!supervisors.length) {
      assignForm.replaceChildren(el("p", { class: "muted" }, L("people.assign.none")));
      return;
    }
    const user = el("select", { id: "assign-user" });
    for (const s of supervisors) user.append(el("option", { value: s.name }, s.name));
    const target = el("select", { id: "assign-target" });
    target.append(
      el("option", { value: "sitting" }, L("people.assign.sitting")),
      el("option", { value: "institution" }, L("people.assign.institution")),
    );
    const sitting = el("input", { id: "assign-sitting", maxlength: 64 });
    const inst = el("input", { id: "assign-institution", maxlength: 64 });
    const coversFrom = el("input", { id: "assign-covers-from", type: "datetime-local", value: localInput(0) });
    const coversUntil = el("input", { id: "assign-covers-until", type: "datetime-local", value: localInput(24 * 7) });
    const validFrom = el("input", { id: "assign-valid-from", type: "datetime-local", value: localInput(0), required: true });
    const validUntil = el("input", { id: "assign-valid-until", type: "datetime-local", value: localInput(24 * 7), required: true });
    const sittingPart = el("div", { class: "admin-row" }, field("people.assign.sittingCode", sitting));
    const institutionPart = el(
      "div",
      { class: "admin-row" },
      field("people.assign.institutionCode", inst),
      field("people.assign.coversFrom", coversFrom),
      field("people.assign.coversUntil", coversUntil),
    );
    const error = el("div");
    function showTarget() {
      sittingPart.hidden = target.value !== "sitting";
      institutionPart.hidden = target.value !== "institution";
      sitting.required = !sittingPart.hidden;
      inst.required = !institutionPart.hidden;
    }
    target.addEventListener("change", showTarget);
    showTarget();
    const form = el(
      "form",
      { class: "admin-form", id: "assign-form" },
      el("h2", {}, L("people.assign")),
      el("div", { class: "admin-row" }, field("people.assign.user", user), field("people.assign.target", target)),
      sittingPart,
      institutionPart,
      el(
        "div",
        { class: "admin-row" },
        field("people.assign.validFrom", validFrom, "people.assign.timeHint"),
        field("people.assign.validUntil", validUntil),
      ),
      el("div", { class: "admin-actions" }, el("button", { type: "submit", class: "primary" }, L("people.assign.submit"))),
      error,
    );
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      error.replaceChildren();
      const body = {
        user: user.value,
        valid_from: localToRfc3339(validFrom.value),
        valid_until: localToRfc3339(validUntil.value),
      };
      if (target.value === "sitting") body.sitting = sitting.value.trim();
      else {
        body.institution = inst.value.trim();
        body.covers_from = localToRfc3339(coversFrom.value);
        body.covers_until = localToRfc3339(coversUntil.value);
      }
      try {
        await call("/api/v1/assignments", { method: "POST", json: body });
        flash("people.assign.done", { user: body.user });
        await loadAssignments();
      } catch (failure) {
        error.replaceChildren(errorNode(failure));
      }
    });
    assignForm.replaceChildren(form);
  }

  const by = el("select", { id: "assignments-by" });
  for (const value of ["all", "user", "sitting", "institution"]) {
    by.append(el("option", { value }, L(`people.filter.${value}`)));
  }
  const byValue = el("input", { id: "assignments-value", maxlength: 64 });
  const liveOnly = el("input", { type: "checkbox", id: "assignments-live" });
  const filterForm = el(
    "form",
    { class: "admin-row admin-filter", id: "assignments-filter" },
    field("people.filter", by),
    field("people.filter.value", byValue),
    el("div", { class: "check-line" }, liveOnly, el("label", { for: liveOnly.id }, L("people.filter.live"))),
    el("button", { type: "submit" }, L("people.filter.go")),
  );
  filterForm.addEventListener("submit", (event) => {
    event.preventDefault();
    loadAssignments();
  });

  async function loadAssignments() {
    const params = new URLSearchParams();
    if (by.value !== "all" && byValue.value.trim()) params.set(by.value, byValue.value.trim());
    if (liveOnly.checked) params.set("live", "true");
    try {
      const { assignments } = await call(`/api/v1/assignments?${params}`);
      if (!view.alive) return;
      listBody.replaceChildren(assignmentsTable(assignments));
    } catch (error) {
      if (view.alive) listBody.replaceChildren(errorNode(error));
    }
  }

  function assignmentsTable(assignments) {
    if (!assignments.length) return el("p", { class: "muted" }, L("people.empty"));
    const rows = assignments.map((a) => {
      const target = a.sitting
        ? el("a", { href: `#/sittings/${encodeURIComponent(a.sitting)}` }, a.sitting)
        : L("people.targetInstitution", {
            code: a.institution, from: showInstant(a.covers_from), until: showInstant(a.covers_until),
          });
      const status = a.revoked_at
        ? L("people.revoked")
        : a.live
          ? el("span", { class: "badge verdict-complete" }, L("people.live"))
          : L("people.notLive");
      const actions = el("td");
      if (!a.revoked_at) {
        const revoke = el("button", { type: "button", class: "small-button" }, L("people.revoke"));
        revoke.setAttribute("aria-label", `${revoke.textContent} ${a.user} ${a.sitting ?? a.institution}`);
        revoke.addEventListener("click", async () => {
          const reason = await askReason("people.revoke", "people.revokeReason");
          if (!reason) return;
          try {
            await call(`/api/v1/assignments/${a.id}/revoke`, { method: "POST", json: { reason } });
            flash("people.revokedFlash", { id: a.id });
            await loadAssignments();
          } catch (error) {
            flashError(error);
          }
        });
        actions.append(revoke);
      }
      return el(
        "tr",
        { dataset: { assignment: a.id, user: a.user } },
        el("th", { scope: "row" }, a.user),
        el("td", {}, target),
        el("td", { class: "nowrap" }, `${showInstant(a.valid_from)} – ${showInstant(a.valid_until)}`),
        el("td", {}, status),
        el("td", {}, a.granted_by ?? "–"),
        actions,
      );
    });
    return el(
      "table",
      { class: "grid compact", id: "assignments-table" },
      headRow([
        "people.col.user", "people.col.target", "people.col.valid", "people.col.status",
        "people.col.granted", "people.col.actions",
      ]),
      el("tbody", {}, rows),
    );
  }

  main.replaceChildren(
    el(
      "section",
      { "aria-labelledby": "people-heading", class: "admin-page" },
      el("h1", { id: "people-heading" }, L("people.heading")),
      secret,
      usersBody,
      createForm,
    ),
    el(
      "section",
      { "aria-labelledby": "assignments-heading", class: "admin-page" },
      el("h1", { id: "assignments-heading" }, L("people.assignments")),
      assignForm,
      filterForm,
      listBody,
    ),
  );
  loadUsers();
  loadAssignments();
  return view;
}
