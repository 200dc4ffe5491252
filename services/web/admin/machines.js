// The centre's machines page (录像主机): camera-host tokens per camera (made here and shown
// once, listed without the secret, revoked with a reason), each host's last upload, and the
// backlog its push daemon reported (or "not reported": the server cannot see a host's disk).

import { call } from "../api.js";
import { showInstant } from "../clock.js";
import { L, el, errorNode } from "../dom.js";
import { addStrings, setAttr, setText } from "../i18n.js";
import { askReason, flash, flashError } from "../ui.js";
import { bytesNode, field, table } from "./records.js";

addStrings({
  "zh-CN": {
    "machines.nav": "录像主机",
    "machines.heading": "录像主机与令牌",
    "machines.intro": "每台考场录像主机使用自己的令牌上传所负责摄像机的录像。令牌只在创建时显示一次，服务器只保存其哈希。",
    "machines.create": "新建主机令牌",
    "machines.name": "主机名称",
    "machines.cameras": "摄像机（可多选）",
    "machines.expires": "有效期至（可选）",
    "machines.submit": "创建令牌",
    "machines.busy": "正在创建…",
    "machines.chooseCamera": "请至少选择一台摄像机。",
    "machines.once": "令牌只显示这一次，请立即复制并配置到主机（token_file），关闭后无法再查看。",
    "machines.token": "新令牌 #{id}",
    "machines.copy": "复制",
    "machines.copied": "已复制到剪贴板。",
    "machines.dismiss": "我已保存，关闭",
    "machines.hosts": "主机列表",
    "machines.none": "还没有录像主机令牌。",
    "machines.col.host": "主机",
    "machines.col.cameras": "摄像机",
    "machines.col.state": "状态",
    "machines.col.upload": "最近上传",
    "machines.col.backlog": "待上传（主机上报）",
    "machines.col.error": "最近错误",
    "machines.col.action": "操作",
    "machines.live": "有效",
    "machines.revoked": "已撤销 {at}",
    "machines.expired": "已过期 {at}",
    "machines.created": "创建于 {at}",
    "machines.noUpload": "尚无上传",
    "machines.upload": "{at} · {camera}",
    "machines.notReported": "未上报",
    "machines.backlog": "{files} 个文件",
    "machines.reportedAt": "上报于 {at}",
    "machines.unfinished": "{n} 个正在录制",
    "machines.diskLow": "磁盘空间不足",
    "machines.noError": "无",
    "machines.revoke": "撤销",
    "machines.revokeLabel": "撤销 {name}（#{id}）",
    "machines.revokeTitle": "撤销主机令牌 #{id}（{name}）",
    "machines.revokeReason": "撤销原因（记入台账）；撤销后该主机立即无法上传",
    "machines.revokedDone": "令牌 #{id} 已撤销。",
    "machines.perCamera": "各摄像机的有效主机令牌",
    "machines.col.camera": "摄像机",
    "machines.col.room": "考场",
    "machines.col.institution": "鉴定机构",
    "machines.col.tokens": "有效令牌",
    "machines.noToken": "无（该摄像机无法通过 HTTP 上传）",
  },
  en: {
    "machines.nav": "Camera hosts",
    "machines.heading": "Camera hosts and their tokens",
    "machines.intro": "Each exam-room recording host pushes its cameras' footage with a token of its own. A token is shown once, when it is made; the server keeps only its hash.",
    "machines.create": "New host token",
    "machines.name": "Host name",
    "machines.cameras": "Cameras (choose one or more)",
    "machines.expires": "Valid until (optional)",
    "machines.submit": "Create token",
    "machines.busy": "Creating…",
    "machines.chooseCamera": "Choose at least one camera.",
    "machines.once": "The token is shown this once: copy it into the host's token_file now; it cannot be shown again.",
    "machines.token": "New token #{id}",
    "machines.copy": "Copy",
    "machines.copied": "Copied to the clipboard.",
    "machines.dismiss": "Saved it, close",
    "machines.hosts": "Hosts",
    "machines.none": "No camera-host token yet.",
    "machines.col.host": "Host",
    "machines.col.cameras": "Cameras",
    "machines.col.state": "State",
    "machines.col.upload": "Last upload",
    "machines.col.backlog": "Waiting (host's report)",
    "machines.col.error": "Last error",
    "machines.col.action": "Action",
    "machines.live": "live",
    "machines.revoked": "revoked {at}",
    "machines.expired": "expired {at}",
    "machines.created": "created {at}",
    "machines.noUpload": "no upload yet",
    "machines.upload": "{at} · {camera}",
    "machines.notReported": "not reported",
    "machines.backlog": "{files} files",
    "machines.reportedAt": "reported {at}",
    "machines.unfinished": "{n} still recording",
    "machines.diskLow": "disk low",
    "machines.noError": "none",
    "machines.revoke": "Revoke",
    "machines.revokeLabel": "Revoke {name} (#{id})",
    "machines.revokeTitle": "Revoke host token #{id} ({name})",
    "machines.revokeReason": "Reason (goes into the ledger); the host cannot push from then on",
    "machines.revokedDone": "Token #{id} revoked.",
    "machines.perCamera": "Live host tokens per camera",
    "machines.col.camera": "Camera",
    "machines.col.room": "Room",
    "machines.col.institution": "Institution",
    "machines.col.tokens": "Live tokens",
    "machines.noToken": "none (it cannot push over HTTP)",
  },
});

export function renderMachines(main) {
  const view = { alive: true, dispose() { this.alive = false; } };
  const shown = el("div", { id: "machines-shown", "aria-live": "polite" });
  const hostsBox = el("div", { id: "machines-hosts" }, el("p", { class: "muted" }, L("records.loading")));
  const camerasBox = el("div", { id: "machines-cameras" });
  const formBox = el("div", { id: "machines-form-box" });
  main.replaceChildren(
    el(
      "section",
      { "aria-labelledby": "machines-heading" },
      el("h1", { id: "machines-heading" }, L("machines.heading")),
      el("p", { class: "muted" }, L("machines.intro")),
      formBox,
      shown,
    ),
    el(
      "section",
      { "aria-labelledby": "machines-hosts-heading" },
      el("h2", { id: "machines-hosts-heading" }, L("machines.hosts")),
      hostsBox,
    ),
    el(
      "section",
      { "aria-labelledby": "machines-cameras-heading" },
      el("h2", { id: "machines-cameras-heading" }, L("machines.perCamera")),
      camerasBox,
    ),
  );
  const refresh = async () => {
    let answer;
    try {
      answer = await call("/api/v1/machines");
    } catch (error) {
      if (view.alive) hostsBox.replaceChildren(errorNode(error));
      return;
    }
    if (!view.alive) return;
    if (!formBox.firstChild) formBox.append(createForm(answer.cameras, shown, refresh));
    hostsBox.replaceChildren(hostsTable(answer.hosts, refresh));
    camerasBox.replaceChildren(camerasTable(answer.cameras));
  };
  refresh();
  return view;
}

function createForm(cameras, shown, refresh) {
  const name = el("input", { id: "machines-name", required: true, maxlength: 200, autocomplete: "off" });
  const choice = el("select", { id: "machines-cameras-select", multiple: true, size: Math.min(6, Math.max(2, cameras.length)) });
  for (const camera of cameras) {
    if (camera.retired_at) continue;
    choice.append(el("option", { value: camera.code }, `${camera.code} · ${camera.room} · ${camera.institution}`));
  }
  const expires = el("input", { id: "machines-expires", type: "date" });
  const error = el("div", { id: "machines-error" });
  const submit = el("button", { type: "submit", class: "primary", id: "machines-submit" }, L("machines.submit"));
  const form = el(
    "form",
    { class: "records-form", id: "machines-form", "aria-labelledby": "machines-create-heading" },
    el("h2", { id: "machines-create-heading" }, L("machines.create")),
    el("div", { class: "form-grid" }, ...labelled("machines.name", name), ...labelled("machines.cameras", choice), ...labelled("machines.expires", expires)),
    error,
    el("div", { class: "actions" }, submit),
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    error.replaceChildren();
    const chosen = [...choice.selectedOptions].map((option) => option.value);
    if (!chosen.length) {
      error.replaceChildren(el("p", { class: "error", role: "alert" }, L("machines.chooseCamera")));
      choice.focus();
      return;
    }
    submit.disabled = true;
    try {
      const body = { name: name.value.trim(), role: "camera_host", cameras: chosen };
      // The end of the chosen local day, in the service's zone.
      if (expires.value) body.expires_at = `${expires.value}T23:59:59+08:00`;
      const made = await call("/api/v1/tokens", { method: "POST", json: body });
      showOnce(shown, made);
      form.reset();
      await refresh();
    } catch (failure) {
      error.replaceChildren(errorNode(failure));
    } finally {
      submit.disabled = false;
    }
  });
  return form;
}

function labelled(key, control) {
  return [el("label", { for: control.id }, L(key)), control];
}

// The secret, this once: in a read-only field to select or copy, gone when dismissed.
function showOnce(box, made) {
  const value = el("input", { id: "machines-secret", readonly: true, value: made.token, class: "code machines-secret", spellcheck: "false" });
  const copy = el("button", { type: "button", id: "machines-copy" }, L("machines.copy"));
  const dismiss = el("button", { type: "button", id: "machines-dismiss" }, L("machines.dismiss"));
  copy.addEventListener("click", async () => {
    value.select();
    try {
      await navigator.clipboard.writeText(made.token);
      flash("machines.copied");
    } catch {
      document.execCommand?.("copy");
    }
  });
  dismiss.addEventListener("click", () => box.replaceChildren());
  box.replaceChildren(
    el(
      "div",
      { class: "card machines-once", role: "region", "aria-labelledby": "machines-once-heading" },
      el("h3", { id: "machines-once-heading" }, L("machines.token", { id: made.id })),
      el("p", { class: "notice" }, L("machines.once")),
      el("label", { for: "machines-secret", class: "machines-visually-hidden" }, L("machines.token", { id: made.id })),
      value,
      el("div", { class: "actions" }, copy, dismiss),
    ),
  );
  value.focus();
  value.select();
}

function stateCell(host) {
  if (host.revoked_at) return el("span", { class: "badge machines-off" }, L("machines.revoked", { at: showInstant(host.revoked_at) }));
  if (!host.live) return el("span", { class: "badge machines-off" }, L("machines.expired", { at: showInstant(host.expires_at) }));
  return el("span", { class: "badge machines-live" }, L("machines.live"));
}

function hostsTable(hosts, refresh) {
  if (!hosts.length) return el("p", { class: "muted", id: "machines-none" }, L("machines.none"));
  return table(
    "machines-table",
    ["machines.col.host", "machines.col.cameras", "machines.col.state", "machines.col.upload", "machines.col.backlog", "machines.col.error", "machines.col.action"],
    hosts.map((host) => {
      const report = host.report;
      const revoke = host.revoked_at
        ? null
        : el("button", { type: "button", class: "small-button" }, L("machines.revoke"));
      // The visible word first, then whose token: a screen reader's list of buttons tells them apart.
      if (revoke) setAttr(revoke, "aria-label", "machines.revokeLabel", { id: host.id, name: host.name });
      revoke?.addEventListener("click", async () => {
        const reason = await askReason("machines.revokeTitle", "machines.revokeReason");
        if (!reason) return;
        try {
          await call(`/api/v1/tokens/${host.id}/revoke`, { method: "POST", json: { reason } });
          flash("machines.revokedDone", { id: host.id });
          await refresh();
        } catch (error) {
          flashError(error);
        }
      });
      // askReason's title is a key; the host's name goes in through the dialog's own words.
      revoke?.addEventListener("click", () => {
        setText(document.getElementById("reason-title"), "machines.revokeTitle", { id: host.id, name: host.name });
      });
      return el(
        "tr",
        { dataset: { host: host.id } },
        el("th", { scope: "row" }, host.name, el("div", { class: "small muted" }, `#${host.id} · `, L("machines.created", { at: showInstant(host.created_at) }))),
        el("td", { class: "code small" }, host.cameras.join(", ")),
        el("td", {}, stateCell(host)),
        el(
          "td",
          { class: "nowrap" },
          host.last_upload
            ? [L("machines.upload", { at: showInstant(host.last_upload.received_at), camera: host.last_upload.camera }), el("div", { class: "small muted" }, bytesNode(host.last_upload.size))]
            : el("span", { class: "muted" }, L("machines.noUpload")),
        ),
        el(
          "td",
          { class: "machines-backlog" },
          report
            ? [
                L("machines.backlog", { files: report.backlog_files }),
                " · ",
                bytesNode(report.backlog_bytes),
                report.unfinished_files ? el("div", { class: "small muted" }, L("machines.unfinished", { n: report.unfinished_files })) : null,
                report.disk_low ? el("div", { class: "badge flag" }, L("machines.diskLow")) : null,
                el("div", { class: "small muted" }, L("machines.reportedAt", { at: showInstant(report.reported_at) })),
              ]
            : el("span", { class: "muted" }, L("machines.notReported")),
        ),
        el(
          "td",
          { class: "small" },
          report?.last_error
            ? [report.last_error, report.last_error_at ? el("div", { class: "muted" }, report.last_error_at) : null]
            : el("span", { class: "muted" }, report ? L("machines.noError") : "—"),
        ),
        el("td", {}, revoke),
      );
    }),
  );
}

function camerasTable(cameras) {
  return table(
    "machines-cameras-table",
    ["machines.col.camera", "machines.col.room", "machines.col.institution", "machines.col.tokens"],
    cameras.map((camera) =>
      el(
        "tr",
        { dataset: { camera: camera.code } },
        el("th", { scope: "row", class: "code" }, camera.code),
        el("td", { class: "code" }, camera.room),
        el("td", {}, camera.institution),
        el("td", {}, camera.hosts.length ? camera.hosts.map((id) => `#${id}`).join(", ") : el("span", { class: "muted" }, L("machines.noToken"))),
      ),
    ),
  );
}
