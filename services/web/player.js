// One camera's player: asks for the playback plan (format=json, metadata only, not a footage
// read), then a footage link for the same URL, and maps the video's media time back to the
// wall clock through the plan's pieces, because the stream cuts gaps out (docs/playback.md).

import { call, footageLink } from "./api.js";
import { mediaAt, parseInstant, showDateTime, showTime, toRfc3339, wallAt } from "./clock.js";
import { L, el, errorNode } from "./dom.js";
import { setAttr, setText } from "./i18n.js";

export class Player {
  constructor({ sitting, camera, position, offsetMin, onClock, onPause, onRate }) {
    this.sitting = sitting;
    this.camera = camera;
    this.offsetMin = offsetMin;
    this.onClock = onClock;
    // The playback speed the page chose for both cameras (sitting.js); kept across new streams.
    this.rate = 1;
    this.plan = null;
    this.request = 0;
    this.lastMedia = 0;
    this.wallMs = null;
    // Held: paused by the page (not the user) because this camera skipped a gap and is ahead
    // of the other camera's picture; it resumes when the other catches up (sitting.js).
    this.held = false;
    const slug = camera.replace(/[^A-Za-z0-9_-]/g, "_");

    this.video = el("video", {
      id: `video-${slug}`,
      class: "player-video",
      muted: true,
      controls: true,
      playsinline: true,
      preload: "auto",
      dataset: { camera },
    });
    // Muted so the browser lets it start without a click on the video itself.
    this.video.muted = true;
    setAttr(this.video, "aria-label", `position.${position}`);
    this.clock = el("output", {
      id: `clock-${slug}`,
      class: "clock",
      "aria-live": "off",
      dataset: { camera },
    });
    setText(this.clock, "play.notStarted");
    this.status = el("div", { class: "player-status", role: "status", "aria-live": "polite" });
    this.started = el("p", { class: "muted small" });
    this.gaps = el("div", { class: "player-gaps", id: `gaps-${slug}` });
    this.node = el(
      "figure",
      { class: "player", dataset: { camera } },
      el(
        "figcaption",
        {},
        el("strong", {}, L(`position.${position}`)),
        " ",
        el("span", { class: "code" }, camera),
      ),
      this.video,
      el("div", { class: "clock-line" }, L("play.wallClock"), " ", this.clock),
      this.started,
      this.status,
      this.gaps,
    );

    this.video.addEventListener("timeupdate", () => this.tick());
    this.video.addEventListener("seeked", () => {
      this.lastMedia = this.video.currentTime;
      this.tick();
    });
    this.video.addEventListener("pause", () => {
      if (!this.held && !this.video.ended && this.wallMs !== null) onPause?.(this);
    });
    this.video.addEventListener("ended", () => this.ended());
    // A speed picked in the video's own menu is taken up by the page, for both cameras.
    this.video.addEventListener("ratechange", () => {
      if (this.video.playbackRate !== this.rate) onRate?.(this, this.video.playbackRate);
    });
    this.video.addEventListener("error", () => {
      if (!this.video.getAttribute("src")) return;
      const code = this.video.error ? this.video.error.code : "?";
      this.status.replaceChildren(
        errorNode({
          messageZh: `视频无法播放（错误 ${code}）。`,
          messageEn: `The video cannot be played (error ${code}).`,
        }),
      );
    });
  }

  path(atMs) {
    const at = toRfc3339(atMs, this.offsetMin);
    const query = new URLSearchParams({ camera: this.camera, at });
    return `/api/v1/sittings/${encodeURIComponent(this.sitting)}/playback?${query}`;
  }

  async play(atMs) {
    const request = ++this.request;
    this.stop();
    setText(this.status, "play.loading");
    this.gaps.replaceChildren();
    this.started.replaceChildren();
    const path = this.path(atMs);
    try {
      const plan = await call(`${path}&format=json`);
      if (request !== this.request) return;
      this.plan = plan;
      this.showGaps(plan);
      if (!plan.pieces.length) {
        this.status.replaceChildren(L("play.noFootage"));
        return;
      }
      // Pinned to the plan's segments: footage arriving meanwhile cannot shift the stream
      // against the wall clock worked out from this plan.
      const pinned = [...new Set(plan.pieces.map((piece) => piece.segment))].join(",");
      const url = await footageLink(`${path}&segments=${pinned}`);
      if (request !== this.request) return;
      const first = parseInstant(plan.start ?? plan.pieces[0].from).ms;
      const asked = showTime(atMs, this.offsetMin);
      // Say where the picture really starts: at the keyframe before the asked instant, or
      // later when the asked instant lies in a gap.
      let note = null;
      if (first - atMs >= 1000) {
        note = L("play.inGapBefore", { start: showTime(first, this.offsetMin) });
      } else if (Math.abs(first - atMs) >= 1000) {
        note = L("play.startedAt", { start: showTime(first, this.offsetMin), asked });
      }
      this.started.replaceChildren(...(note ? [note] : []));
      this.status.replaceChildren();
      this.lastMedia = 0;
      this.video.src = url;
      // Loading a new source resets the speed to the default one: make that the chosen speed.
      this.video.defaultPlaybackRate = this.rate;
      this.video.playbackRate = this.rate;
      this.setWall(wallAt(plan, 0));
      await this.video.play().catch(() => {});
    } catch (error) {
      if (request !== this.request) return;
      this.status.replaceChildren(errorNode(error));
    }
  }

  // Playing, or held by the page: a camera the user paused does not set the pace.
  get active() {
    return Boolean(this.plan && this.video.getAttribute("src") && !this.video.ended) &&
      (this.held || !this.video.paused);
  }

  setRate(rate) {
    this.rate = rate;
    this.video.defaultPlaybackRate = rate;
    this.video.playbackRate = rate;
  }

  get streaming() {
    return Boolean(this.plan && this.plan.pieces.length && this.video.getAttribute("src"));
  }

  // Move to wall-clock `ms` inside the stream already loaded, if its picture is there
  // (buffered, not in a gap); false when the page must ask for a new stream instead.
  seekWall(ms) {
    if (!this.streaming) return false;
    const media = mediaAt(this.plan, ms);
    if (media === null) return false;
    const buffered = this.video.buffered;
    for (let i = 0; i < buffered.length; i += 1) {
      if (buffered.start(i) <= media && media < buffered.end(i) - 0.1) {
        this.video.currentTime = media;
        this.setWall(ms);
        return true;
      }
    }
    return false;
  }

  // Paused by the user (space): no longer held for the other camera.
  pauseByUser() {
    if (this.held) this.status.replaceChildren();
    this.held = false;
    delete this.video.dataset.held;
    this.video.pause();
  }

  resume() {
    if (this.streaming && !this.video.ended) this.video.play().catch(() => {});
  }

  hold() {
    this.held = true;
    this.video.pause();
    this.status.replaceChildren(
      el("p", { class: "gap-notice" }, L("play.holding", { at: showTime(this.wallMs, this.offsetMin) })),
    );
    this.video.dataset.held = "true";
  }

  release() {
    if (!this.held) return;
    this.held = false;
    delete this.video.dataset.held;
    this.status.replaceChildren();
    this.video.play().catch(() => {});
  }

  stop() {
    this.held = false;
    delete this.video.dataset.held;
    this.video.pause();
    if (this.video.getAttribute("src")) {
      this.video.removeAttribute("src");
      // Drops the open stream instead of letting it download on in the background.
      this.video.load();
    }
    this.plan = null;
  }

  showGaps(plan) {
    if (!plan.gaps.length) {
      this.gaps.replaceChildren(el("p", { class: "muted small" }, L("play.noGaps")));
      return;
    }
    const items = plan.gaps.map((gap) =>
      el(
        "li",
        { class: "gap-item" },
        L("play.gapLine", {
          start: showTime(parseInstant(gap.start).ms, this.offsetMin),
          end: showTime(parseInstant(gap.end).ms, this.offsetMin),
          cause: `@cause.${gap.cause}`,
          media: gap.media_at.toFixed(1),
        }),
      ),
    );
    this.gaps.replaceChildren(
      el("p", { class: "small" }, L("play.gapsAhead")),
      el("ul", { class: "small" }, items),
    );
  }

  setWall(ms) {
    this.wallMs = ms;
    if (ms === null) return;
    this.clock.removeAttribute("data-i18n");
    this.clock.textContent = showDateTime(ms, this.offsetMin);
    this.clock.dataset.wall = toRfc3339(ms, this.offsetMin);
    this.onClock?.(this, ms);
  }

  tick() {
    if (!this.plan || !this.plan.pieces.length) return;
    const now = this.video.currentTime;
    // A gap is cut out of the stream: say so when the playhead passes the cut.
    for (const gap of this.plan.gaps) {
      if (this.lastMedia < gap.media_at && gap.media_at <= now && gap.media_at > 0) {
        this.status.replaceChildren(
          el(
            "p",
            { class: "gap-notice" },
            L("play.skipped", {
              start: showTime(parseInstant(gap.start).ms, this.offsetMin),
              end: showTime(parseInstant(gap.end).ms, this.offsetMin),
              cause: `@cause.${gap.cause}`,
            }),
          ),
        );
      }
    }
    this.lastMedia = now;
    this.setWall(wallAt(this.plan, now));
  }

  ended() {
    const plan = this.plan;
    if (plan?.continue_at) {
      const at = parseInstant(plan.continue_at).ms;
      this.status.replaceChildren(L("play.continue", { at: showTime(at, this.offsetMin) }));
      this.play(at);
      return;
    }
    this.status.replaceChildren(L("play.ended"));
  }
}
