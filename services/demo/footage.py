"""Synthetic camera footage written with PyAV, for the demo seed, the tests and the benchmarks.

A *scene* is a function ``(frame_index, seconds_from_start) -> frame`` that returns an
``height x width x 3`` ``uint8`` array in **BGR** order (OpenCV's convention, so the pictures
can be drawn with ``cv2`` and fed back to the OpenCV health checks without a conversion).

``write_recording`` encodes a scene the way a camera host would: H.264 (libx264) or H.265
(libx265), yuv420p, a keyframe at a fixed interval, in MP4 (plain or fragmented), Matroska,
MPEG-TS or MPEG-PS, optionally with an audio track and a container creation time.

The ``write_*`` helpers at the end build the bad inputs the probe must refuse.
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np

logger = logging.getLogger(__name__)

Scene = Callable[[int, float], np.ndarray]
"""``(frame_index, seconds_from_start) -> height x width x 3 uint8 BGR frame``."""

CONTAINER_BY_SUFFIX: dict[str, str] = {
    ".mp4": "mp4",
    ".mkv": "matroska",
    ".ts": "mpegts",
    ".ps": "mpeg",
    ".mpg": "mpeg",
    ".mpeg": "mpeg",
}
_ENCODER_BY_CODEC: dict[str, str] = {"h264": "libx264", "hevc": "libx265"}
_AUDIO_RATE = 16_000  # what camera microphones record; cheaper to encode than 48 kHz
_AUDIO_TONE_HZ = 440.0
_AAC_PRIMING_SAMPLES = 1024
_AUDIO_BIT_RATE = 32_000
# Spare noise rows: each frame reads the noise field from a different starting row (a view,
# not a copy), so consecutive frames never share their noise. Drawing fresh random numbers
# for every 1280x720 frame would cost more than encoding it.
_NOISE_SPARE_ROWS = 97


class _SensorNoise:
    """Zero-mean uniform noise in [-amplitude, amplitude] that differs on every frame.

    Values are stored as 0..2*amplitude and added with saturating OpenCV arithmetic to a picture
    lowered by the amplitude beforehand, so everything stays uint8 and takes one pass per frame.
    """

    def __init__(self, height: int, width: int, amplitude: int, seed: int) -> None:
        rng = np.random.default_rng(seed)
        self.amplitude = amplitude
        self._height = height
        self._field = rng.integers(
            0, 2 * amplitude + 1, size=(height + _NOISE_SPARE_ROWS, width, 3), dtype=np.uint8
        )

    def lower(self, picture: np.ndarray) -> np.ndarray:
        """``picture`` minus the amplitude, the base that ``over`` adds the noise to."""
        a = self.amplitude
        return cv2.subtract(picture, (a, a, a, 0))

    def over(self, lowered: np.ndarray, frame_index: int) -> np.ndarray:
        """A new noisy frame: ``lowered`` (from ``lower``) plus this frame's noise."""
        return cv2.add(lowered, self._window(frame_index))

    def add_to(self, region: np.ndarray, frame_index: int, top: int, left: int) -> None:
        """Add this frame's noise to ``region`` (a view into a frame at ``top``, ``left``)."""
        h, w = region.shape[:2]
        noise = self._window(frame_index)[top : top + h, left : left + w]
        region[...] = cv2.add(self.lower(region), noise)

    def _window(self, frame_index: int) -> np.ndarray:
        offset = frame_index * 31 % _NOISE_SPARE_ROWS
        return self._field[offset : offset + self._height]


def _draw_classroom_background(width: int, height: int, seed: int) -> np.ndarray:
    """Wall, floor, whiteboard and rows of desks seen from a high camera at the room's end."""
    rng = np.random.default_rng(seed)
    frame = np.empty((height, width, 3), dtype=np.uint8)
    horizon = height * 2 // 5
    # Wall: a vertical gradient of a warm off-white; floor: a darker grey-brown.
    wall = np.linspace(205, 175, horizon, dtype=np.float32)[:, None]
    frame[:horizon] = np.stack([wall - 15, wall - 5, wall], axis=-1).astype(np.uint8)
    floor = np.linspace(120, 90, height - horizon, dtype=np.float32)[:, None]
    frame[horizon:] = np.stack([floor - 20, floor - 5, floor], axis=-1).astype(np.uint8)
    board = (width // 4, height // 12), (width * 3 // 4, horizon - height // 20)
    cv2.rectangle(frame, *board, (235, 240, 240), -1)
    cv2.rectangle(frame, *board, (60, 60, 60), 2)
    # Desks: rows get wider and lower towards the camera, like a perspective view.
    rows, columns = 4, 5
    for row in range(rows):
        depth = (row + 1) / rows
        desk_w = int(width / (columns + 2) * (0.6 + 0.5 * depth))
        desk_h = max(2, int(height / 18 * (0.6 + 0.6 * depth)))
        y = horizon + int((height - horizon) * (0.1 + 0.8 * row / rows))
        gap = (width - columns * desk_w) // (columns + 1)
        shade = int(rng.integers(0, 20))
        for column in range(columns):
            x = gap + column * (desk_w + gap)
            cv2.rectangle(
                frame, (x, y), (x + desk_w, y + desk_h), (40 + shade, 80 + shade, 130 + shade), -1
            )
            cv2.rectangle(frame, (x, y), (x + desk_w, y + desk_h), (20, 40, 60), 1)
    return frame


def classroom_scene(
    width: int,
    height: int,
    *,
    seed: int = 0,
    label: str = "",
    clock_start: datetime | None = None,
    noise_amplitude: int = 3,
) -> Scene:
    """A plausible exam room: desks, an invigilator walking the aisle, sensor noise, an OSD.

    ``label`` is burned in at the top left (e.g. the camera code); a running clock is burned in
    at the bottom right, counting from ``clock_start`` (default 2026-01-01 09:00:00) like a
    camera's on-screen display. Noise never lets two frames be identical, as on a live sensor.
    """
    noise = _SensorNoise(height, width, noise_amplitude, seed)
    background = noise.lower(_draw_classroom_background(width, height, seed))
    start = clock_start or datetime(2026, 1, 1, 9, 0, 0)
    font_scale = max(0.35, height / 600)
    thickness = max(1, height // 360)
    person_h = height // 4
    person_w = max(4, person_h // 3)
    aisle_y = height * 3 // 5

    def render(frame_index: int, t: float) -> np.ndarray:
        frame = noise.over(background, frame_index)
        # The invigilator paces left and right across the room every 20 s, bobbing as he walks.
        x = int(width / 2 + (width * 0.38) * np.sin(2 * np.pi * t / 20.0))
        y = aisle_y + int(height * 0.03 * np.sin(2 * np.pi * t / 1.1))
        top, left = max(0, y - person_h - person_w), max(0, x - person_w // 2)
        cv2.rectangle(
            frame, (x - person_w // 2, y - person_h), (x + person_w // 2, y), (70, 50, 40), -1
        )
        cv2.circle(frame, (x, y - person_h - person_w // 2), person_w // 2, (120, 150, 190), -1)
        noise.add_to(frame[top : y + 1, left : x + person_w // 2 + 1], frame_index, top, left)
        # The on-screen display is drawn after the sensor, so it carries no noise.
        if label:
            cv2.putText(
                frame,
                label,
                (8, int(24 * font_scale / 0.6)),
                cv2.FONT_HERSHEY_SIMPLEX,
                font_scale,
                (255, 255, 255),
                thickness,
                cv2.LINE_AA,
            )
        clock = (start + timedelta(seconds=t)).strftime("%Y-%m-%d %H:%M:%S")
        (text_w, _), _ = cv2.getTextSize(clock, cv2.FONT_HERSHEY_SIMPLEX, font_scale, thickness)
        cv2.putText(
            frame,
            clock,
            (max(0, width - text_w - 8), height - 8),
            cv2.FONT_HERSHEY_SIMPLEX,
            font_scale,
            (255, 255, 255),
            thickness,
            cv2.LINE_AA,
        )
        return frame

    return render


def black_scene(width: int, height: int, *, seed: int = 0) -> Scene:
    """Near-black with slight noise: a capped lens, or an unlit room at night."""
    noise = _SensorNoise(height, width, 2, seed)
    base = noise.lower(np.full((height, width, 3), 4, dtype=np.uint8))
    return lambda frame_index, _t: noise.over(base, frame_index)


def frozen_scene(frame: np.ndarray) -> Scene:
    """Exactly the same frame every time, as from a hung encoder that repeats its last picture."""
    still = np.ascontiguousarray(frame, dtype=np.uint8).copy()
    # Read-only, so no caller can make the "frozen" picture change by accident.
    still.setflags(write=False)
    return lambda _frame_index, _t: still


def flat_scene(width: int, height: int, *, level: int = 128, seed: int = 0) -> Scene:
    """Uniform grey with tiny noise: the lens covered by a hand or a sheet of paper."""
    noise = _SensorNoise(height, width, 1, seed)
    base = noise.lower(np.full((height, width, 3), level, dtype=np.uint8))
    return lambda frame_index, _t: noise.over(base, frame_index)


def spliced(*parts: tuple[float, Scene]) -> Scene:
    """Piecewise scene: each ``(until_seconds, scene)`` shows ``scene`` while ``t < until``.

    ``spliced((60, room), (180, black), (float("inf"), room))`` is black from 60 s to 180 s.
    The last scene also continues past its ``until``. Every part receives the recording's own
    frame index and time, so a burned-in clock keeps running across the splice.
    """
    if not parts:
        raise ValueError("spliced() needs at least one (until_seconds, scene) part")
    untils = [until for until, _ in parts]
    if untils != sorted(untils):
        raise ValueError("spliced() parts must be in increasing until_seconds order")

    def render(frame_index: int, t: float) -> np.ndarray:
        for until, scene in parts:
            if t < until:
                return scene(frame_index, t)
        return parts[-1][1](frame_index, t)

    return render


def _container_format(path: Path, fmt: str | None) -> str:
    if fmt is not None:
        return fmt
    try:
        return CONTAINER_BY_SUFFIX[path.suffix.lower()]
    except KeyError:
        raise ValueError(
            f"cannot tell the container from the extension {path.suffix!r}; pass fmt="
        ) from None


def _video_encoder_options(codec: str, gop: int, preset: str) -> dict[str, str]:
    # scenecut=0 and min-keyint=keyint pin keyframes to the fixed interval, so tests can count
    # them; a black splice would otherwise insert extra keyframes at the cut.
    if codec == "h264":
        return {"preset": preset, "x264-params": f"keyint={gop}:min-keyint={gop}:scenecut=0"}
    # x265 defaults to open GOPs (CRA keyframes) and prints its banner on stderr.
    return {
        "preset": preset,
        "x265-params": f"keyint={gop}:min-keyint={gop}:scenecut=0:open-gop=0:log-level=none",
    }


def _tone_chunks(
    seconds: float, codec: str, rate: int = _AUDIO_RATE
) -> Iterator[tuple[float, av.AudioFrame]]:
    """Yield ``(start_seconds, frame)`` of a quiet 440 Hz mono tone covering ``seconds``."""
    total = round(seconds * rate)
    chunk = 1152 if codec == "mp2" else 1024
    for start in range(0, total, chunk):
        n = min(chunk, total - start)
        t = (np.arange(start, start + n, dtype=np.float64)) / rate
        wave = 0.1 * np.sin(2 * np.pi * _AUDIO_TONE_HZ * t)
        if codec == "mp2":
            frame = av.AudioFrame.from_ndarray(
                (wave * 32767).astype(np.int16)[None, :], format="s16", layout="mono"
            )
        else:
            frame = av.AudioFrame.from_ndarray(
                wave.astype(np.float32)[None, :], format="fltp", layout="mono"
            )
        frame.sample_rate = rate
        # FFmpeg's AAC encoder stamps its 1024 priming samples before the first real one;
        # starting the tone that late keeps audio timestamps >= 0. Otherwise the fragmented MP4
        # muxer, which has no edit list to hide the priming, stretches the first video frame.
        frame.pts = start + (_AAC_PRIMING_SAMPLES if codec == "aac" else 0)
        frame.time_base = Fraction(1, rate)
        yield start / rate, frame


def _add_audio_stream(output: av.container.OutputContainer, codec: str) -> av.AudioStream:
    stream = output.add_stream(codec, rate=_AUDIO_RATE, layout="mono")
    # A camera microphone's bit rate; AAC's default of 128 kbit/s also takes ~3x longer to encode.
    stream.bit_rate = _AUDIO_BIT_RATE
    return stream


def _creation_time_tag(moment: datetime) -> str:
    if moment.tzinfo is None:
        raise ValueError("creation_time must be timezone-aware")
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def write_recording(
    path: Path,
    *,
    seconds: float,
    fps: int = 10,
    width: int = 320,
    height: int = 240,
    codec: str = "h264",
    scene: Scene | None = None,
    audio: bool = False,
    gop_seconds: float = 2.0,
    fmt: str | None = None,
    bit_rate: int | None = None,
    creation_time: datetime | None = None,
    fragmented: bool = False,
    preset: str = "ultrafast",
) -> Path:
    """Encode ``seconds`` of ``scene`` (default: a classroom) into ``path`` and return it.

    ``codec`` is ``"h264"`` (libx264) or ``"hevc"`` (libx265). The container comes from the
    extension (.mp4, .mkv, .ts, .ps/.mpg/.mpeg) unless ``fmt`` names it ("mp4", "matroska",
    "mpegts", "mpeg"). A plain MP4 has its moov box at the end (not faststart), as a camera
    writes it; ``fragmented=True`` writes a fragmented MP4 (frag_keyframe+empty_moov).
    There is one keyframe every ``gop_seconds`` and ``round(seconds * fps)`` frames in all.
    ``audio=True`` adds a quiet mono tone: AAC, or MP2 in MPEG-PS. ``creation_time`` (aware)
    goes into the container's 'creation_time' tag; MP4 and Matroska keep it, MPEG-TS and
    MPEG-PS have nowhere to put it. ``bit_rate`` (bit/s) switches from constant quality to
    average bit rate. ``preset`` is the x264/x265 preset; "ultrafast" has no B-frames in
    x264, "veryfast" has.
    """
    if codec not in _ENCODER_BY_CODEC:
        raise ValueError(f"codec must be one of {sorted(_ENCODER_BY_CODEC)}, not {codec!r}")
    if seconds <= 0 or fps <= 0:
        raise ValueError("seconds and fps must be positive")
    if width % 2 or height % 2:
        raise ValueError("yuv420p needs an even width and height")
    container_format = _container_format(path, fmt)
    if fragmented and container_format != "mp4":
        raise ValueError("fragmented=True only applies to MP4")
    scene = scene or classroom_scene(width, height)
    gop = max(1, round(gop_seconds * fps))
    frame_count = round(seconds * fps)
    container_options = {"movflags": "frag_keyframe+empty_moov"} if fragmented else {}

    with av.open(str(path), "w", format=container_format, options=container_options) as output:
        if creation_time is not None:
            output.metadata["creation_time"] = _creation_time_tag(creation_time)
        video = output.add_stream(
            _ENCODER_BY_CODEC[codec],
            rate=fps,
            options=_video_encoder_options(codec, gop, preset),
        )
        video.width = width
        video.height = height
        video.pix_fmt = "yuv420p"
        video.codec_context.gop_size = gop
        if bit_rate is not None:
            video.bit_rate = bit_rate

        audio_codec = "mp2" if container_format == "mpeg" else "aac"
        audio_stream = None
        tone: Iterator[tuple[float, av.AudioFrame]] = iter(())
        if audio:
            audio_stream = _add_audio_stream(output, audio_codec)
            tone = _tone_chunks(frame_count / fps, audio_codec)
        pending_audio = next(tone, None)

        for index in range(frame_count):
            t = index / fps
            # Keep audio roughly in step with video: the MPEG muxers interleave poorly
            # when one stream runs far ahead of the other.
            while audio_stream is not None and pending_audio and pending_audio[0] <= t:
                output.mux(audio_stream.encode(pending_audio[1]))
                pending_audio = next(tone, None)
            picture = scene(index, t)
            if picture.shape != (height, width, 3):
                raise ValueError(
                    f"scene returned a {picture.shape} frame, expected {(height, width, 3)}"
                )
            # OpenCV's I420 conversion plus a zero-copy frame is about 3x faster than letting
            # PyAV copy the BGR array and swscale convert it.
            yuv = cv2.cvtColor(picture, cv2.COLOR_BGR2YUV_I420)
            frame = av.VideoFrame.from_numpy_buffer(yuv, format="yuv420p")
            frame.pts = index
            frame.time_base = Fraction(1, fps)
            output.mux(video.encode(frame))
        output.mux(video.encode(None))
        if audio_stream is not None:
            while pending_audio:
                output.mux(audio_stream.encode(pending_audio[1]))
                pending_audio = next(tone, None)
            output.mux(audio_stream.encode(None))
    logger.debug(
        "wrote %s: %s %s %dx%d %d frames at %d fps",
        path,
        container_format,
        codec,
        width,
        height,
        frame_count,
        fps,
    )
    return path


def _top_level_boxes(data: bytes) -> Iterator[tuple[bytes, int, int]]:
    """Yield ``(type, offset, size)`` of the top-level ISO BMFF boxes in ``data``."""
    offset = 0
    while offset + 8 <= len(data):
        size, kind = struct.unpack(">I4s", data[offset : offset + 8])
        if size == 1 and offset + 16 <= len(data):
            size = struct.unpack(">Q", data[offset + 8 : offset + 16])[0]
        elif size == 0:
            size = len(data) - offset
        if size < 8:
            return
        yield kind, offset, size
        offset += size


def write_truncated_mp4(path: Path, source: Path) -> Path:
    """Copy the plain MP4 ``source`` to ``path`` cut just before its moov box.

    That is what a camera leaves behind when it loses power mid-recording: ftyp and the media
    data are there, the index (moov) that says where the frames are never got written.
    ``source`` must keep moov at the end (``write_recording`` does for a plain .mp4).
    """
    data = source.read_bytes()
    moov = [offset for kind, offset, _ in _top_level_boxes(data) if kind == b"moov"]
    if not moov or moov[0] < 16:
        raise ValueError(f"{source} has no moov box after its media data")
    path.write_bytes(data[: moov[0]])
    return path


def write_audio_only(path: Path, seconds: float) -> Path:
    """A file with a single AAC (MP2 for MPEG-PS) tone track and no video, e.g. a voice memo."""
    container_format = _container_format(path, None)
    codec = "mp2" if container_format == "mpeg" else "aac"
    with av.open(str(path), "w", format=container_format) as output:
        stream = _add_audio_stream(output, codec)
        for _, frame in _tone_chunks(seconds, codec):
            output.mux(stream.encode(frame))
        output.mux(stream.encode(None))
    return path


def write_jpeg_as_video(path: Path, *, width: int = 320, height: int = 240) -> Path:
    """A JPEG snapshot of the classroom saved under a video name (e.g. ``.mp4``).

    Hosts that push "snapshots" instead of recordings produce exactly this; FFmpeg happily
    opens it as a one-packet MJPEG "video".
    """
    ok, encoded = cv2.imencode(".jpg", classroom_scene(width, height)(0, 0.0))
    if not ok:
        raise RuntimeError("OpenCV could not encode the JPEG snapshot")
    path.write_bytes(encoded.tobytes())
    return path


def write_undecodable(path: Path, source: Path, *, seed: int = 0) -> Path:
    """Remux ``source`` into ``path`` (.mkv or .mp4) with every video payload replaced by noise.

    Stream headers (codec parameters with SPS/PPS), timestamps, packet sizes and keyframe flags
    are copied, so the container parses and looks like a normal recording, but no frame
    decodes: the random payload is not a valid length-prefixed NAL unit. Read back, an H.264
    track shows no keyframe at all (FFmpeg's H.264 parser sets the flag from the payload and
    finds no IDR slice), while an H.265 track keeps the flags and its decoder rejects the data.
    MPEG-TS and MPEG-PS are refused: their muxers insist on Annex B start codes in the payload.
    ``seed`` makes the noise reproducible.
    """
    container_format = _container_format(path, None)
    if container_format not in {"matroska", "mp4"}:
        raise ValueError("write_undecodable() writes .mkv or .mp4 only")
    rng = np.random.default_rng(seed)
    with (
        av.open(str(source)) as original,
        av.open(str(path), "w", format=container_format) as output,
    ):
        template = original.streams.video[0]
        video = output.add_stream_from_template(template)
        for packet in original.demux(template):
            if packet.size == 0:
                continue
            garbage = av.Packet(rng.bytes(packet.size))
            garbage.pts = packet.pts
            garbage.dts = packet.dts
            garbage.duration = packet.duration
            garbage.time_base = packet.time_base
            garbage.is_keyframe = packet.is_keyframe
            garbage.stream = video
            output.mux(garbage)
    return path
