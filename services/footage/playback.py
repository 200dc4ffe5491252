"""Time-range playback of one camera without transcoding (docs/playback.md).

`plan_playback` is pure: from the camera's segments it picks the pieces that show [start, end),
names the gaps (with their causes) and stops where the codec parameters change. `PlaybackStream`
then remuxes the pieces' video packets, copied and never decoded, into one fragmented MP4 that
starts at the last keyframe at or before `start`, and hands it on fragment by fragment, so the
first bytes leave after one keyframe interval of demuxing whatever the length of the range.

Media time in the output is wall-clock time with the gaps cut out: piece k starts at
`media_offset` = the summed wall-clock length of the pieces before it. The plan lists every piece
and every gap with its media position, so a player can always show the true wall clock.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, tzinfo
from fractions import Fraction
from typing import Any

import av
import av.container
import av.stream

from services.coverage.rule import Footage, Gap, GapCause, Interval, camera_coverage
from services.footage.catalogue import open_recording
from services.health.sampling import stamped_packets, video_stream
from services.timefmt import rfc3339
from storage.blobs import BlobStore
from storage.models import Segment

logger = logging.getLogger(__name__)

# Every piece's timestamps are brought to this clock (MPEG's 90 kHz) before muxing, so pieces
# from containers with different time bases (MP4, Matroska's 1 ms, MPEG-TS) line up exactly.
WORK_TIME_BASE = Fraction(1, 90_000)
# empty_moov: the header goes out before any media; frag_keyframe: one fragment per GOP, flushed
# as soon as the next keyframe arrives; default_base_moof: what browsers' MSE expects.
FRAGMENTED_MP4 = {"movflags": "frag_keyframe+empty_moov+default_base_moof"}
MEDIA_TYPE = "video/mp4"
# Containers whose H.264/H.265 carry start codes (Annex B) rather than length prefixes: the two
# kinds cannot share one MP4 track, so a switch between them is a parameter change.
_ANNEX_B_CONTAINERS = frozenset({"mpegts", "mpeg"})
_MICROSECOND = timedelta(microseconds=1)


@dataclass(frozen=True)
class SourceSegment:
    """What playback needs of a segment row (detached from any session)."""

    id: int
    starts_at: datetime
    ends_at: datetime
    blob_key: str
    container: str
    video_codec: str
    width: int
    height: int
    purged: bool

    @classmethod
    def of(cls, segment: Segment) -> SourceSegment:
        return cls(
            id=segment.id,
            starts_at=segment.starts_at,
            ends_at=segment.ends_at,
            blob_key=segment.blob_key,
            container=segment.container,
            video_codec=segment.video_codec,
            width=segment.width,
            height=segment.height,
            purged=segment.purged_at is not None,
        )

    @property
    def parameters(self) -> tuple[str, int, int, bool]:
        """What must stay the same for packets to continue one output track."""
        return (
            self.video_codec,
            self.width,
            self.height,
            self.container in _ANNEX_B_CONTAINERS,
        )

    def describe(self) -> str:
        return f"{self.video_codec} {self.width}x{self.height} in {self.container}"


@dataclass(frozen=True)
class Piece:
    """The part [wall_from, wall_until) of one segment, placed at `media_offset` seconds."""

    segment: SourceSegment
    wall_from: datetime
    wall_until: datetime
    media_offset: float = 0.0

    @property
    def seconds(self) -> float:
        return (self.wall_until - self.wall_from).total_seconds()


@dataclass(frozen=True)
class PlaybackGap:
    start: datetime
    end: datetime
    cause: str  # not_received | rejected | clock_suspect | purged


@dataclass(frozen=True)
class PlaybackPlan:
    camera: str
    asked_start: datetime
    asked_end: datetime
    pieces: tuple[Piece, ...]
    gaps: tuple[PlaybackGap, ...]
    # Where playback stops short of `asked_end` because the codec parameters change there: ask
    # again from `continue_at` to see the rest.
    continue_at: datetime | None = None
    stop_reason: str | None = None
    # The output time of the first frame: 0, or the source's reordering delay when it has
    # B-frames (decode times start at 0, so the first picture is presented a little later).
    media_start: float = 0.0

    @property
    def start(self) -> datetime | None:
        """The wall-clock instant of the first frame (once landed on its keyframe)."""
        return self.pieces[0].wall_from if self.pieces else None

    @property
    def segment_ids(self) -> list[int]:
        return [piece.segment.id for piece in self.pieces]

    @property
    def media_seconds(self) -> float:
        """Where the output ends: its media start plus every piece's length."""
        return self.media_start + sum(piece.seconds for piece in self.pieces)

    def landed(self, first_frame: datetime, media_start: float = 0.0) -> PlaybackPlan:
        """The plan once the first piece's keyframe is known: it starts there, and every
        media offset follows."""
        if not self.pieces:
            return self
        pieces = [replace(self.pieces[0], wall_from=first_frame), *self.pieces[1:]]
        return replace(self, pieces=_with_offsets(pieces, media_start), media_start=media_start)

    def without_first(self) -> PlaybackPlan:
        """The plan when the first piece has no usable keyframe: the next one leads."""
        return replace(self, pieces=_with_offsets(list(self.pieces[1:]), self.media_start))

    def truncated(self, count: int, reason: str) -> PlaybackPlan:
        """The plan when the stream had to stop before piece `count`."""
        if count >= len(self.pieces):
            return self
        return replace(
            self,
            pieces=self.pieces[:count],
            continue_at=self.pieces[count].wall_from,
            stop_reason=reason,
        )

    def gap_media_at(self, gap: PlaybackGap) -> float:
        """Where in the output the gap was cut out: the media offset of the first piece after it
        (or the end of the output)."""
        for piece in self.pieces:
            if piece.wall_from >= gap.end - _MICROSECOND:
                return piece.media_offset
        return self.media_seconds

    def gaps_json(self, zone: tzinfo) -> list[dict[str, Any]]:
        return [
            {
                "start": rfc3339(gap.start, zone),
                "end": rfc3339(gap.end, zone),
                "cause": gap.cause,
                "media_at": round(self.gap_media_at(gap), 3),
            }
            for gap in self.gaps
        ]

    def as_json(self, zone: tzinfo) -> dict[str, Any]:
        return {
            "camera": self.camera,
            "asked_start": rfc3339(self.asked_start, zone),
            "asked_end": rfc3339(self.asked_end, zone),
            "start": None if self.start is None else rfc3339(self.start, zone),
            "media_start": round(self.media_start, 3),
            "media_seconds": round(self.media_seconds, 3),
            "pieces": [
                {
                    "segment": piece.segment.id,
                    "from": rfc3339(piece.wall_from, zone),
                    "to": rfc3339(piece.wall_until, zone),
                    "media_offset": round(piece.media_offset, 3),
                    "seconds": round(piece.seconds, 3),
                    "container": piece.segment.container,
                    "video_codec": piece.segment.video_codec,
                    "width": piece.segment.width,
                    "height": piece.segment.height,
                }
                for piece in self.pieces
            ],
            "gaps": self.gaps_json(zone),
            "continue_at": None if self.continue_at is None else rfc3339(self.continue_at, zone),
            "stop_reason": self.stop_reason,
        }


def _with_offsets(pieces: list[Piece], start: float = 0.0) -> tuple[Piece, ...]:
    placed = []
    offset = start
    for piece in pieces:
        placed.append(replace(piece, media_offset=offset))
        offset += piece.seconds
    return tuple(placed)


def plan_playback(
    camera: str,
    segments: Sequence[SourceSegment],
    start: datetime,
    end: datetime,
    *,
    tolerance: timedelta,
    rejected_claims: Sequence[Interval] = (),
    clock_suspect: bool = False,
) -> PlaybackPlan:
    """The pieces and gaps that show [start, end) of one camera. `clock_suspect`: the camera
    has footage with a suspect clock nearby, so its unexplained holes are named as the
    coverage report names them (the footage may sit at the wrong time, not be missing).

    Segments are taken in start order; one that lies wholly inside the piece before it adds
    nothing and is skipped, and where two overlap (host clocks jitter) the earlier one is cut
    where the later one begins, so output time never runs backwards. Playback stops before the
    first piece whose codec parameters differ from the first one's.
    """
    if end <= start:
        raise ValueError("the end of a playback range must be after its start")
    live = sorted(
        (s for s in segments if not s.purged and s.starts_at < end and s.ends_at > start),
        key=lambda s: (s.starts_at, s.id),
    )
    chosen: list[Piece] = []
    for segment in live:
        until = min(segment.ends_at, end)
        if chosen and until <= chosen[-1].wall_until:
            continue
        begin = max(segment.starts_at, start)
        while chosen and begin < chosen[-1].wall_until:
            previous = chosen.pop()
            if begin > previous.wall_from:
                chosen.append(replace(previous, wall_until=begin))
                break
        chosen.append(Piece(segment=segment, wall_from=begin, wall_until=until))

    continue_at: datetime | None = None
    stop_reason: str | None = None
    for index, piece in enumerate(chosen):
        if piece.segment.parameters != chosen[0].segment.parameters:
            continue_at = piece.wall_from
            stop_reason = (
                f"codec parameters change at segment {piece.segment.id}: "
                f"{chosen[0].segment.describe()} before, {piece.segment.describe()} from here"
            )
            chosen = chosen[:index]
            break

    covered_until = continue_at or end
    coverage = camera_coverage(
        Interval(start, covered_until),
        [Footage(s.starts_at, s.ends_at) for s in live],
        tolerance=tolerance,
        rejected_claims=rejected_claims,
    )
    purged = [s for s in segments if s.purged]

    def cause_of(gap: Gap) -> str:
        if any(s.starts_at < gap.end and s.ends_at > gap.start for s in purged):
            return "purged"
        if clock_suspect and gap.cause is GapCause.NOT_RECEIVED:
            return GapCause.CLOCK_SUSPECT.value
        return gap.cause.value

    gaps = tuple(PlaybackGap(gap.start, gap.end, cause_of(gap)) for gap in coverage.gaps)
    return PlaybackPlan(
        camera=camera,
        asked_start=start,
        asked_end=end,
        pieces=_with_offsets(chosen),
        gaps=gaps,
        continue_at=continue_at,
        stop_reason=stop_reason,
    )


class _Sink:
    """What the MP4 muxer writes into; the stream takes the bytes out after every packet.
    It has no `seek`, which tells FFmpeg the output is a pipe (fine for fragmented MP4)."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []

    def write(self, data: bytes | memoryview) -> int:
        self._parts.append(bytes(data))
        return len(data)

    def take(self) -> bytes:
        data = b"".join(self._parts)
        self._parts.clear()
        return data


@dataclass
class _OpenPiece:
    """One piece's input, with the clock that maps its timestamps to the wall clock."""

    piece: Piece
    container: av.container.InputContainer
    video: av.VideoStream
    time_base: Fraction
    origin: int  # the pts at the segment's wall-clock start (its first presented frame)
    packets: Iterator[av.Packet] = field(default_factory=lambda: iter(()))

    def pts_at(self, moment: datetime) -> int:
        """The source timestamp of a wall-clock instant (rounded down)."""
        micros = (moment - self.piece.segment.starts_at) // _MICROSECOND
        return self.origin + math.floor(Fraction(micros, 1_000_000) / self.time_base)

    def wall_at(self, pts: int) -> datetime:
        seconds = (pts - self.origin) * self.time_base
        return self.piece.segment.starts_at + timedelta(microseconds=round(seconds * 1_000_000))


class PlaybackStream:
    """The remux of a plan's pieces into one fragmented MP4.

    `open()` lands the first piece on its keyframe and returns the plan as it will be played
    (the first frame's instant is known only then); iterating yields the MP4's bytes. `close()`
    (or exhausting the iterator) releases the inputs and temporary downloads.

    `not_before` keeps a restricted reader inside their window: the stream never starts at a
    keyframe earlier than it, taking the first keyframe after it instead.
    """

    def __init__(
        self, plan: PlaybackPlan, store: BlobStore, *, not_before: datetime | None = None
    ) -> None:
        self.plan = plan
        self._store = store
        self._not_before = not_before
        self._stack = ExitStack()
        self._first: _OpenPiece | None = None
        self._lead: list[av.Packet] = []
        self._opened = False

    def open(self) -> PlaybackPlan:
        """Find the first frame; returns the plan to be played (no pieces: nothing to play)."""
        if self._opened:
            return self.plan
        self._opened = True
        while self.plan.pieces:
            piece = self.plan.pieces[0]
            opened = self._open_piece(piece, self._stack)
            target = opened.pts_at(max(piece.wall_from, self.plan.asked_start))
            floor = None if self._not_before is None else opened.pts_at(self._not_before)
            lead = self._land(opened, target, floor)
            if lead:
                self._first, self._lead = opened, lead
                keyframe = lead[0]
                delay = _timestamp(keyframe) - (keyframe.dts if keyframe.dts is not None else 0)
                self.plan = self.plan.landed(
                    opened.wall_at(_timestamp(keyframe)), float(max(0, delay) * opened.time_base)
                )
                return self.plan
            logger.warning(
                "segment %s has no keyframe to start playback from; trying the next one",
                piece.segment.id,
            )
            self.plan = self.plan.without_first()
        return self.plan

    def close(self) -> None:
        self._stack.close()

    def __iter__(self) -> Iterator[bytes]:
        try:
            yield from self._remux()
        finally:
            self.close()

    def _open_piece(self, piece: Piece, stack: ExitStack) -> _OpenPiece:
        container = stack.enter_context(open_recording(self._store, piece.segment.blob_key))
        video = video_stream(container, f"segment {piece.segment.id}")
        time_base = video.time_base or Fraction(1, 90_000)
        origin = video.start_time
        opened = _OpenPiece(piece, container, video, time_base, origin or 0)
        if origin is None:
            first = next(stamped_packets(container, video), None)
            opened.origin = 0 if first is None else _timestamp(first)
            container.seek(0)
        opened.packets = stamped_packets(container, video)
        return opened

    def _land(self, opened: _OpenPiece, target: int, floor: int | None) -> list[av.Packet]:
        """The packets of the GOP to start with: from the last keyframe at or before `target`
        (never before `floor`) up to the next keyframe, which is put back at the front of
        `opened.packets`. Empty when the piece has no keyframe to start from."""
        if target > opened.origin:
            opened.container.seek(target, stream=opened.video, backward=True, any_frame=False)
            opened.packets = stamped_packets(opened.container, opened.video)
        lead = self._scan(opened, target, floor)
        if (not lead or _timestamp(lead[0]) > target) and target > opened.origin:
            # The index sent us past the target (MPEG-TS seeks by bytes): scan from the top.
            opened.container.seek(opened.origin, stream=opened.video, backward=True)
            opened.packets = stamped_packets(opened.container, opened.video)
            lead = self._scan(opened, target, floor)
        return lead

    @staticmethod
    def _scan(opened: _OpenPiece, target: int, floor: int | None) -> list[av.Packet]:
        lead: list[av.Packet] = []
        for packet in opened.packets:
            moment = _timestamp(packet)
            if packet.is_keyframe and (floor is None or moment >= floor):
                if moment <= target:
                    lead = [packet]
                    continue
                if lead:
                    opened.packets = _prepend(packet, opened.packets)
                    return lead
                return [packet]  # no keyframe at or before the target: the first after it
            if lead:
                lead.append(packet)
        return lead

    def _remux(self) -> Iterator[bytes]:
        plan = self.open()
        if self._first is None:
            return
        sink = _Sink()
        first = self._first
        output = self._stack.enter_context(av.open(sink, "w", format="mp4", options=FRAGMENTED_MP4))
        track = output.add_stream_from_template(first.video)
        track.time_base = WORK_TIME_BASE
        parameters = bytes(first.video.codec_context.extradata or b"")
        last_dts: int | None = None
        for index, piece in enumerate(plan.pieces):
            # Each later input (and its download) is released before the next one is opened.
            with ExitStack() as piece_stack:
                if index == 0:
                    opened, packets = first, iter([*self._lead, *first.packets])
                    reference = _timestamp(self._lead[0])
                else:
                    opened = self._open_piece(piece, piece_stack)
                    if bytes(opened.video.codec_context.extradata or b"") != parameters:
                        # Same codec and size but other stream headers (SPS/PPS): the MP4
                        # track holds one set, so stop rather than send undecodable pictures.
                        logger.warning(
                            "playback of %s stops at segment %s: its stream headers differ",
                            plan.camera,
                            piece.segment.id,
                        )
                        self.plan = plan.truncated(index, "stream headers change")
                        break
                    packets = _from_first_keyframe(opened.packets)
                    reference = opened.pts_at(piece.wall_from)
                offset = round(Fraction(piece.media_offset) / WORK_TIME_BASE)
                until = opened.pts_at(piece.wall_until)
                scale = opened.time_base / WORK_TIME_BASE
                correction: int | None = None
                for packet in packets:
                    decode_time = packet.dts if packet.dts is not None else _timestamp(packet)
                    if decode_time >= until and correction is not None:
                        break
                    pts = offset + round((_timestamp(packet) - reference) * scale)
                    dts = offset + round((decode_time - reference) * scale)
                    if correction is None:
                        # Output decode times must grow: a piece whose first packet would not
                        # follow the last one (clock jitter, reordering delay) moves up.
                        correction = 0 if last_dts is None or dts > last_dts else last_dts + 1 - dts
                    packet.pts, packet.dts = pts + correction, dts + correction
                    if packet.duration:
                        packet.duration = max(1, round(packet.duration * scale))
                    packet.time_base = WORK_TIME_BASE
                    packet.stream = track
                    last_dts = packet.dts
                    output.mux(packet)
                    data = sink.take()
                    if data:
                        yield data
        output.close()
        data = sink.take()
        if data:
            yield data


def _timestamp(packet: av.Packet) -> int:
    """A packet's presentation time (`stamped_packets` fills in missing ones)."""
    assert packet.pts is not None
    return packet.pts


def _prepend(packet: av.Packet, rest: Iterator[av.Packet]) -> Iterator[av.Packet]:
    yield packet
    yield from rest


def _from_first_keyframe(packets: Iterator[av.Packet]) -> Iterator[av.Packet]:
    """A piece after the first starts at its first keyframe: anything before it refers to
    pictures the file does not hold."""
    started = False
    for packet in packets:
        started = started or packet.is_keyframe
        if started:
            yield packet
