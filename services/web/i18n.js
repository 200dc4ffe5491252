// Words of the page, zh-CN first. Text nodes carry their key (data-i18n) so switching the
// language rewrites them in place: a playing video is not torn down by a language switch.

const LANG_KEY = "examvault.lang";
export const LANGS = ["zh-CN", "en"];

const STRINGS = {
  "zh-CN": {
    "app.title": "考场录像证据",
    "app.subtitle": "外部质量督导 · 区县人社",
    "lang.switch": "English",
    "lang.switch.label": "切换到英文界面",
    "nav.skip": "跳到主要内容",
    "nav.logout": "退出登录",
    "nav.back": "← 返回场次列表",
    "nav.sittings": "场次",
    "nav.signedInAs": "当前用户",
    "role.admin": "市职鉴中心",
    "role.district_officer": "区县人社部门",
    "role.supervisor": "外部质量督导员",
    "role.institution": "鉴定机构",
    "role.camera_host": "录像主机",
    "login.heading": "登录",
    "login.intro": "请使用督导员或区县账号登录。",
    "login.username": "用户名",
    "login.password": "密码",
    "login.submit": "登录",
    "login.busy": "正在登录…",
    "login.expired": "登录已失效，请重新登录。",
    "login.loggedOut": "已退出登录。",
    "list.heading": "场次列表",
    "list.filter.status": "核验结论",
    "list.filter.all": "全部",
    "list.refresh": "刷新",
    "list.empty": "没有可查看的场次。",
    "list.count": "共 {n} 个场次",
    "list.loading": "正在加载…",
    "col.code": "场次编号",
    "col.room": "考场",
    "col.institution": "鉴定机构",
    "col.occupation": "职业（工种）/ 等级",
    "col.time": "考核时间",
    "col.verdict": "录像覆盖",
    "verdict.complete": "完整",
    "verdict.incomplete": "不完整",
    "verdict.missing": "缺失",
    "verdict.pending": "待定",
    "kind.theory": "理论",
    "kind.practical": "实操",
    "position.front": "前置摄像机",
    "position.back": "后置摄像机",
    "sitting.meta.room": "考场",
    "sitting.meta.institution": "鉴定机构",
    "sitting.meta.occupation": "职业（工种）",
    "sitting.meta.time": "考核时间",
    "sitting.meta.required": "应录区间",
    "sitting.meta.checked": "核验时间",
    "sitting.loading": "正在加载场次…",
    "coverage.heading": "录像覆盖",
    "coverage.ratio": "覆盖 {pct}%",
    "coverage.legend": "图例",
    "coverage.legend.covered": "有录像",
    "coverage.legend.gap": "缺口",
    "coverage.legend.health": "画面异常",
    "coverage.legend.outOfService": "不在用",
    "coverage.legend.cursor": "播放位置",
    "coverage.timeline": "{camera} 时间轴：方向键移动，回车键从该时刻播放",
    "coverage.noGaps": "无缺口",
    "coverage.inService": "在用 {start}–{end}",
    "coverage.outOfService": "不在用 {start}–{end}（无需录像）",
    "coverage.gaps": "缺口",
    "coverage.health": "画面异常",
    "coverage.noHealth": "无画面异常",
    "cause.not_received": "未收到录像",
    "cause.rejected": "文件被拒收（已隔离）",
    "cause.clock_suspect": "时钟可疑",
    "cause.purged": "已按保存期限清除",
    "cause.no_footage": "无录像",
    "cause.no_keyframe": "无关键帧",
    "health.black": "黑屏",
    "health.frozen": "画面冻结",
    "health.covered": "遮挡 / 模糊",
    "health.scene_mismatch": "场景与备案不符",
    "health.unchecked": "未完成画面检查",
    "health.check_failed": "无法读取录像，画面未检查",
    "health.damaged": "录像数据损坏",
    "play.heading": "录像回放",
    "play.at": "从该时刻播放（时:分:秒）",
    "play.go": "播放",
    "play.hint": "也可以点击上方时间轴上的任意位置。两路摄像机同时从该时刻播放。",
    "play.badTime": "请输入应录区间内的时间，格式 时:分:秒，例如 {example}。",
    "play.wallClock": "画面时间",
    "play.notStarted": "尚未播放",
    "play.loading": "正在准备录像…",
    "play.startedAt": "从 {start} 开始（所选 {asked}；回放从此前最近的关键帧起播）",
    "play.gapsAhead": "本段回放中的缺口（播放时直接跳过）",
    "play.noGaps": "本段回放没有缺口",
    "play.gapLine": "{start}–{end}：{cause}（在回放第 {media} 秒处跳过）",
    "play.skipped": "已跳过缺口 {start}–{end}（{cause}）",
    "play.inGapBefore": "所选时刻没有录像：回放从 {start} 开始",
    "play.noFootage": "该摄像机从所选时刻起没有录像。",
    "play.continue": "编码参数在 {at} 变化，正在从该处继续…",
    "play.ended": "回放结束",
    "play.sync": "两路同步：一路遇到缺口时停在缺口后，等另一路播到同一时刻再继续",
    "play.holding": "{at} 之前本摄像机没有录像：等待另一路播到此刻",
    "play.thumbs": "显示缩略图",
    "play.thumbsLabel": "{camera} 缩略图（每 {every} 秒一张；点击从该时刻播放）",
    "play.usePlayerTime": "用画面时间",
    "findings.heading": "督导记录",
    "findings.empty": "暂无督导记录。",
    "findings.closed": "复核已于 {at} 由 {by} 结束，记录不可再修改。",
    "findings.author": "记录人",
    "findings.revision": "第 {n} 版",
    "findings.withdrawn": "已撤回",
    "findings.revise": "修改",
    "findings.withdraw": "撤回",
    "findings.withdrawReason": "撤回原因",
    "findings.form.new": "新增督导记录",
    "findings.form.edit": "修改督导记录 #{id}",
    "findings.form.camera": "摄像机",
    "findings.form.category": "类别",
    "findings.form.from": "开始时刻（时:分:秒）",
    "findings.form.until": "结束时刻（可选）",
    "findings.form.text": "说明",
    "findings.form.submit": "保存记录",
    "findings.form.cancel": "取消修改",
    "findings.form.saved": "督导记录已保存。",
    "findings.form.withdrawn": "督导记录已撤回。",
    "findings.form.badFrom": "请填写开始时刻（时:分:秒）。",
    "findings.form.badUntil": "结束时刻格式不对，或早于开始时刻。",
    "category.substitution": "代考",
    "category.absent_assessor": "考评员缺席",
    "category.camera_blocked": "画面遮挡",
    "category.off_site": "非备案场所",
    "category.other": "其他",
    "segments.heading": "录像片段",
    "segments.count": "{camera}：{n} 个片段",
    "col.start": "开始",
    "col.end": "结束",
    "col.duration": "时长（秒）",
    "col.size": "大小",
    "col.format": "编码",
    "col.flags": "标记",
    "segments.purged": "已清除",
    "export.button": "导出证据包",
    "export.reason": "导出原因（将记入台账与清单）",
    "export.busy": "正在生成证据包…",
    "export.started": "证据包开始下载（边生成边下载）；下载完成后可用 examvault verify-export 校验。",
    "dialog.ok": "确定",
    "dialog.cancel": "取消",
    "error.network": "无法连接服务器，请检查网络后重试。",
    "error.required": "此项必填。",
  },
  en: {
    "app.title": "Exam-room video evidence",
    "app.subtitle": "External quality supervision · district offices",
    "lang.switch": "中文",
    "lang.switch.label": "Switch to Chinese",
    "nav.skip": "Skip to main content",
    "nav.logout": "Log out",
    "nav.sittings": "Sittings",
    "nav.back": "← Back to sittings",
    "nav.signedInAs": "Signed in as",
    "role.admin": "Municipal centre",
    "role.district_officer": "District officer",
    "role.supervisor": "External quality supervisor",
    "role.institution": "Institution",
    "role.camera_host": "Camera host",
    "login.heading": "Log in",
    "login.intro": "Log in with your supervisor or district account.",
    "login.username": "User name",
    "login.password": "Password",
    "login.submit": "Log in",
    "login.busy": "Logging in…",
    "login.expired": "Your session has ended; please log in again.",
    "login.loggedOut": "You are logged out.",
    "list.heading": "Sittings",
    "list.filter.status": "Verdict",
    "list.filter.all": "All",
    "list.refresh": "Refresh",
    "list.empty": "No sittings you may see.",
    "list.count": "{n} sitting(s)",
    "list.loading": "Loading…",
    "col.code": "Sitting",
    "col.room": "Room",
    "col.institution": "Institution",
    "col.occupation": "Occupation / level",
    "col.time": "Time",
    "col.verdict": "Coverage",
    "verdict.complete": "Complete",
    "verdict.incomplete": "Incomplete",
    "verdict.missing": "Missing",
    "verdict.pending": "Pending",
    "kind.theory": "Theory",
    "kind.practical": "Practical",
    "position.front": "Front camera",
    "position.back": "Back camera",
    "sitting.meta.room": "Room",
    "sitting.meta.institution": "Institution",
    "sitting.meta.occupation": "Occupation",
    "sitting.meta.time": "Time",
    "sitting.meta.required": "Required interval",
    "sitting.meta.checked": "Checked at",
    "sitting.loading": "Loading the sitting…",
    "coverage.heading": "Coverage",
    "coverage.ratio": "{pct}% covered",
    "coverage.legend": "Legend",
    "coverage.legend.covered": "Footage",
    "coverage.legend.gap": "Gap",
    "coverage.legend.health": "Health flag",
    "coverage.legend.outOfService": "not in service",
    "coverage.legend.cursor": "Playing",
    "coverage.timeline": "{camera} timeline: arrow keys move, Enter plays from there",
    "coverage.noGaps": "No gaps",
    "coverage.inService": "in service {start}–{end}",
    "coverage.outOfService": "not in service {start}–{end} (no footage required)",
    "coverage.gaps": "Gaps",
    "coverage.health": "Health flags",
    "coverage.noHealth": "No health flags",
    "cause.not_received": "not received",
    "cause.rejected": "file rejected (quarantined)",
    "cause.clock_suspect": "clock suspect",
    "cause.purged": "purged at the end of retention",
    "cause.no_footage": "no footage",
    "cause.no_keyframe": "no keyframe",
    "health.black": "black",
    "health.frozen": "frozen",
    "health.covered": "covered / blurred",
    "health.scene_mismatch": "scene mismatch",
    "health.unchecked": "not checked (time budget ran out)",
    "health.check_failed": "not checked (footage could not be read)",
    "health.damaged": "damaged footage",
    "play.heading": "Playback",
    "play.at": "Play from (HH:MM:SS)",
    "play.go": "Play",
    "play.hint": "Or click anywhere on a timeline above. Both cameras play from that instant.",
    "play.badTime": "Enter a time inside the required interval as HH:MM:SS, e.g. {example}.",
    "play.wallClock": "Wall clock",
    "play.notStarted": "Not playing",
    "play.loading": "Preparing the footage…",
    "play.startedAt": "From {start} (chosen {asked}; playback starts at the keyframe before it)",
    "play.gapsAhead": "Gaps in this playback (skipped while playing)",
    "play.noGaps": "No gaps in this playback",
    "play.gapLine": "{start}–{end}: {cause} (cut out at {media} s of playback)",
    "play.skipped": "Skipped gap {start}–{end} ({cause})",
    "play.inGapBefore": "No footage at the chosen instant: playback starts at {start}",
    "play.noFootage": "This camera has no footage from the chosen instant on.",
    "play.continue": "Codec parameters change at {at}; continuing from there…",
    "play.ended": "Playback ended",
    "play.sync": "Keep in step: a camera that skips a gap waits until the other reaches the same instant",
    "play.holding": "This camera has no footage before {at}: waiting for the other camera to get there",
    "play.thumbs": "Show thumbnails",
    "play.thumbsLabel": "{camera} thumbnails (one per {every} s; click to play from there)",
    "play.usePlayerTime": "Use player time",
    "findings.heading": "Findings",
    "findings.empty": "No findings yet.",
    "findings.closed": "Review closed at {at} by {by}; findings are final.",
    "findings.author": "Author",
    "findings.revision": "revision {n}",
    "findings.withdrawn": "Withdrawn",
    "findings.revise": "Revise",
    "findings.withdraw": "Withdraw",
    "findings.withdrawReason": "Reason for withdrawing",
    "findings.form.new": "New finding",
    "findings.form.edit": "Revise finding #{id}",
    "findings.form.camera": "Camera",
    "findings.form.category": "Category",
    "findings.form.from": "From (HH:MM:SS)",
    "findings.form.until": "Until (optional)",
    "findings.form.text": "Text",
    "findings.form.submit": "Save finding",
    "findings.form.cancel": "Cancel revision",
    "findings.form.saved": "Finding saved.",
    "findings.form.withdrawn": "Finding withdrawn.",
    "findings.form.badFrom": "Enter the start instant (HH:MM:SS).",
    "findings.form.badUntil": "The end instant is malformed or before the start.",
    "category.substitution": "Substitution",
    "category.absent_assessor": "Assessor absent",
    "category.camera_blocked": "Camera blocked",
    "category.off_site": "Unregistered site",
    "category.other": "Other",
    "segments.heading": "Segments",
    "segments.count": "{camera}: {n} segment(s)",
    "col.start": "Start",
    "col.end": "End",
    "col.duration": "Duration (s)",
    "col.size": "Size",
    "col.format": "Format",
    "col.flags": "Flags",
    "segments.purged": "purged",
    "export.button": "Export evidence",
    "export.reason": "Reason for the export (goes into the ledger and the manifest)",
    "export.busy": "Building the evidence package…",
    "export.started": "The evidence package is downloading as it is built; check it with examvault verify-export.",
    "dialog.ok": "OK",
    "dialog.cancel": "Cancel",
    "error.network": "The server cannot be reached; check the network and retry.",
    "error.required": "Required.",
  },
};

// Each console page brings its own words (a module per page, one place per word): merged in
// here at import time, before the first render.
export function addStrings(more) {
  for (const language of LANGS) Object.assign(STRINGS[language], more[language] ?? {});
}

let current = LANGS.includes(localStorage.getItem(LANG_KEY))
  ? localStorage.getItem(LANG_KEY)
  : "zh-CN";

export function lang() {
  return current;
}

export function t(key, vars = {}) {
  const text = STRINGS[current][key] ?? STRINGS["zh-CN"][key] ?? key;
  return text.replace(/\{(\w+)\}/g, (_, name) => {
    const value = vars[name];
    // A variable may itself be a key (a cause inside a gap line), marked with "@".
    if (typeof value === "string" && value.startsWith("@")) return t(value.slice(1));
    return value ?? "";
  });
}

// A text node that follows the language: a <span> (or given tag) carrying its key and vars.
export function tx(key, vars, tag = "span") {
  const node = document.createElement(tag);
  setText(node, key, vars);
  return node;
}

export function setText(node, key, vars) {
  node.dataset.i18n = key;
  if (vars) node.dataset.i18nVars = JSON.stringify(vars);
  else delete node.dataset.i18nVars;
  node.textContent = t(key, vars);
}

// An attribute that follows the language (title, aria-label, placeholder).
export function setAttr(node, attr, key, vars) {
  node.dataset[`i18nAttr${attr.replace(/(^|-)(\w)/g, (_, __, c) => c.toUpperCase())}`] =
    JSON.stringify([attr, key, vars ?? null]);
  node.setAttribute(attr, t(key, vars));
}

// A message the API wrote in both languages (message_zh, message).
export function setMessage(node, zh, en) {
  delete node.dataset.i18n;
  node.dataset.msgZh = zh;
  node.dataset.msgEn = en;
  node.textContent = current === "en" ? en : zh;
}

export function applyLanguage(root = document) {
  document.documentElement.lang = current;
  document.title = `${t("app.title")} · examvault`;
  for (const node of root.querySelectorAll("[data-i18n]")) {
    const vars = node.dataset.i18nVars ? JSON.parse(node.dataset.i18nVars) : undefined;
    node.textContent = t(node.dataset.i18n, vars);
  }
  for (const node of root.querySelectorAll("[data-msg-zh]")) {
    node.textContent = current === "en" ? node.dataset.msgEn : node.dataset.msgZh;
  }
  for (const node of root.querySelectorAll("*")) {
    for (const [name, value] of Object.entries(node.dataset)) {
      if (!name.startsWith("i18nAttr")) continue;
      const [attr, key, vars] = JSON.parse(value);
      node.setAttribute(attr, t(key, vars ?? undefined));
    }
  }
}

export function setLang(next) {
  current = LANGS.includes(next) ? next : "zh-CN";
  localStorage.setItem(LANG_KEY, current);
  applyLanguage();
}
