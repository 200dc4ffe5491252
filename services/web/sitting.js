// One sitting: its verdict, coverage per camera on a timeline, both cameras' players side by
// side, findings, segments and the evidence export.

import { call, footageLink } from "./api.js";
import { parseInstant, resolveClock, showDateTime, showInstant, showSpan, showTime, toRfc3339 } from "./clock.js";
import { L, el, errorNode } from "./dom.js";
import { addStrings, setAttr, setText, t } from "./i18n.js";
import { Player } from "./player.js";
import { askReason, flash, flashError, verdictBadge } from "./ui.js";

const CATEGORIES = ["substitution", "absent_assessor", "camera_blocked", "off_site", "other"];
const POSITION_ORDER = { front: 0, back: 1 };
const FINDING_AUTHORS = ["supervisor", "admin"];
// Roles that see verdicts only: no findings, no export (the API refuses them anyway).
const VERDICTS_ONLY = ["institution"];

addStrings({
  "zh-CN": {
    "player.meta.district": "所属区县",
    "player.meta.site": "鉴定场所",
    "player.where.room": "考场 {room}（{kind}）",
    "player.speed": "播放速度",
    "player.speed.title": "{rate} 倍速（快捷键 {key}）",
    "player.kind.gap": "缺口",
    "player.kind.problem": "画面异常",
    "player.kind.finding": "督导记录",
    "player.kind.gap.plural": "缺口",
    "player.kind.problem.plural": "画面异常",
    "player.kind.finding.plural": "督导记录",
    "player.jump.previous": "上一个",
    "player.jump.next": "下一个",
    "player.jump.previous.item": "上一条",
    "player.jump.next.item": "下一条",
    "player.jump.previous.gap": "上一个缺口",
    "player.jump.next.gap": "下一个缺口",
    "player.jump.previous.problem": "上一个画面异常",
    "player.jump.next.problem": "下一个画面异常",
    "player.jump.previous.finding": "上一条督导记录",
    "player.jump.next.finding": "下一条督导记录",
    "player.jump.none.next.gap": "此后没有缺口。",
    "player.jump.none.previous.gap": "此前没有缺口。",
    "player.jump.none.next.problem": "此后没有画面异常。",
    "player.jump.none.previous.problem": "此前没有画面异常。",
    "player.jump.none.next.finding": "此后没有督导记录。",
    "player.jump.none.previous.finding": "此前没有督导记录。",
    "player.jump.none.next.any": "此后没有缺口、画面异常或督导记录。",
    "player.jump.none.previous.any": "此前没有缺口、画面异常或督导记录。",
    "player.jump.to": "已跳到{kind} {start}{end}：{position} {camera}，{what}",
    "player.keys.heading": "键盘快捷键",
    "player.keys.note": "在输入框中打字时快捷键不起作用。",
    "player.keys.space": "空格",
    "player.keys.playPause": "两路同时播放 / 暂停",
    "player.keys.arrows": "← / →",
    "player.keys.seek": "后退 / 前进 5 秒",
    "player.keys.shiftArrows": "Shift + ← / →",
    "player.keys.seekLong": "后退 / 前进 30 秒",
    "player.keys.brackets": "[ / ]",
    "player.keys.jump": "上一个 / 下一个缺口、画面异常或督导记录",
    "player.keys.digits": "1 2 3 4",
    "player.keys.speed": "播放速度 1× 2× 4× 8×",
    "player.keys.question": "?",
    "player.keys.help": "打开 / 收起本说明",
  },
  en: {
    "player.meta.district": "District",
    "player.meta.site": "Site",
    "player.where.room": "room {room} ({kind})",
    "player.speed": "Speed",
    "player.speed.title": "{rate}× speed (key {key})",
    "player.kind.gap": "gap",
    "player.kind.problem": "picture problem",
    "player.kind.finding": "finding",
    "player.kind.gap.plural": "Gaps",
    "player.kind.problem.plural": "Picture problems",
    "player.kind.finding.plural": "Findings",
    "player.jump.previous": "Previous",
    "player.jump.next": "Next",
    "player.jump.previous.item": "Previous",
    "player.jump.next.item": "Next",
    "player.jump.previous.gap": "Previous gap",
    "player.jump.next.gap": "Next gap",
    "player.jump.previous.problem": "Previous picture problem",
    "player.jump.next.problem": "Next picture problem",
    "player.jump.previous.finding": "Previous finding",
    "player.jump.next.finding": "Next finding",
    "player.jump.none.next.gap": "No gap after this point.",
    "player.jump.none.previous.gap": "No gap before this point.",
    "player.jump.none.next.problem": "No picture problem after this point.",
    "player.jump.none.previous.problem": "No picture problem before this point.",
    "player.jump.none.next.finding": "No finding after this point.",
    "player.jump.none.previous.finding": "No finding before this point.",
    "player.jump.none.next.any": "No gap, picture problem or finding after this point.",
    "player.jump.none.previous.any": "No gap, picture problem or finding before this point.",
    "player.jump.to": "Jumped to {kind} {start}{end}: {position} {camera}, {what}",
    "player.keys.heading": "Keyboard shortcuts",
    "player.keys.note": "Shortcuts do nothing while you type in a field.",
    "player.keys.space": "Space",
    "player.keys.playPause": "play / pause both cameras",
    "player.keys.arrows": "← / →",
    "player.keys.seek": "back / forward 5 s",
    "player.keys.shiftArrows": "Shift + ← / →",
    "player.keys.seekLong": "back / forward 30 s",
    "player.keys.brackets": "[ / ]",
    "player.keys.jump": "previous / next gap, picture problem or finding",
    "player.keys.digits": "1 2 3 4",
    "player.keys.speed": "speed 1× 2× 4× 8×",
    "player.keys.question": "?",
    "player.keys.help": "show / hide this list",
  },
});

const byPosition = (a, b) =>
  (POSITION_ORDER[a.position] ?? 9) - (POSITION_ORDER[b.position] ?? 9) ||
  a.camera.localeCompare(b.camera);

// A camera replaced mid-sitting comes before its replacement: same position, earlier service.
const byPositionThenService = (a, b) =>
  (POSITION_ORDER[a.position] ?? 9) - (POSITION_ORDER[b.position] ?? 9) ||
  a.fromMs - b.fromMs ||
  a.camera.localeCompare(b.camera);

// Each camera is required only over the part of the sitting it was in service (its own
// required_start/required_end); a report without them means the whole interval.
function inService(camera, coverage) {
  const from = camera.required_start ?? coverage.required_start;
  const until = camera.required_end ?? coverage.required_end;
  const [fromMs, untilMs] = [parseInstant(from).ms, parseInstant(until).ms];
  return { ...camera, from, until, fromMs, untilMs };
}

// `options.at` (RFC 3339, from a link such as the findings page's) starts both players there.
export function renderSitting(container, code, me, options = {}) {
  const view = {
    alive: true,
    players: [],
    cleanups: [],
    dispose() {
      this.alive = false;
      for (const player of this.players) player.stop();
      for (const cleanup of this.cleanups) cleanup();
    },
  };
  container.replaceChildren(el("p", { class: "muted" }, L("sitting.loading")));
  load(container, code, me, view, options);
  return view;
}

async function load(container, code, me, view, options) {
  const base = `/api/v1/sittings/${encodeURIComponent(code)}`;
  let summary, coverage, segments;
  try {
    [summary, coverage, segments] = await Promise.all([
      call(base),
      call(`${base}/coverage`),
      call(`${base}/segments`),
    ]);
  } catch (error) {
    if (!view.alive) return;
    container.replaceChildren(backLink(), errorNode(error));
    return;
  }
  if (!view.alive) return;
  const start = parseInstant(coverage.required_start);
  const ctx = {
    code,
    base,
    me,
    view,
    offsetMin: start.offsetMin,
    startMs: start.ms,
    endMs: parseInstant(coverage.required_end).ms,
    requiredStart: coverage.required_start,
    requiredEnd: coverage.required_end,
    cameras: coverage.cameras
      .map((camera) => inService(camera, coverage))
      .sort(byPositionThenService),
    timelines: new Map(),
    findingsForm: null,
    // The speed both players run at, and the instant last asked for (a jump, a seek, a typed
    // time): until the picture reaches it, "where we are" is that instant.
    speed: 1,
    requestedMs: null,
    findings: [],
  };
  ctx.playAll = (ms) => playAll(ctx, ms);

  const verdictsOnly = VERDICTS_ONLY.includes(me.role);
  const sections = [
    backLink(),
    headerSection(ctx, summary, coverage, verdictsOnly),
    coverageSection(ctx),
    playbackSection(ctx),
    verdictsOnly ? null : findingsSection(ctx),
    segmentsSection(ctx, segments),
  ];
  container.replaceChildren(...sections.filter(Boolean));
  if (!verdictsOnly) {
    const onKey = (event) => shortcut(ctx, event);
    document.addEventListener("keydown", onKey);
    view.cleanups.push(() => document.removeEventListener("keydown", onKey));
  }
  const at = options.at ? parseInstantOrNull(options.at) : null;
  if (at !== null && at >= ctx.startMs && at <= ctx.endMs && !verdictsOnly) {
    for (const timeline of ctx.timelines.values()) timeline.setPick(at);
    ctx.playAll(at);
  }
}

function parseInstantOrNull(text) {
  try {
    return parseInstant(text).ms;
  } catch {
    return null;
  }
}

function backLink() {
  return el("p", {}, el("a", { href: "#/", class: "back", id: "back-link" }, L("nav.back")));
}

// "Name (CODE)" when the API gives the name, the code alone otherwise.
const named = (name, code) => (name ? `${name}（${code}）` : code);

function headerSection(ctx, summary, coverage, verdictsOnly) {
  const meta = [
    ["sitting.meta.institution", named(summary.institution_name, summary.institution)],
    summary.district ? ["player.meta.district", summary.district] : null,
    ["sitting.meta.room", `${summary.room} · ${t(`kind.${summary.kind}`)}`],
    summary.site_address ? ["player.meta.site", summary.site_address] : null,
    ["sitting.meta.occupation", `${summary.occupation} / ${summary.level}`],
    ["sitting.meta.time", showSpan(summary.starts_at, summary.ends_at)],
    ["sitting.meta.required", showSpan(coverage.required_start, coverage.required_end)],
    ["sitting.meta.checked", showInstant(coverage.computed_at)],
  ];
  const list = el("dl", { class: "meta" });
  for (const [key, value] of meta.filter(Boolean)) {
    list.append(el("dt", {}, L(key)), el("dd", {}, value));
  }
  // Who and where at a glance, under the code: the institution's and the room's names.
  const where = el(
    "p",
    { class: "sitting-where", id: "sitting-where" },
    el("span", { class: "sitting-where-institution" }, summary.institution_name ?? summary.institution),
    " · ",
    L("player.where.room", { room: summary.room, kind: `@kind.${summary.kind}` }),
    summary.site_address ? [" · ", summary.site_address] : null,
  );
  const exportButton = verdictsOnly
    ? null
    : el("button", { type: "button", id: "export-button", class: "primary" }, L("export.button"));
  exportButton?.addEventListener("click", () => exportEvidence(ctx, exportButton));
  return el(
    "section",
    { class: "sitting-head", "aria-labelledby": "sitting-heading" },
    el(
      "div",
      { class: "section-head" },
      el(
        "h1",
        { id: "sitting-heading" },
        el("span", { class: "code" }, summary.code),
        " ",
        el("span", { id: "sitting-verdict" }, verdictBadge(coverage.status)),
      ),
      exportButton,
    ),
    where,
    list,
  );
}

// --- coverage ---------------------------------------------------------------------------

function percentOf(ctx, ms) {
  return ((ms - ctx.startMs) / (ctx.endMs - ctx.startMs)) * 100;
}

function span(ctx, startText, endText, className, titleKey, vars) {
  const from = Math.max(parseInstant(startText).ms, ctx.startMs);
  const to = Math.min(parseInstant(endText).ms, ctx.endMs);
  const node = el("span", {
    class: className,
    style: {
      left: `${percentOf(ctx, from)}%`,
      width: `${Math.max(percentOf(ctx, to) - percentOf(ctx, from), 0.3)}%`,
    },
  });
  setAttr(node, "title", titleKey, vars);
  return node;
}

function coverageSection(ctx) {
  const rows = ctx.cameras.map((camera) => coverageRow(ctx, camera));
  const thumbsButton = el("button", { type: "button", id: "thumbs-button" }, L("play.thumbs"));
  thumbsButton.addEventListener("click", () => {
    thumbsButton.disabled = true;
    for (const camera of ctx.cameras) loadThumbnails(ctx, camera);
  });
  const legend = el(
    "p",
    { class: "legend small", "aria-label": t("coverage.legend") },
    el("span", { class: "swatch covered" }),
    L("coverage.legend.covered"),
    el("span", { class: "swatch gap" }),
    L("coverage.legend.gap"),
    el("span", { class: "swatch health" }),
    L("coverage.legend.health"),
    ctx.cameras.some((camera) => partlyInService(ctx, camera))
      ? [el("span", { class: "swatch out-of-service" }), L("coverage.legend.outOfService")]
      : null,
    el("span", { class: "swatch cursor" }),
    L("coverage.legend.cursor"),
  );
  return el(
    "section",
    { "aria-labelledby": "coverage-heading", id: "coverage" },
    el(
      "div",
      { class: "section-head" },
      el("h2", { id: "coverage-heading" }, L("coverage.heading")),
      thumbsButton,
    ),
    legend,
    rows,
  );
}

function partlyInService(ctx, camera) {
  return camera.fromMs > ctx.startMs || camera.untilMs < ctx.endMs;
}

// The parts of the sitting outside the camera's service: neither required nor a gap.
function outOfServiceBands(ctx, camera) {
  const parts = [];
  if (camera.fromMs > ctx.startMs) parts.push([ctx.requiredStart, camera.from]);
  if (camera.untilMs < ctx.endMs) parts.push([camera.until, ctx.requiredEnd]);
  return parts.map(([start, end]) => {
    const node = span(ctx, start, end, "out-of-service", "coverage.outOfService", {
      start: showInstant(start, false),
      end: showInstant(end, false),
    });
    Object.assign(node.dataset, { start, end });
    return node;
  });
}

function coverageRow(ctx, camera) {
  const vars = { camera: camera.camera };
  const bar = el("div", {
    class: "timeline",
    role: "slider",
    tabindex: "0",
    "aria-valuemin": "0",
    "aria-valuemax": String(Math.round((ctx.endMs - ctx.startMs) / 1000)),
    "aria-valuenow": "0",
    "aria-valuetext": showTime(ctx.startMs, ctx.offsetMin),
    dataset: { camera: camera.camera, requiredStart: camera.from, requiredEnd: camera.until },
  });
  setAttr(bar, "aria-label", "coverage.timeline", vars);
  bar.append(...outOfServiceBands(ctx, camera));
  for (const gap of camera.gaps) {
    bar.append(
      span(ctx, gap.start, gap.end, "gap", "play.gapLine", {
        start: showInstant(gap.start, false),
        end: showInstant(gap.end, false),
        cause: `@cause.${gap.cause}`,
        media: "–",
      }),
    );
  }
  for (const flag of camera.health) {
    const node = span(ctx, flag.start, flag.end, `health health-${flag.kind}`, `health.${flag.kind}`);
    node.dataset.kind = flag.kind;
    node.title = `${showInstant(flag.start, false)}–${showInstant(flag.end, false)} ${node.title}`;
    bar.append(node);
  }
  const pick = el("span", { class: "pick", hidden: true });
  const cursor = el("span", { class: "cursor", hidden: true });
  bar.append(pick, cursor);
  const thumbs = el("div", { class: "thumbs", id: `thumbs-${camera.camera}` });
  const timeline = { bar, pick, cursor, thumbs, pickMs: ctx.startMs };
  ctx.timelines.set(camera.camera, timeline);

  const setPick = (ms) => {
    timeline.pickMs = Math.min(Math.max(ms, ctx.startMs), ctx.endMs);
    pick.hidden = false;
    pick.style.left = `${percentOf(ctx, timeline.pickMs)}%`;
    bar.setAttribute("aria-valuenow", String(Math.round((timeline.pickMs - ctx.startMs) / 1000)));
    bar.setAttribute("aria-valuetext", showTime(timeline.pickMs, ctx.offsetMin));
  };
  timeline.setPick = setPick;
  bar.addEventListener("click", (event) => {
    const box = bar.getBoundingClientRect();
    const ratio = Math.min(Math.max((event.clientX - box.left) / box.width, 0), 1);
    const ms = ctx.startMs + ratio * (ctx.endMs - ctx.startMs);
    setPick(ms);
    ctx.playAll(Math.floor(ms / 1000) * 1000);
  });
  bar.addEventListener("keydown", (event) => {
    const step = event.shiftKey ? 60000 : 10000;
    const moves = {
      ArrowLeft: -step,
      ArrowDown: -step,
      ArrowRight: step,
      ArrowUp: step,
      PageDown: -300000,
      PageUp: 300000,
    };
    if (event.key in moves) setPick(timeline.pickMs + moves[event.key]);
    else if (event.key === "Home") setPick(ctx.startMs);
    else if (event.key === "End") setPick(ctx.endMs);
    else if (event.key === "Enter" || event.key === " ") ctx.playAll(timeline.pickMs);
    else return;
    event.preventDefault();
  });

  const ticks = el("div", { class: "ticks small", "aria-hidden": "true" });
  for (let i = 0; i <= 4; i += 1) {
    const ms = ctx.startMs + ((ctx.endMs - ctx.startMs) * i) / 4;
    ticks.append(el("span", { style: { left: `${i * 25}%` } }, showTime(ms, ctx.offsetMin)));
  }
  const gapList = camera.gaps.length
    ? el(
        "ul",
        { class: "small gap-list" },
        camera.gaps.map((gap) =>
          el(
            "li",
            {},
            el("span", { class: "swatch gap" }),
            `${showInstant(gap.start, false)}–${showInstant(gap.end, false)} `,
            L(`cause.${gap.cause}`),
            ` (${Math.round(gap.seconds)} s)`,
          ),
        ),
      )
    : el("p", { class: "small muted" }, L("coverage.noGaps"));
  const healthList = camera.health.length
    ? el(
        "ul",
        { class: "small health-list" },
        camera.health.map((flag) =>
          el(
            "li",
            {},
            el("span", { class: "swatch health" }),
            `${showInstant(flag.start, false)}–${showInstant(flag.end, false)} `,
            L(`health.${flag.kind}`),
          ),
        ),
      )
    : el("p", { class: "small muted" }, L("coverage.noHealth"));
  return el(
    "div",
    { class: "coverage-row", dataset: { camera: camera.camera, position: camera.position } },
    el(
      "h3",
      {},
      el(
        "span",
        { class: "camera-label" },
        L(`position.${camera.position}`),
        " ",
        el("span", { class: "code" }, camera.camera),
      ),
      " · ",
      partlyInService(ctx, camera)
        ? [
            L("coverage.inService", {
              start: showInstant(camera.from, false),
              end: showInstant(camera.until, false),
            }),
            " · ",
          ]
        : null,
      L("coverage.ratio", { pct: (camera.ratio * 100).toFixed(1) }),
    ),
    bar,
    ticks,
    thumbs,
    el("div", { class: "row-notes" }, gapList, healthList),
  );
}

async function loadThumbnails(ctx, camera) {
  const timeline = ctx.timelines.get(camera.camera);
  const seconds = (ctx.endMs - ctx.startMs) / 1000;
  // About forty tiles across the bar: enough to find a moment, cheap to decode.
  const every = Math.min(Math.max(Math.ceil(seconds / 40), 5), 3600);
  const path = `${ctx.base}/cameras/${encodeURIComponent(camera.camera)}/thumbnails?every=${every}`;
  try {
    const index = await call(`${path}&format=json`);
    const url = await footageLink(path);
    const covered = (index.tiles.length * every) / seconds;
    const image = el("img", {
      src: url,
      class: "thumb-strip",
      style: { width: `${covered * 100}%` },
      dataset: { camera: camera.camera },
    });
    setAttr(image, "alt", "play.thumbsLabel", { camera: camera.camera, every });
    image.addEventListener("click", (event) => {
      const box = image.getBoundingClientRect();
      const tile = Math.floor(((event.clientX - box.left) / box.width) * index.tiles.length);
      const chosen = index.tiles[Math.min(Math.max(tile, 0), index.tiles.length - 1)];
      ctx.playAll(parseInstant(chosen.shown_at ?? chosen.at).ms);
    });
    timeline.thumbs.replaceChildren(image);
  } catch (error) {
    timeline.thumbs.replaceChildren(errorNode(error));
  }
}

// --- playback ---------------------------------------------------------------------------

function playbackSection(ctx) {
  const input = el("input", {
    id: "play-at",
    name: "at",
    inputmode: "numeric",
    autocomplete: "off",
    pattern: "\\d{1,2}:\\d{2}(:\\d{2})?",
    value: showTime(ctx.startMs, ctx.offsetMin),
    "aria-describedby": "play-hint",
    size: "9",
  });
  const error = el("div", { id: "play-error", "aria-live": "assertive" });
  const form = el(
    "form",
    { class: "play-form", id: "play-form" },
    el("label", { for: "play-at" }, L("play.at")),
    input,
    el("button", { type: "submit", class: "primary", id: "play-button" }, L("play.go")),
  );
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const ms = resolveClock(input.value, ctx.startMs, ctx.endMs, ctx.offsetMin);
    if (ms === null || ms < ctx.startMs || ms > ctx.endMs) {
      error.replaceChildren(
        el(
          "p",
          { class: "error", role: "alert" },
          L("play.badTime", { example: showTime(ctx.startMs, ctx.offsetMin) }),
        ),
      );
      input.focus();
      return;
    }
    error.replaceChildren();
    ctx.playAll(ms);
  });
  ctx.playInput = input;

  const players = ctx.cameras.map(
    (camera) =>
      new Player({
        sitting: ctx.code,
        camera: camera.camera,
        position: camera.position,
        offsetMin: ctx.offsetMin,
        onClock: (player, ms) => {
          moveCursor(ctx, player.camera, ms);
          keepInStep(ctx);
        },
        onPause: (player) => ctx.findingsForm?.prefill(player),
        onRate: (_player, rate) => setSpeed(ctx, rate),
      }),
  );
  ctx.view.players = players;
  ctx.players = players;
  const sync = el("input", { type: "checkbox", id: "play-sync", checked: true });
  sync.addEventListener("change", () => {
    if (!sync.checked) for (const player of players) player.release();
  });
  ctx.syncInput = sync;
  return el(
    "section",
    { "aria-labelledby": "play-heading", id: "playback" },
    el("h2", { id: "play-heading" }, L("play.heading")),
    form,
    el("p", { class: "small check-line" }, sync, el("label", { for: "play-sync" }, L("play.sync"))),
    el("p", { class: "muted small", id: "play-hint" }, L("play.hint")),
    error,
    controlsBar(ctx),
    el("div", { class: "players" }, players.map((player) => player.node)),
    shortcutsHelp(ctx),
  );
}

// Two cameras ahead of each other by more than a keyframe interval means one skipped a gap:
// hold it on its last picture until the other reaches the same wall-clock instant, so both
// always show the same moment (the held one says it has no footage meanwhile).
const STEP_MS = 3000;

function keepInStep(ctx) {
  if (!ctx.syncInput?.checked) return;
  const active = ctx.players.filter((player) => player.active && player.wallMs !== null);
  const running = active.filter((player) => !player.held);
  if (!running.length) {
    for (const player of active) player.release();
    return;
  }
  const slowest = Math.min(...running.map((player) => player.wallMs));
  // Faster playback moves each clock further between two timeupdate events (about 250 ms).
  const allowed = STEP_MS + (ctx.speed - 1) * 400;
  for (const player of active) {
    if (!player.held && player.wallMs > slowest + allowed) player.hold();
    else if (player.held && player.wallMs <= slowest + 300) player.release();
  }
}

function playAll(ctx, requested) {
  // Playback needs a moment before the interval's end to show anything (end > at).
  const ms = Math.min(Math.max(requested, ctx.startMs), ctx.endMs - 1000);
  ctx.playInput.value = showTime(ms, ctx.offsetMin);
  ctx.requestedMs = ms;
  for (const player of ctx.players) player.play(ms);
}

function moveCursor(ctx, camera, ms) {
  const timeline = ctx.timelines.get(camera);
  if (!timeline) return;
  timeline.cursor.hidden = false;
  timeline.cursor.style.left = `${Math.min(Math.max(percentOf(ctx, ms), 0), 100)}%`;
}

// --- speed, jumps and keyboard ----------------------------------------------------------

export const SPEEDS = [1, 2, 4, 8];
const SEEK_MS = 5000;
const SEEK_LONG_MS = 30000;
// A mark this close behind the current instant still counts as "here" for "previous", so a
// second press goes one further back instead of replaying the same mark.
const PREVIOUS_SLACK_MS = 2000;
const JUMP_KINDS = ["gap", "problem", "finding"];

// Both cameras at `rate`; a speed the buttons do not offer (picked in a video's own menu) runs
// both too, with no button pressed.
function setSpeed(ctx, rate) {
  if (!(rate > 0) || rate === ctx.speed) return;
  ctx.speed = rate;
  for (const player of ctx.players) player.setRate(rate);
  for (const button of ctx.speedButtons ?? []) {
    button.setAttribute("aria-pressed", String(Number(button.dataset.speed) === rate));
  }
}

// Every place worth a look, from the data the page already has: each camera's gaps and picture
// problems (coverage report) and the findings not withdrawn, in time order.
function marks(ctx) {
  const found = [];
  for (const camera of ctx.cameras) {
    for (const gap of camera.gaps) {
      found.push({
        kind: "gap",
        ms: parseInstant(gap.start).ms,
        endMs: parseInstant(gap.end).ms,
        camera,
        what: `@cause.${gap.cause}`,
      });
    }
    for (const flag of camera.health) {
      found.push({
        kind: "problem",
        ms: parseInstant(flag.start).ms,
        endMs: parseInstant(flag.end).ms,
        camera,
        what: `@health.${flag.kind}`,
      });
    }
  }
  for (const finding of ctx.findings) {
    const camera = ctx.cameras.find((c) => c.camera === finding.camera) ?? {
      camera: finding.camera,
      position: "front",
    };
    found.push({
      kind: "finding",
      ms: parseInstant(finding.observed_from).ms,
      endMs: finding.observed_until ? parseInstant(finding.observed_until).ms : null,
      camera,
      what: `@category.${finding.category}`,
    });
  }
  return found.sort((a, b) => a.ms - b.ms || (a.endMs ?? a.ms) - (b.endMs ?? b.ms));
}

// Where the supervisor is: the slowest camera's picture (a camera held for the other is ahead),
// or the instant last asked for while the picture has not reached it yet (it starts at the
// keyframe before), or the typed time when nothing plays.
function position(ctx) {
  const clocks = ctx.players
    .filter((player) => player.streaming && player.wallMs !== null && !player.held)
    .map((player) => player.wallMs);
  if (!clocks.length) {
    if (ctx.requestedMs !== null) return ctx.requestedMs;
    const typed = resolveClock(ctx.playInput.value, ctx.startMs, ctx.endMs, ctx.offsetMin);
    return typed ?? ctx.startMs;
  }
  const clock = Math.min(...clocks);
  return ctx.requestedMs !== null && clock < ctx.requestedMs ? ctx.requestedMs : clock;
}

function jump(ctx, kind, direction) {
  const here = position(ctx);
  const candidates = marks(ctx).filter((mark) => kind === "any" || mark.kind === kind);
  // Before anything was played, a mark right at the typed time (a gap from the very start)
  // is the next one; after that, "next" means later than the picture.
  const fresh = ctx.requestedMs === null && !ctx.players.some((player) => player.streaming);
  const after = fresh ? here - 1 : here + 500;
  const target =
    direction > 0
      ? candidates.find((mark) => mark.ms > after)
      : candidates.filter((mark) => mark.ms < here - PREVIOUS_SLACK_MS).pop();
  if (!target) {
    setText(ctx.jumpStatus, `player.jump.none.${direction > 0 ? "next" : "previous"}.${kind}`);
    return;
  }
  const vars = {
    kind: `@player.kind.${target.kind}`,
    start: showTime(target.ms, ctx.offsetMin),
    end: target.endMs === null ? "" : `–${showTime(target.endMs, ctx.offsetMin)}`,
    position: `@position.${target.camera.position}`,
    camera: target.camera.camera,
    what: target.what,
  };
  setText(ctx.jumpStatus, "player.jump.to", vars);
  ctx.jumpStatus.dataset.target = toRfc3339(target.ms, ctx.offsetMin);
  for (const timeline of ctx.timelines.values()) timeline.setPick(target.ms);
  ctx.playAll(target.ms);
}

// Arrow keys: move both pictures by `deltaMs`, inside the streams already loaded when both have
// the picture there, else by asking for new streams from that instant.
function seekBy(ctx, deltaMs) {
  const target = Math.min(Math.max(position(ctx) + deltaMs, ctx.startMs), ctx.endMs - 1000);
  const streaming = ctx.players.filter((player) => player.streaming);
  if (streaming.length === ctx.players.length && streaming.length) {
    const moved = streaming.map((player) => player.seekWall(target));
    if (moved.every(Boolean)) {
      ctx.requestedMs = target;
      ctx.playInput.value = showTime(target, ctx.offsetMin);
      for (const player of streaming) player.release();
      return;
    }
  }
  ctx.playAll(target);
}

function togglePlay(ctx) {
  const streams = ctx.players.filter((player) => player.streaming && !player.video.ended);
  if (!streams.length) {
    ctx.playAll(position(ctx));
    return;
  }
  if (streams.some((player) => player.held || !player.video.paused)) {
    for (const player of streams) player.pauseByUser();
  } else {
    for (const player of streams) player.resume();
  }
}

// Keys for the whole sitting page; never while typing (a text field, a list box, an open
// dialog), and never instead of what a focused control does with the same key.
function shortcut(ctx, event) {
  if (event.defaultPrevented || event.isComposing) return;
  if (event.ctrlKey || event.metaKey || event.altKey) return;
  if (!ctx.view.alive || document.querySelector("dialog[open]")) return;
  const target = event.target instanceof Element ? event.target : null;
  if (target?.closest("input, textarea, select, [contenteditable]:not([contenteditable='false'])")) {
    return;
  }
  const onControl = target?.closest("button, a[href], summary, [role='slider']");
  const key = event.key;
  if (key === " ") {
    if (onControl) return;
    togglePlay(ctx);
  } else if (key === "ArrowLeft" || key === "ArrowRight") {
    if (target?.closest("[role='slider']")) return;
    const step = event.shiftKey ? SEEK_LONG_MS : SEEK_MS;
    seekBy(ctx, key === "ArrowLeft" ? -step : step);
  } else if (key === "[" || key === "]") {
    jump(ctx, "any", key === "]" ? 1 : -1);
  } else if (/^[1-4]$/.test(key)) {
    setSpeed(ctx, SPEEDS[Number(key) - 1]);
  } else if (key === "?") {
    ctx.shortcutsBox.open = !ctx.shortcutsBox.open;
  } else {
    return;
  }
  event.preventDefault();
}

function controlsBar(ctx) {
  const speedLabel = el("span", { id: "speed-label", class: "player-controls-label" }, L("player.speed"));
  ctx.speedButtons = SPEEDS.map((rate) => {
    const button = el(
      "button",
      {
        type: "button",
        class: "player-speed",
        "aria-pressed": String(rate === ctx.speed),
        dataset: { speed: String(rate) },
      },
      `${rate}×`,
    );
    setAttr(button, "title", "player.speed.title", { rate, key: SPEEDS.indexOf(rate) + 1 });
    button.addEventListener("click", () => setSpeed(ctx, rate));
    return button;
  });
  const jumpGroups = JUMP_KINDS.map((kind) => {
    const count = el("span", { class: "player-jump-count", dataset: { kind } });
    const label = el(
      "span",
      { id: `jump-label-${kind}`, class: "player-controls-label" },
      L(`player.kind.${kind}.plural`),
      count,
    );
    const buttons = [-1, 1].map((direction) => {
      const way = direction > 0 ? "next" : "previous";
      const button = el(
        "button",
        { type: "button", class: `player-jump player-jump-${way}`, dataset: { kind, way } },
        // Chinese counts findings by 条, gaps and problems by 个.
        L(kind === "finding" ? `player.jump.${way}.item` : `player.jump.${way}`),
      );
      // The accessible name says what the visible word leaves to its group: "next gap".
      setAttr(button, "aria-label", `player.jump.${way}.${kind}`);
      button.addEventListener("click", () => jump(ctx, kind, direction));
      return button;
    });
    return el(
      "div",
      { class: "player-jump-group", role: "group", "aria-labelledby": `jump-label-${kind}` },
      label,
      buttons,
    );
  });
  ctx.jumpStatus = el("p", { id: "jump-status", class: "small", role: "status" });
  ctx.refreshMarks = () => {
    const all = marks(ctx);
    for (const kind of JUMP_KINDS) {
      const n = all.filter((mark) => mark.kind === kind).length;
      const group = jumpGroups[JUMP_KINDS.indexOf(kind)];
      group.querySelector(".player-jump-count").textContent = ` (${n})`;
      for (const button of group.querySelectorAll("button")) button.disabled = n === 0;
    }
  };
  ctx.refreshMarks();
  return el(
    "div",
    { class: "player-controls", id: "player-controls" },
    el(
      "div",
      { class: "player-speed-group", role: "group", "aria-labelledby": "speed-label" },
      speedLabel,
      ctx.speedButtons,
    ),
    jumpGroups,
    ctx.jumpStatus,
  );
}

function shortcutsHelp(ctx) {
  const rows = [
    ["player.keys.space", "player.keys.playPause"],
    ["player.keys.arrows", "player.keys.seek"],
    ["player.keys.shiftArrows", "player.keys.seekLong"],
    ["player.keys.brackets", "player.keys.jump"],
    ["player.keys.digits", "player.keys.speed"],
    ["player.keys.question", "player.keys.help"],
  ];
  const list = el("dl", { class: "player-keys" });
  for (const [keys, does] of rows) {
    list.append(el("dt", {}, el("kbd", {}, L(keys))), el("dd", {}, L(does)));
  }
  const box = el(
    "details",
    { class: "player-shortcuts small", id: "shortcuts" },
    el("summary", {}, L("player.keys.heading")),
    el("p", { class: "muted" }, L("player.keys.note")),
    list,
  );
  ctx.shortcutsBox = box;
  return box;
}

// --- findings ---------------------------------------------------------------------------

function findingsSection(ctx) {
  const list = el("div", { id: "findings", "aria-live": "polite" }, L("list.loading"));
  const formBox = el("div", { id: "finding-form-box" });
  const section = el(
    "section",
    { "aria-labelledby": "findings-heading", id: "findings-section" },
    el("h2", { id: "findings-heading" }, L("findings.heading")),
    list,
    formBox,
  );
  const canWrite = FINDING_AUTHORS.includes(ctx.me.role);
  const reload = async () => {
    try {
      const body = await call(`${ctx.base}/findings`);
      if (!ctx.view.alive) return;
      ctx.findings = body.findings.filter((finding) => !finding.withdrawn_at);
      ctx.refreshMarks?.();
      list.replaceChildren(findingsList(ctx, body, reload));
      if (body.review_closed_at) {
        formBox.replaceChildren(
          el(
            "p",
            { class: "notice" },
            L("findings.closed", {
              at: showInstant(body.review_closed_at),
              by: body.review_closed_by ?? "",
            }),
          ),
        );
        ctx.findingsForm = null;
      } else if (canWrite && !ctx.findingsForm) {
        ctx.findingsForm = findingForm(ctx, reload);
        formBox.replaceChildren(ctx.findingsForm.node);
      }
    } catch (error) {
      if (ctx.view.alive) list.replaceChildren(errorNode(error));
    }
  };
  ctx.reloadFindings = reload;
  reload();
  return section;
}

function findingsList(ctx, body, reload) {
  if (!body.findings.length) return el("p", { class: "muted" }, L("findings.empty"));
  const items = body.findings.map((finding) => {
    const position = ctx.cameras.find((c) => c.camera === finding.camera)?.position;
    const when = finding.observed_until
      ? `${showInstant(finding.observed_from)}–${showInstant(finding.observed_until, false)}`
      : showInstant(finding.observed_from);
    const actions = el("div", { class: "actions" });
    if (finding.editable) {
      const revise = el("button", { type: "button", class: "revise" }, L("findings.revise"));
      revise.addEventListener("click", () => ctx.findingsForm?.edit(finding));
      const withdraw = el("button", { type: "button", class: "withdraw" }, L("findings.withdraw"));
      withdraw.addEventListener("click", async () => {
        const reason = await askReason("findings.withdraw", "findings.withdrawReason");
        if (!reason) return;
        try {
          await call(`${ctx.base}/findings/${finding.id}/withdraw`, {
            method: "POST",
            json: { reason },
          });
          flash("findings.form.withdrawn");
          await reload();
        } catch (error) {
          flashError(error);
        }
      });
      actions.append(revise, withdraw);
    }
    return el(
      "li",
      {
        class: `finding${finding.withdrawn_at ? " withdrawn" : ""}`,
        dataset: { finding: String(finding.id), category: finding.category },
      },
      el(
        "div",
        { class: "finding-head" },
        el("span", { class: `badge category category-${finding.category}` }, L(`category.${finding.category}`)),
        " ",
        position ? L(`position.${position}`) : null,
        " ",
        el("span", { class: "code" }, finding.camera),
        " · ",
        el("span", { class: "nowrap" }, when),
        finding.withdrawn_at
          ? el("span", { class: "badge withdrawn-badge" }, L("findings.withdrawn"))
          : null,
      ),
      el("p", { class: "finding-text" }, finding.text),
      el(
        "p",
        { class: "muted small" },
        L("findings.author"),
        `: ${finding.author} · #${finding.id} · `,
        L("findings.revision", { n: finding.revision }),
        ` · ${showInstant(finding.updated_at)}`,
      ),
      actions,
    );
  });
  return el("ol", { class: "findings", id: "findings-list" }, items);
}

function findingForm(ctx, reload) {
  const camera = el("select", { id: "finding-camera", name: "camera", required: true });
  for (const c of ctx.cameras) {
    const option = el("option", { value: c.camera });
    option.append(L(`position.${c.position}`), ` ${c.camera}`);
    camera.append(option);
  }
  const category = el("select", { id: "finding-category", name: "category", required: true });
  for (const value of CATEGORIES) category.append(el("option", { value }, L(`category.${value}`)));
  const from = el("input", {
    id: "finding-from",
    name: "from",
    required: true,
    autocomplete: "off",
    size: "9",
    "aria-describedby": "finding-from-full",
  });
  const until = el("input", {
    id: "finding-until",
    name: "until",
    autocomplete: "off",
    size: "9",
    "aria-describedby": "finding-until-full",
  });
  const fromFull = el("span", { id: "finding-from-full", class: "muted small" });
  const untilFull = el("span", { id: "finding-until-full", class: "muted small" });
  const text = el("textarea", {
    id: "finding-text",
    name: "text",
    rows: "3",
    required: true,
    maxlength: "4000",
  });
  const legend = el("legend", {}, L("findings.form.new"));
  const submit = el("button", { type: "submit", class: "primary", id: "finding-submit" }, L("findings.form.submit"));
  const cancel = el("button", { type: "button", id: "finding-cancel", hidden: true }, L("findings.form.cancel"));
  const error = el("div", { id: "finding-error", "aria-live": "assertive" });
  const useTime = (target, full) => {
    const button = el("button", { type: "button", class: "small-button" }, L("play.usePlayerTime"));
    button.addEventListener("click", () => {
      const ms = playerTime(ctx, camera.value);
      if (ms !== null) setField(target, full, ms);
    });
    return button;
  };
  const node = el(
    "form",
    { id: "finding-form", class: "card finding-form" },
    el(
      "fieldset",
      {},
      legend,
      el(
        "div",
        { class: "form-grid" },
        el("label", { for: "finding-camera" }, L("findings.form.camera")),
        camera,
        el("label", { for: "finding-category" }, L("findings.form.category")),
        category,
        el("label", { for: "finding-from" }, L("findings.form.from")),
        el("div", { class: "inline" }, from, useTime(from, fromFull), fromFull),
        el("label", { for: "finding-until" }, L("findings.form.until")),
        el("div", { class: "inline" }, until, useTime(until, untilFull), untilFull),
        el("label", { for: "finding-text" }, L("findings.form.text")),
        text,
      ),
      error,
      el("div", { class: "actions" }, submit, cancel),
    ),
  );
  let editing = null;
  // Once someone typed a time, a paused player no longer overwrites it.
  let fromTyped = false;
  from.addEventListener("input", () => {
    fromTyped = true;
    showFull(from, fromFull);
  });
  until.addEventListener("input", () => showFull(until, untilFull));

  function showFull(input, full) {
    const ms = input.value.trim()
      ? resolveClock(input.value, ctx.startMs, ctx.endMs, ctx.offsetMin)
      : null;
    full.textContent = ms === null ? "" : `= ${showDateTime(ms, ctx.offsetMin)}`;
  }
  function setField(input, full, ms) {
    input.value = showTime(ms, ctx.offsetMin);
    showFull(input, full);
  }
  function reset() {
    editing = null;
    fromTyped = false;
    setText(legend, "findings.form.new");
    cancel.hidden = true;
    from.value = "";
    until.value = "";
    text.value = "";
    fromFull.textContent = "";
    untilFull.textContent = "";
    error.replaceChildren();
    const ms = playerTime(ctx, camera.value);
    if (ms !== null) setField(from, fromFull, ms);
  }
  node.addEventListener("focusin", () => {
    if (from.value || editing) return;
    const ms = playerTime(ctx, camera.value);
    if (ms !== null) setField(from, fromFull, ms);
  });
  cancel.addEventListener("click", reset);
  node.addEventListener("submit", async (event) => {
    event.preventDefault();
    error.replaceChildren();
    const fromMs = resolveClock(from.value, ctx.startMs, ctx.endMs, ctx.offsetMin);
    if (fromMs === null) {
      error.replaceChildren(el("p", { class: "error", role: "alert" }, L("findings.form.badFrom")));
      from.focus();
      return;
    }
    let untilMs = null;
    if (until.value.trim()) {
      untilMs = resolveClock(until.value, ctx.startMs, ctx.endMs, ctx.offsetMin);
      if (untilMs === null || untilMs < fromMs) {
        error.replaceChildren(el("p", { class: "error", role: "alert" }, L("findings.form.badUntil")));
        until.focus();
        return;
      }
    }
    const body = {
      camera: camera.value,
      category: category.value,
      observed_from: toRfc3339(fromMs, ctx.offsetMin),
      observed_until: untilMs === null ? null : toRfc3339(untilMs, ctx.offsetMin),
      text: text.value.trim(),
    };
    submit.disabled = true;
    try {
      if (editing) {
        await call(`${ctx.base}/findings/${editing.id}`, { method: "PUT", json: body });
      } else {
        await call(`${ctx.base}/findings`, { method: "POST", json: body });
      }
      flash("findings.form.saved");
      reset();
      await reload();
    } catch (failure) {
      error.replaceChildren(errorNode(failure));
    } finally {
      submit.disabled = false;
    }
  });

  return {
    node,
    // A paused player offers its picture's instant as the finding's start.
    prefill(player) {
      if (editing || fromTyped || player.wallMs === null) return;
      camera.value = player.camera;
      setField(from, fromFull, player.wallMs);
    },
    edit(finding) {
      editing = finding;
      setText(legend, "findings.form.edit", { id: finding.id });
      cancel.hidden = false;
      camera.value = finding.camera;
      category.value = finding.category;
      setField(from, fromFull, parseInstant(finding.observed_from).ms);
      if (finding.observed_until) setField(until, untilFull, parseInstant(finding.observed_until).ms);
      else {
        until.value = "";
        untilFull.textContent = "";
      }
      text.value = finding.text;
      node.scrollIntoView({ block: "nearest" });
      text.focus();
    },
  };
}

// The wall clock of the chosen camera's player, or of any player that has one.
function playerTime(ctx, cameraCode) {
  const own = ctx.players.find((p) => p.camera === cameraCode && p.wallMs !== null);
  const any = ctx.players.find((p) => p.wallMs !== null);
  return (own ?? any)?.wallMs ?? null;
}

// --- segments ---------------------------------------------------------------------------

function segmentsSection(ctx, segments) {
  // The coverage rows' order, so a replaced camera's table also comes before its replacement's.
  const rank = new Map(ctx.cameras.map((camera, index) => [camera.camera, index]));
  const cameras = [...segments.cameras].sort(
    (a, b) => (rank.get(a.camera) ?? 99) - (rank.get(b.camera) ?? 99) || byPosition(a, b),
  );
  const tables = cameras.map((camera) => {
    const rows = camera.segments.map((segment) =>
      el(
        "tr",
        {},
        el("td", { class: "nowrap" }, showInstant(segment.start, false)),
        el("td", { class: "nowrap" }, showInstant(segment.end, false)),
        el("td", { class: "num" }, segment.duration_seconds.toFixed(1)),
        el("td", { class: "num" }, `${(segment.size / 1048576).toFixed(1)} MiB`),
        el("td", {}, `${segment.video_codec} ${segment.width}×${segment.height}`),
        el(
          "td",
          {},
          segment.health.map((kind) => el("span", { class: "badge flag" }, L(`health.${kind}`))),
          segment.clock_flags.map((flag) => el("span", { class: "badge flag" }, flag)),
          segment.purged ? el("span", { class: "badge flag" }, L("segments.purged")) : null,
        ),
      ),
    );
    return el(
      "div",
      { class: "segments-camera" },
      el(
        "h3",
        {},
        L("segments.count", { camera: camera.camera, n: camera.segments.length }),
      ),
      el(
        "table",
        { class: "grid compact" },
        el(
          "thead",
          {},
          el(
            "tr",
            {},
            ["col.start", "col.end", "col.duration", "col.size", "col.format", "col.flags"].map(
              (key) => el("th", { scope: "col" }, L(key)),
            ),
          ),
        ),
        el("tbody", {}, rows),
      ),
    );
  });
  return el(
    "section",
    { id: "segments", "aria-labelledby": "segments-heading" },
    el(
      "details",
      {},
      el("summary", {}, el("h2", { id: "segments-heading", class: "inline-heading" }, L("segments.heading"))),
      el("div", { class: "segments-grid" }, tables),
    ),
  );
}

// --- export -----------------------------------------------------------------------------

async function exportEvidence(ctx, button) {
  // The API's bound on an export reason (services/evidence/exports.py MAX_REASON_LENGTH).
  const reason = await askReason("export.button", "export.reason", 500);
  if (!reason) return;
  button.disabled = true;
  setText(button, "export.busy");
  try {
    // A link, not fetch(): the browser streams the package straight to disk, however large,
    // instead of holding it in memory (services/footage/links.py).
    const query = new URLSearchParams({ reason });
    const url = await footageLink(`${ctx.base}/exports/download?${query}`);
    const anchor = el("a", { href: url, download: "", hidden: true });
    document.body.append(anchor);
    anchor.click();
    anchor.remove();
    flash("export.started");
  } catch (error) {
    flashError(error);
  } finally {
    button.disabled = false;
    setText(button, "export.button");
  }
}
