// Wall-clock arithmetic for the page. Instants travel as RFC 3339 strings with the server's
// offset (Asia/Shanghai, +08:00, no daylight saving); the page computes in epoch milliseconds
// and writes back with the offset the API used, so what it shows matches the API's own strings.

const OFFSET = /(?:([+-])(\d\d):?(\d\d)|Z)$/;

export function parseInstant(text) {
  const ms = Date.parse(text);
  if (Number.isNaN(ms)) throw new Error(`not an instant: ${text}`);
  const match = OFFSET.exec(text);
  let offsetMin = 0;
  if (match && match[1]) {
    offsetMin = (match[1] === "-" ? -1 : 1) * (Number(match[2]) * 60 + Number(match[3]));
  }
  return { ms, offsetMin };
}

function pad(value, width = 2) {
  return String(value).padStart(width, "0");
}

function parts(ms, offsetMin) {
  const shifted = new Date(ms + offsetMin * 60000);
  return {
    date: `${shifted.getUTCFullYear()}-${pad(shifted.getUTCMonth() + 1)}-${pad(shifted.getUTCDate())}`,
    time: `${pad(shifted.getUTCHours())}:${pad(shifted.getUTCMinutes())}:${pad(shifted.getUTCSeconds())}`,
    millis: pad(shifted.getUTCMilliseconds(), 3),
  };
}

function offsetText(offsetMin) {
  const sign = offsetMin < 0 ? "-" : "+";
  const abs = Math.abs(offsetMin);
  return `${sign}${pad(Math.floor(abs / 60))}:${pad(abs % 60)}`;
}

export function toRfc3339(ms, offsetMin) {
  const p = parts(ms, offsetMin);
  return `${p.date}T${p.time}.${p.millis}${offsetText(offsetMin)}`;
}

// "15:45:10" (time only), "2026-11-28 15:45:10" (with date), in the API's offset.
export function showTime(ms, offsetMin) {
  return parts(ms, offsetMin).time;
}

export function showDateTime(ms, offsetMin) {
  const p = parts(ms, offsetMin);
  return `${p.date} ${p.time}`;
}

export function showInstant(text, withDate = true) {
  const { ms, offsetMin } = parseInstant(text);
  return withDate ? showDateTime(ms, offsetMin) : showTime(ms, offsetMin);
}

export function showSpan(startText, endText) {
  const start = parseInstant(startText);
  const end = parseInstant(endText);
  const sameDay =
    parts(start.ms, start.offsetMin).date === parts(end.ms, start.offsetMin).date;
  const tail = sameDay ? showTime(end.ms, start.offsetMin) : showDateTime(end.ms, start.offsetMin);
  return `${showDateTime(start.ms, start.offsetMin)} – ${tail} (${offsetText(start.offsetMin)})`;
}

const HMS = /^\s*(\d{1,2}):(\d{2})(?::(\d{2})(?:\.(\d{1,3}))?)?\s*$/;

// A typed "HH:MM[:SS]" becomes an instant on the interval's local day: the day of its start,
// or of its end when the interval crosses midnight and the time fits only there.
export function resolveClock(text, startMs, endMs, offsetMin) {
  const match = HMS.exec(text);
  if (!match) return null;
  const [hours, minutes, seconds] = [Number(match[1]), Number(match[2]), Number(match[3] ?? 0)];
  if (hours > 23 || minutes > 59 || seconds > 59) return null;
  const millis = Number((match[4] ?? "0").padEnd(3, "0"));
  const candidates = [];
  for (const anchor of [startMs, endMs]) {
    const day = parts(anchor, offsetMin).date;
    const ms =
      Date.parse(`${day}T00:00:00Z`) -
      offsetMin * 60000 +
      ((hours * 60 + minutes) * 60 + seconds) * 1000 +
      millis;
    candidates.push(ms);
  }
  return candidates.find((ms) => ms >= startMs && ms <= endMs) ?? candidates[0];
}

// The wall-clock instant shown at output second `t` of a playback (docs/playback.md): the
// output runs on across gaps, so take the last piece that starts at or before t.
export function wallAt(plan, t) {
  const pieces = plan.pieces;
  if (!pieces.length) return null;
  let piece = pieces[0];
  for (const candidate of pieces) {
    if (candidate.media_offset <= t + 1e-6) piece = candidate;
    else break;
  }
  const from = Date.parse(piece.from);
  const to = Date.parse(piece.to);
  return Math.min(from + (t - piece.media_offset) * 1000, to);
}

// The output second that shows wall-clock `ms`, or null if it falls in a gap or outside.
export function mediaAt(plan, ms) {
  for (const piece of plan.pieces) {
    const from = Date.parse(piece.from);
    const to = Date.parse(piece.to);
    if (ms >= from && ms < to) return piece.media_offset + (ms - from) / 1000;
  }
  return null;
}
