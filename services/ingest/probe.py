"""Probe a pushed video segment with PyAV: what it is, how long it really lasts, whether it plays.

The probe demuxes every packet (cheap: no decoding) to count packets and keyframes, to measure
the media duration from the packet timestamps and to find where the recording's bytes end, and
decodes a handful of keyframes spread over the file's bytes (``_SAMPLED_KEYFRAMES``), which
proves the stream decodes and finds damage without paying for a full decode (docs/ingest.md,
"What the probe proves"). A file with more than a small allowance of bytes past its last box or
packet is refused (``trailing_data``), as is one whose sampled keyframes are mostly damaged; a
file with some damaged keyframes is evidence and says where (``MediaProbe.damaged``).

The duration is never taken from the nominal frame rate, the container's declared duration or
the file's mtime: cameras lie about all three, and coverage is built on this number.

Before anything is decoded, the stream header is read with every decoder barred (FFmpeg's
``avformat_find_stream_info`` would otherwise decode up to seven frames of whatever size the
file claims) and a picture larger than ``PictureLimits`` allows is refused: a 100 KB file can
hold 8192x8192 frames that cost half a gigabyte to decode.

A file that is not a usable recording raises ``ProbeError`` with a stable ``code`` (shown in API
JSON) and a one-sentence English ``reason``.
"""

from __future__ import annotations

import logging
import os
import struct
from array import array
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from fractions import Fraction
from pathlib import Path
from typing import BinaryIO

import av
import av.logging
import av.stream
import numpy as np

logger = logging.getLogger(__name__)

PROBE_ERROR_CODES = frozenset(
    {
        "empty_file",
        "not_a_video",
        "no_video_stream",
        "image_not_recording",
        "undecodable",
        "zero_duration",
        "absurd_duration",
        "too_large_picture",
        "unreadable",
        "trailing_data",
        "damaged_recording",
    }
)

# Demuxers that read still images; FFmpeg opens a JPEG as "jpeg_pipe", a PNG as "png_pipe" etc.
_IMAGE_FORMATS = frozenset({"image2", "image2pipe"})
# Marks a missing timestamp in the int64 arrays below (FFmpeg's AV_NOPTS_VALUE is the same).
_NO_TS = -(2**63)
# Enough to walk the top-level boxes of any real MP4 while bounding a hostile file.
_MAX_MP4_BOXES = 10_000
# Pixels a decoder may add to each side of a picture when it rounds it up to its coded size
# (H.264 macroblocks are 16, H.265 coding tree units up to 64).
_CODED_MARGIN = 64
# Top-level boxes an MP4/QuickTime file written by a camera starts with.
_MP4_FIRST_BOXES = frozenset({b"ftyp", b"styp", b"wide", b"free", b"skip", b"mdat"})
# Top-level boxes that hold media or filler rather than an index: a file's end is the end of its
# last packet or its last index box, so filler past both (a 500 MB "free" box) is trailing data.
_MP4_FILLER_BOXES = frozenset({b"mdat", b"free", b"skip", b"wide"})
# Keyframes the probe decodes, at most: the first, then the first one at or after each further
# eighth of the file's bytes. Bounded cost (bench/ingest.py), spread where damage would be.
_SAMPLED_KEYFRAMES = 8
# Bytes a recording may carry past its last packet or index box: containers end with small
# tables (Matroska cues, MPEG-TS/PS packet framing) that no packet position accounts for.
TRAILING_ALLOWANCE_BYTES = 1024 * 1024
TRAILING_ALLOWANCE_SHARE = 0.01


@dataclass(frozen=True)
class PictureLimits:
    """The largest picture a camera may send: 4K (4096x2160) in either orientation, at most
    60 frames per second of it. Bounds the memory and CPU every decode of a segment costs."""

    max_long_side: int = 4096
    max_short_side: int = 2160
    max_pixel_rate: float = 4096 * 2160 * 60  # pixels per second

    @property
    def decoder_max_pixels(self) -> int:
        """FFmpeg's ``max_pixels`` for these limits: decoders allocate the coded size, which
        rounds each side up to whole macroblocks or coding units (2160 is coded as 2176)."""
        return (self.max_long_side + _CODED_MARGIN) * (self.max_short_side + _CODED_MARGIN)


@dataclass(frozen=True)
class MediaProbe:
    """What the probe learnt about one recording."""

    container: str  # av container format name, e.g. "mov,mp4,m4a,3gp,3g2,mj2", "mpegts"
    video_codec: str  # codec name, not the decoder's: "h264", "hevc", ...
    width: int
    height: int
    frame_rate: float | None  # declared/guessed rate, for information only
    keyframe_count: int
    packet_count: int  # video packets
    duration_seconds: float  # measured from the video packet timestamps
    has_audio: bool
    creation_time: datetime | None  # container 'creation_time' tag, aware UTC
    # Stretches (seconds from the first video pts) whose keyframe did not decode cleanly, or
    # after which the packets stopped being readable: footage kept, but flagged `damaged`.
    damaged: tuple[tuple[float, float], ...] = ()
    # Bytes past the last packet or index box (within the allowance, else refused).
    trailing_bytes: int = 0


class ProbeError(Exception):
    """The file is not a usable recording; ``code`` is stable, ``reason`` is for people."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason

    def __str__(self) -> str:
        return self.reason


def probe_recording(
    path: Path,
    *,
    max_duration_seconds: float = 12 * 3600,
    limits: PictureLimits = PictureLimits(),
) -> MediaProbe:
    """Probe the recording at ``path`` or raise ``ProbeError`` saying why it is unusable."""
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise ProbeError("unreadable", f"The file cannot be read: {_os_reason(exc)}.") from exc
    if size == 0:
        raise ProbeError("empty_file", "The file is empty (0 bytes).")

    # PyAV 18 silences FFmpeg's log unless someone enabled it; if so, Capture keeps this
    # thread's messages (a damaged file can log one per packet) out of the application log
    # and gives us this call's own messages: an exception's "last error log" may be stale.
    ffmpeg_log: list[tuple[int, str, str]] = []
    # "file:" stops FFmpeg from reading a relative name such as "concat:a|b" or "rtp:..."
    # as a protocol URL instead of a path.
    url = f"file:{path.resolve()}"
    try:
        with av.logging.Capture() as ffmpeg_log:
            _refuse_large_picture(url, limits)
        # max_pixels also bars find_stream_info's decoders (where the container lists its
        # streams before it) from frames larger than the header said: MP4 keeps a size in
        # its sample description and another in the H.264 parameters, and either may lie.
        with (
            av.logging.Capture() as ffmpeg_log,
            av.open(
                url,
                metadata_errors="ignore",
                options={"max_pixels": str(limits.decoder_max_pixels)},
            ) as container,
        ):
            return _probe_container(container, max_duration_seconds, limits, path, size)
    except ProbeError:
        raise
    except av.FFmpegError as exc:
        if isinstance(exc, OSError):  # PyAV's FileNotFoundError, PermissionError, ...
            raise ProbeError("unreadable", f"The file cannot be read: {_os_reason(exc)}.") from exc
        messages = [message for _, _, message in ffmpeg_log]
        raise ProbeError("not_a_video", _not_a_video_reason(path, messages)) from exc
    except OSError as exc:
        raise ProbeError("unreadable", f"The file cannot be read: {_os_reason(exc)}.") from exc


def _refuse_large_picture(url: str, limits: PictureLimits) -> None:
    """Raise ``too_large_picture`` from the stream header alone, before any decoder runs.

    With ``codec_whitelist`` naming no decoder, opening reads the container and runs the
    codec parsers (which take the size from the sequence header) but decodes nothing, for every
    container, MPEG-PS included. A file that does not open is left to the real open to judge.
    """
    try:
        with av.open(url, metadata_errors="ignore", options={"codec_whitelist": "none"}) as probe:
            video = _first_video_stream(probe)
            if video is None:
                return
            parameters = video.codec_context
            if parameters is None:  # no decoder for the codec: the real open says so
                return
            width, height = parameters.width or 0, parameters.height or 0
            # Not guessed_rate: without frames FFmpeg guesses one from the time base (10240/s).
            rate = video.average_rate
    except av.FFmpegError:
        return
    _check_picture(width, height, float(rate) if rate else None, limits, "declares")


def _check_picture(
    width: int, height: int, rate: float | None, limits: PictureLimits, how: str
) -> None:
    long_side, short_side = max(width, height), min(width, height)
    if long_side > limits.max_long_side or short_side > limits.max_short_side:
        raise ProbeError(
            "too_large_picture",
            f"The video track {how} {width}x{height} pictures, larger than the "
            f"{limits.max_long_side}x{limits.max_short_side} (either orientation) a camera "
            "may send.",
        )
    if rate is not None and width * height * rate > limits.max_pixel_rate:
        raise ProbeError(
            "too_large_picture",
            f"The video track {how} {width}x{height} pictures at {rate:.1f} frames/s, "
            f"{width * height * rate:.0f} pixels/s, more than the {limits.max_pixel_rate:.0f} "
            "a camera may send.",
        )


def _first_video_stream(container: av.container.InputContainer) -> av.VideoStream | None:
    for stream in container.streams.video:
        # Cover art in an audio file is a "video" stream holding one picture.
        if not stream.disposition & av.stream.Disposition.attached_pic:
            return stream
    return None


def _probe_container(
    container: av.container.InputContainer,
    max_duration: float,
    limits: PictureLimits,
    path: Path,
    file_size: int,
) -> MediaProbe:
    format_name = container.format.name
    if format_name in _IMAGE_FORMATS or format_name.endswith("_pipe"):
        raise ProbeError(
            "image_not_recording",
            f"The file is a still image ({format_name}), not a video recording.",
        )
    video = _first_video_stream(container)
    if video is None:
        raise ProbeError("no_video_stream", "The file has no video track (audio or data only).")
    codec_context = video.codec_context
    if codec_context is None:  # PyAV leaves it unset when FFmpeg has no decoder for the codec
        raise ProbeError("undecodable", "The video track uses a codec this server cannot decode.")
    # The header passed; the decoder still refuses any later picture above the limit (a new
    # sequence header mid-stream) instead of allocating it.
    codec_context.options = {**codec_context.options, "max_pixels": str(limits.decoder_max_pixels)}
    # One thread: FFmpeg's H.264/H.265 error concealment (which marks a damaged picture
    # "corrupt") runs only without frame threads, and a keyframe at a time gains nothing from
    # them anyway.
    codec_context.thread_count = 1

    pts, dts, durations = array("q"), array("q"), array("q")
    keyframes = array("q")  # index into pts of each keyframe
    sampler = _KeyframeSampler(codec_context, file_size)
    data_end = 0  # the furthest byte any packet of any stream occupies
    read_error: str | None = None
    try:
        for packet in container.demux():
            if packet.size == 0:  # flush packets at the end of the demuxer
                continue
            position = packet.pos
            if position is not None and position >= 0:
                data_end = max(data_end, position + packet.size)
            if packet.stream_index != video.index:
                continue
            pts.append(_NO_TS if packet.pts is None else packet.pts)
            dts.append(_NO_TS if packet.dts is None else packet.dts)
            durations.append(packet.duration or 0)
            if packet.is_keyframe:
                keyframes.append(len(pts) - 1)
                sampler.offer(packet, len(keyframes) - 1)
    except ProbeError:
        raise
    except av.FFmpegError as exc:
        # The packets read so far may still be evidence; what follows is judged below.
        read_error = f"{exc.strerror or exc}"
    sampler.finish()

    packet_count = len(pts)
    if read_error is not None and (packet_count < 2 or sampler.decoded_size is None):
        raise ProbeError(
            "not_a_video",
            f"The container is damaged: reading its packets failed after {packet_count} video "
            f"packets ({read_error}).",
        )
    if packet_count == 0:
        raise ProbeError("zero_duration", "The video track contains no frames.")
    if packet_count == 1:
        raise ProbeError(
            "image_not_recording", "The video track holds a single picture, not a recording."
        )
    if not keyframes:
        raise ProbeError(
            "undecodable", "The video track has no keyframe, so no picture can be decoded."
        )
    if sampler.decoded_size is None and not sampler.concealed:
        raise ProbeError("undecodable", "The video track is damaged: not a single picture decodes.")
    if mostly_damaged(sampler.sampled, len(sampler.damaged)):
        # Pictures came out, but FFmpeg had to patch most of them: garbage in a video's shape.
        raise ProbeError(
            "damaged_recording",
            f"The video track is mostly damaged: {len(sampler.damaged)} of the "
            f"{sampler.sampled} keyframes checked do not decode cleanly.",
        )
    if sampler.decoded_size is None:
        raise ProbeError("undecodable", "The video track is damaged: not a single picture decodes.")

    index_end = _mp4_index_end(path) if format_name.startswith("mov,") else 0
    trailing = file_size - max(data_end, index_end) if data_end else 0
    if trailing > trailing_allowance(file_size - trailing):
        if read_error is not None and not _is_padding(path, data_end, file_size):
            raise ProbeError(
                "damaged_recording",
                f"The container is damaged: its packets stop being readable at byte "
                f"{data_end} of {file_size} ({read_error}).",
            )
        raise ProbeError(
            "trailing_data",
            f"The file carries {trailing} bytes after the end of its recording (byte "
            f"{file_size - trailing} of {file_size}), more than a recording's "
            f"{trailing_allowance(file_size - trailing)}-byte allowance: padding or appended "
            "data is not footage.",
        )

    time_base = video.time_base or Fraction(1, 90_000)
    duration = float(_timestamp_span(pts, dts, durations) * time_base)
    if duration <= 0:
        raise ProbeError("zero_duration", "The video lasts zero seconds.")
    if duration > max_duration:
        raise ProbeError(
            "absurd_duration",
            f"The video lasts {duration:.0f} s by its timestamps, longer than the "
            f"{max_duration:.0f} s a single segment may last.",
        )

    rate = video.average_rate or video.guessed_rate
    width = codec_context.width or sampler.decoded_size[0]
    height = codec_context.height or sampler.decoded_size[1]
    # The declared rate was checked before decoding; the timestamps may tell a faster one.
    _check_picture(width, height, packet_count / duration, limits, "measures")
    damaged_keyframes = set(sampler.damaged)
    if read_error is not None:
        # The stretch from the last keyframe read to the end holds the unreadable part.
        damaged_keyframes.add(len(keyframes) - 1)
    probe = MediaProbe(
        container=format_name,
        video_codec=codec_context.codec.canonical_name,
        width=width,
        height=height,
        frame_rate=float(rate) if rate else None,
        keyframe_count=len(keyframes),
        packet_count=packet_count,
        duration_seconds=duration,
        has_audio=len(container.streams.audio) > 0,
        creation_time=_parse_creation_time(
            container.metadata.get("creation_time") or video.metadata.get("creation_time")
        ),
        damaged=_damaged_stretches(
            pts, keyframes, sorted(damaged_keyframes), duration, float(time_base)
        ),
        trailing_bytes=max(trailing, 0),
    )
    logger.debug("probed %s", probe)
    return probe


def trailing_allowance(recording_bytes: int) -> int:
    """Bytes a recording of ``recording_bytes`` may carry past its last packet or index box."""
    return TRAILING_ALLOWANCE_BYTES + int(max(recording_bytes, 0) * TRAILING_ALLOWANCE_SHARE)


def mostly_damaged(sampled: int, damaged: int) -> bool:
    """More than half of the keyframes checked are damaged: the file is not evidence but
    garbage with a video header. Less than that is damaged evidence, kept and flagged."""
    return sampled > 0 and damaged * 2 > sampled


class _KeyframeSampler:
    """Decodes the first keyframe and the first one at or after each further 1/N of the file's
    bytes (every keyframe whose number is a power of two when positions are unknown), each on
    its own, and notes which ones do not decode cleanly: a decoder error, or a picture FFmpeg
    had to conceal (``is_corrupt``)."""

    def __init__(self, codec_context: av.CodecContext, file_size: int) -> None:
        self.codec_context = codec_context
        self.step = max(file_size // _SAMPLED_KEYFRAMES, 1)
        self.next_position = 0
        self.sampled = 0
        self.damaged: list[int] = []  # keyframe numbers
        self.decoded_size: tuple[int, int] | None = None
        self.concealed = 0  # pictures that came out patched by error concealment
        self._by_pts: dict[int, int] = {}

    def offer(self, packet: av.Packet, number: int) -> None:
        if self.sampled >= _SAMPLED_KEYFRAMES + 1:
            return
        position = packet.pos
        if position is not None and position >= 0:
            if position < self.next_position:
                return
            self.next_position = (position // self.step + 1) * self.step
        elif number & (number - 1):  # not 0 or a power of two
            return
        self.sampled += 1
        if packet.pts is not None:
            self._by_pts[packet.pts] = number
        try:
            frames = self.codec_context.decode(packet)
        except av.FFmpegError:
            self.damaged.append(number)
            return
        self._take(frames)

    def finish(self) -> None:
        if not self.sampled:
            return
        try:
            # Decoders may hold frames back (reordering); drain them.
            self._take(self.codec_context.decode(None))
        except av.FFmpegError:
            logger.debug("draining the probe's decoder failed", exc_info=True)

    def _take(self, frames: list[av.VideoFrame]) -> None:  # type: ignore[type-arg]
        for frame in frames:
            if frame.is_corrupt:
                self.concealed += 1
                number = self._by_pts.get(frame.pts) if frame.pts is not None else None
                if number is not None and number not in self.damaged:
                    self.damaged.append(number)
                continue
            if self.decoded_size is None:
                self.decoded_size = (frame.width, frame.height)


def _damaged_stretches(
    pts: array[int],
    keyframes: array[int],
    damaged: list[int],
    duration: float,
    time_base: float,
) -> tuple[tuple[float, float], ...]:
    """Each damaged keyframe's group of pictures as (start, end) seconds from the first pts:
    a damaged keyframe spoils every picture up to the next keyframe. Neighbours merge."""
    if not damaged:
        return ()
    stamps = np.frombuffer(pts, dtype=np.int64)
    known = stamps[stamps != _NO_TS]
    origin = int(known.min()) if known.size else 0
    starts = []
    for index in keyframes:
        stamp = int(stamps[index])
        starts.append(None if stamp == _NO_TS else max((stamp - origin) * time_base, 0.0))
    stretches: list[tuple[float, float]] = []
    for number in damaged:
        start = starts[number]
        if start is None:
            continue
        later = [s for s in starts[number + 1 :] if s is not None and s > start]
        end = min(later[0] if later else duration, duration)
        if end <= start:
            end = duration
        if stretches and start <= stretches[-1][1]:
            stretches[-1] = (stretches[-1][0], max(end, stretches[-1][1]))
        else:
            stretches.append((round(start, 3), round(end, 3)))
    return tuple(stretches)


def _timestamp_span(pts: array[int], dts: array[int], durations: array[int]) -> int:
    """Time-base units from the earliest presented frame to the end of the latest one.

    That is ``max(pts + duration) - min(pts)`` over the video packets, where a packet without
    a duration counts as the median spacing of the presentation times.

    Some muxers leave timestamps out: MPEG-PS stamps only the first frame that starts in each
    2 KiB pack, so small frames arrive with neither pts nor dts, and FFmpeg does not interpolate
    them for H.264/H.265. Then decode times are carried forward (in decode order) from the last
    stamped packet by packet durations, and a missing presentation time is its decode time
    plus the reorder delay D seen at the first stamped packet. In a constant-rate stream the
    last decode time + D is the latest presentation time, even with B-frames.
    """
    p = np.frombuffer(pts, dtype=np.int64)
    d = np.frombuffer(dts, dtype=np.int64)
    has_pts, has_dts = p != _NO_TS, d != _NO_TS
    raw = np.frombuffer(durations, dtype=np.int64)
    step = _frame_step(p[has_pts], d[has_dts], raw[raw > 0])
    lengths = np.where(raw > 0, raw, step)
    if has_pts.all():
        return int((p + lengths).max() - p.min())

    anchored, anchors = (has_dts, d) if has_dts.any() else (has_pts, p)
    if not anchored.any():
        return int(lengths.sum())
    # Where each packet would start if laid end to end, then shifted onto the nearest anchor
    # before it (or the first anchor, for leading packets).
    starts = np.cumsum(lengths) - lengths
    index = np.arange(len(p))
    last_anchor = np.maximum.accumulate(np.where(anchored, index, -1))
    anchor = np.where(last_anchor >= 0, last_anchor, int(np.argmax(anchored)))
    decode_times = anchors[anchor] + (starts - starts[anchor])
    delay = 0
    if has_pts.any():
        first = int(np.argmax(has_pts))
        delay = int(p[first] - decode_times[first])
    presented = np.where(has_pts, p, decode_times + delay)
    end = max(int((presented + lengths).max()), int(decode_times[-1] + delay + lengths[-1]))
    return end - int(presented.min())


def _frame_step(pts: np.ndarray, dts: np.ndarray, durations: np.ndarray) -> int:
    for stamps in (pts, dts):
        steps = np.diff(np.unique(stamps))
        if steps.size:
            return int(np.median(steps))
    return int(np.median(durations)) if durations.size else 0


def _parse_creation_time(value: str | None) -> datetime | None:
    if not value:
        return None
    # FFmpeg writes "2026-11-24T01:00:00.000000Z"; old muxers wrote "2026-11-24 01:00:00".
    try:
        moment = datetime.fromisoformat(value.strip().replace(" ", "T", 1))
    except ValueError:
        logger.debug("ignoring unparseable creation_time %r", value)
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def _not_a_video_reason(path: Path, ffmpeg_messages: list[str]) -> str:
    looks_like_mp4, has_moov = _mp4_layout(path)
    moov_not_found = any("moov atom not found" in message for message in ffmpeg_messages)
    # FFmpeg also says "moov atom not found" about random bytes named .mp4, so the file
    # must start like an MP4 before we blame a missing index.
    if looks_like_mp4 and (moov_not_found or not has_moov):
        return (
            "The MP4 file has no index ('moov' box): the recording was cut off before the "
            "camera finished writing it."
        )
    return "The file is not a video FFmpeg can read (unknown or damaged container)."


def _top_level_boxes(file: BinaryIO, file_size: int) -> Iterator[tuple[int, int, bytes]]:
    """``(offset, size, kind)`` of each top-level MP4 box header, in order (a seek and a 16-byte
    read each, at most ``_MAX_MP4_BOXES``). A size below 8 is not a box: it is the last one
    yielded, and the callers stop there."""
    offset = 0
    for _ in range(_MAX_MP4_BOXES):
        file.seek(offset)
        header = file.read(16)
        if len(header) < 8:
            return
        size, kind = struct.unpack(">I4s", header[:8])
        if size == 1 and len(header) == 16:
            size = struct.unpack(">Q", header[8:16])[0]
        elif size == 0:  # "runs to the end of the file"
            size = file_size - offset
        yield offset, size, kind
        if size < 8:
            return
        offset += size


def _mp4_layout(path: Path) -> tuple[bool, bool]:
    """``(starts like an MP4, has a complete top-level 'moov' box)``, from the box headers.

    PyAV silences FFmpeg's log by default, so "moov atom not found" usually never reaches us;
    walking the top-level box headers tells the same thing.
    """
    try:
        with path.open("rb") as file:
            file_size = os.fstat(file.fileno()).st_size
            for offset, size, kind in _top_level_boxes(file, file_size):
                if offset == 0 and kind not in _MP4_FIRST_BOXES:
                    return False, False
                if size < 8:
                    break
                if kind == b"moov":
                    return True, offset + size <= file_size
    except OSError:
        return False, False
    return True, False


def _is_padding(path: Path, start: int, end: int) -> bool:
    """Whether bytes ``start``..``end`` look like padding (one byte value repeated), judged
    from a 64 KiB window in their middle and one at their end (the first bytes after the last
    packet's start are still that packet's framing): a demuxer that chokes on zeros appended
    to an MPEG-TS file has met padding, not damage."""
    window = 64 * 1024
    try:
        with path.open("rb") as file:
            for offset in {max(start, (start + end - window) // 2), max(start, end - window)}:
                file.seek(offset)
                chunk = file.read(min(window, end - offset))
                if not chunk or chunk.count(chunk[:1]) != len(chunk):
                    return False
    except OSError:
        return False
    return True


def _mp4_index_end(path: Path) -> int:
    """Where the last top-level box that is neither media nor filler ends (0 if none).

    The walk stops at the first header that is not a box (zeros, random bytes): padding appended
    to a finished MP4 is not part of it, whatever its length. It also stops at a second
    ``ftyp`` or ``moov``: a file with another whole MP4 appended is one recording and its tail.
    """
    end = 0
    seen: set[bytes] = set()
    try:
        with path.open("rb") as file:
            file_size = os.fstat(file.fileno()).st_size
            for offset, size, kind in _top_level_boxes(file, file_size):
                if size < 8 or not all(0x20 <= byte <= 0x7E for byte in kind):
                    break
                if offset + size > file_size or kind in seen & {b"ftyp", b"moov"}:
                    break
                seen.add(kind)
                if kind not in _MP4_FILLER_BOXES:
                    end = offset + size
    except OSError:
        return 0
    return end


def _os_reason(exc: OSError) -> str:
    return (exc.strerror or str(exc)).rstrip(".").lower()
