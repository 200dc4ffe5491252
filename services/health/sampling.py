"""Video health: is the footage that exists actually useful evidence?

After ingest, ``sample_segment`` decodes the **keyframes only** of a segment (one every GOP, e.g.
every 1-2 s) and stores raw metrics per keyframe (``HealthSample``): brightness, the share of dark
pixels, the change since the previous keyframe, sharpness and the similarity to the room's
reference image. Decoding nothing else keeps the pass at hundreds of times real time on one core.

Judging the samples is a separate, pure step: ``health_intervals`` turns samples placed on the
wall clock (``TimedSample``) into intervals of ``black``, ``covered``, ``frozen`` or
``scene_mismatch`` footage with ``HealthThresholds``. Thresholds can therefore be retuned and
every report recomputed from the stored samples without decoding a single frame again.

A segment's decode has a time budget (``sample_segment_within``): an all-keyframe clip can hold a
keyframe every frame, and 59 MB of them cost a minute of CPU. Where the budget runs out, the
sampling stops and says where, and the checker flags the rest of the segment ``unchecked``.

A flagged interval is not a coverage gap: the footage exists and is kept, but a supervisor must
see that it shows nothing usable.
"""

from __future__ import annotations

import logging
import math
import statistics
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from fractions import Fraction
from itertools import pairwise
from pathlib import Path

import av
import av.container
import av.stream
import cv2
import numpy as np

logger = logging.getLogger(__name__)

# Every metric and threshold below was calibrated on samples this wide; the height follows the
# frame's aspect ratio. 160 px keeps the per-sample cost far below the keyframe decode itself.
SAMPLE_WIDTH = 160
# A pixel darker than this (full-range luma, 0..255) counts towards ``dark_share``. Part of the
# sampling, not a threshold: changing it needs a new decode, so it is a constant.
DARK_LUMA = 24
# Pixel formats whose first plane is 8-bit luma, read in place without any conversion.
_LUMA_PLANE_FORMATS = frozenset(
    {
        "yuv420p",
        "yuvj420p",
        "yuv422p",
        "yuvj422p",
        "yuv444p",
        "yuvj444p",
        "yuv440p",
        "yuvj440p",
        "yuv411p",
        "yuvj411p",
        "yuv410p",
        "nv12",
        "nv21",
        "nv16",
        "gray",
    }
)
_FULL_RANGE_FORMATS = frozenset({"yuvj420p", "yuvj422p", "yuvj444p", "yuvj440p", "yuvj411p"})
# Video luma is usually "limited range" (16 = black, 235 = white); this table stretches it to
# 0..255 so the luma thresholds mean the same for limited and full-range (JPEG) cameras.
_LIMITED_TO_FULL = np.clip(np.round((np.arange(256) - 16) * 255 / 219), 0, 255).astype(np.uint8)
_LIMITED_SCALE = 255 / 219
# The edge-layout similarity (see ``_edge_layout``) blurs at these scales, in pixels of a
# SAMPLE_WIDTH-wide picture: 1 px suppresses sensor noise before the gradient, 3 px spreads the
# edges so that a camera nudged by a few pixels still matches its reference.
_EDGE_PRE_BLUR = 1.0
_EDGE_POST_BLUR = 3.0


@dataclass(frozen=True)
class HealthSample:
    """Raw metrics of one keyframe of one segment, as stored; no judgement in here."""

    offset_seconds: float  # keyframe time from the segment's first video pts (packet timestamps)
    mean_luma: float  # 0..255 (full range) on the downscaled gray frame
    dark_share: float  # share of pixels with luma < DARK_LUMA, 0..1
    # Mean absolute luma difference (0..255 units) to the previous sample of the same segment,
    # on the full-resolution luma plane; None for the first sample.
    motion: float | None
    sharpness: float  # variance of the Laplacian of the downscaled gray frame
    reference_similarity: float | None  # 0..1 edge-layout similarity; None without reference


@dataclass(frozen=True)
class SegmentSampling:
    """The samples of one segment and, if the time budget ran out, where sampling stopped."""

    samples: list[HealthSample]
    # Offset (s, as ``offset_seconds``) of the first keyframe left unsampled; None if complete.
    cut_short_at: float | None = None
    # (start, end) offsets of each group of pictures whose keyframe did not decode cleanly.
    damaged: tuple[tuple[float, float], ...] = ()


@dataclass(frozen=True)
class HealthThresholds:
    """Where a sample stops being healthy. Calibrated on ``services.demo.footage`` footage
    (H.264, libx264 ultrafast, CRF and 2 Mbit/s ABR, 320x240 and 1280x720, sampled 160 px wide);
    the measured values are quoted next to each threshold.
    """

    # Black: a capped lens or an unlit room decodes to mean luma 3.5-4.1 with every pixel dark
    # (6.3 and 98 % with a burned-in camera label and clock); the classroom is at ~136 with no
    # dark pixel, and dimmed to 40 % at ~54 with 2 %. 20 and 90 % leave room for the OSD.
    black_max_luma: float = 20.0
    black_min_dark_share: float = 0.90
    # Frozen, on ``motion`` (full-resolution luma, 0..255 units), with hysteresis. An encoder
    # fed one repeated picture settles within a few keyframes on (near) identical keyframes:
    # the lowest motion of every frozen stretch measured was 0.00, once 0.11. Before it
    # settles the first repeats are requantised copies: 0.87-0.99 for the first pair, then
    # 0.05-0.65. A live sensor never settles: an empty room whose only change is sensor noise of
    # +-1 level stays at 0.41-0.50 (320x240 CRF, 1280x720 at 2 Mbit/s), more with more noise;
    # the invigilator walking gives 1.26 or more. So a stretch is frozen where some sample is
    # at most ``frozen_max_motion``, and it extends over neighbours up to
    # ``frozen_extend_motion`` so that the start of a freeze is not missed. Limit: when the
    # encoder discards the noise itself (x264 CRF 23 at 1280x720 keeps +-1..3 noise as only
    # 0.13-0.43), a perfectly still room looks the same as a frozen one.
    frozen_max_motion: float = 0.25
    frozen_extend_motion: float = 1.10
    # Covered / out of focus, against the camera's own baseline sharpness (~1660 for the
    # classroom at 320x240, ~860 at 1280x720): a covered lens (flat grey) is at 0.0001 of it and
    # a lens defocused by a 2 px Gaussian (of 320) at 0.046, while the invigilator walking
    # (0.97-1.02), lights dimmed to 40 % (0.16) or a mild 1 px defocus (0.28) stay above 0.1.
    covered_max_sharpness_ratio: float = 0.10
    # Absolute floor, also used without a baseline: a flat picture decodes to under 0.1; a
    # real room, even dimmed to 40 %, measures 250 or more.
    covered_max_sharpness: float = 10.0
    # Scene mismatch (``_edge_layout`` similarity): the same room scores 0.93-1.00 at 320x240
    # and 0.84-0.88 at 1280x720 with the invigilator walking, 0.91 or more defocused or dimmed,
    # and (measured on raw frames) 0.86 with the camera nudged 8 px of 320, 0.80 turned by
    # 5 degrees, 0.66 shifted by 20 px. Another room scores 0.00, the camera pointed at the
    # desks or a bare wall 0.25 or less.
    mismatch_max_similarity: float = 0.50


@dataclass(frozen=True)
class TimedSample:
    """A stored sample placed on the wall clock: segment start + ``offset_seconds``."""

    at: datetime  # aware UTC
    mean_luma: float
    dark_share: float
    motion: float | None
    sharpness: float
    reference_similarity: float | None


@dataclass(frozen=True)
class HealthInterval:
    """A stretch of footage that exists but shows nothing useful, of one ``kind``."""

    start: datetime
    end: datetime
    kind: str  # "black" | "frozen" | "covered" | "scene_mismatch"


# When a sample qualifies for several kinds, the first one here wins. Each kind explains the
# ones after it: a black picture is also flat, still and unlike the reference; a covered lens
# is also still and unlike the reference; a frozen picture is not live, whatever it shows.
HEALTH_KINDS: tuple[str, ...] = ("black", "covered", "frozen", "scene_mismatch")
# Footage whose keyframe does not decode cleanly (a decoder error, or a picture FFmpeg had to
# conceal), from that keyframe to the next: found by the probe at ingest and by every keyframe
# of the health pass. Not derived from thresholds, so re-deriving flags keeps it.
DAMAGED = "damaged"


def sample_segment(
    path: Path,
    *,
    reference: np.ndarray | None = None,
    width: int = SAMPLE_WIDTH,
    threads: int = 1,
) -> list[HealthSample]:
    """Decode the keyframes of the recording at ``path`` and measure each one.

    ``reference`` is the room's reference picture from ``prepare_reference``. ``threads`` is the
    decoder's thread count; the default of one core keeps a worker's cost predictable.
    PyAV errors from opening or demuxing propagate; a keyframe that fails to decode is logged
    and left out.
    """
    return sample_segment_within(
        path, budget_seconds=None, reference=reference, width=width, threads=threads
    ).samples


def sample_segment_within(
    path: Path,
    *,
    budget_seconds: float | None,
    reference: np.ndarray | None = None,
    width: int = SAMPLE_WIDTH,
    threads: int = 1,
) -> SegmentSampling:
    """``sample_segment`` that stops decoding once ``budget_seconds`` of wall time have passed
    (None: no limit). The budget is checked before each keyframe, so it is overrun by at most
    one keyframe's decode, which the probe's picture limits bound."""
    if budget_seconds is not None and not budget_seconds > 0:
        raise ValueError(f"budget_seconds must be positive, not {budget_seconds}")
    deadline = None if budget_seconds is None else time.monotonic() + budget_seconds
    cut_pts: int | None = None
    if width < 8:
        raise ValueError(f"width must be at least 8 pixels, not {width}")
    if threads < 0:
        raise ValueError(f"threads must be 0 (automatic) or more, not {threads}")
    measured: list[tuple[int, _Metrics]] = []
    first_pts: int | None = None
    last_end = 0
    keyframe_pts: list[int] = []
    damaged_pts: set[int] = set()
    edge_references: dict[tuple[int, int], np.ndarray] = {}
    previous_luma: np.ndarray | None = None
    with av.open(f"file:{path.resolve()}") as container:
        video = video_stream(container, path)
        codec_context = video.codec_context
        codec_context.skip_frame = "NONKEY"
        codec_context.thread_count = threads
        if threads != 1:
            codec_context.thread_type = "AUTO"
        time_base = video.time_base or Fraction(1, 90_000)

        def measure(frames: list[av.VideoFrame]) -> None:
            nonlocal previous_luma
            for frame in frames:
                timestamp = frame.pts if frame.pts is not None else frame.dts
                if timestamp is None:
                    logger.warning("%s: keyframe without a timestamp skipped", path)
                    continue
                if frame.is_corrupt:
                    # FFmpeg concealed damage in it (one decoder thread): not a picture to
                    # judge, but footage to flag.
                    damaged_pts.add(timestamp)
                    continue
                luma, limited = _luma_plane(frame)
                small = _downscale(luma, width, limited)
                motion = None
                if previous_luma is not None and previous_luma.shape == luma.shape:
                    motion = cv2.mean(cv2.absdiff(luma, previous_luma))[0]
                    motion *= _LIMITED_SCALE if limited else 1.0
                previous_luma = luma
                similarity = None
                if reference is not None:
                    similarity = _similarity(small, reference, edge_references, width)
                measured.append((timestamp, _measure(small, motion, similarity)))

        for packet in stamped_packets(container, video):
            if first_pts is None or packet.pts < first_pts:
                first_pts = packet.pts
            last_end = max(last_end, packet.pts + (packet.duration or 0))
            # skip_frame would drop the other frames inside the decoder anyway; not sending them
            # at all also saves parsing every P/B slice.
            if not packet.is_keyframe:
                continue
            if deadline is not None and time.monotonic() >= deadline:
                cut_pts = packet.pts
                break
            keyframe_pts.append(packet.pts)
            try:
                frames = codec_context.decode(packet)
            except av.FFmpegError as exc:
                logger.warning("%s: keyframe at pts %s does not decode (%s)", path, packet.pts, exc)
                damaged_pts.add(packet.pts)
                continue
            measure(frames)
        measure(decode_or_skip(codec_context, None, path))

    origin = first_pts if first_pts is not None else 0
    samples = [
        HealthSample(
            offset_seconds=float((timestamp - origin) * time_base),
            mean_luma=metrics.mean_luma,
            dark_share=metrics.dark_share,
            motion=metrics.motion,
            sharpness=metrics.sharpness,
            reference_similarity=metrics.reference_similarity,
        )
        for timestamp, metrics in measured
    ]
    samples.sort(key=lambda sample: sample.offset_seconds)
    end_pts = cut_pts if cut_pts is not None else last_end
    damaged = tuple(
        (round(float((start - origin) * time_base), 3), round(float((end - origin) * time_base), 3))
        for start, end in damaged_stretches(keyframe_pts, damaged_pts, end_pts)
    )
    if damaged:
        logger.warning("%s: %d stretches of damaged footage", path, len(damaged))
    if cut_pts is None:
        logger.debug("sampled %d keyframes of %s", len(samples), path)
        return SegmentSampling(samples, damaged=damaged)
    cut_short_at = float((cut_pts - origin) * time_base)
    logger.warning(
        "%s: health check cut short after %.1f s of decoding: %d keyframes sampled, none "
        "from %.1f s on",
        path,
        budget_seconds,
        len(samples),
        cut_short_at,
    )
    return SegmentSampling(samples, cut_short_at, damaged)


def damaged_stretches(
    keyframe_pts: Sequence[int], damaged_pts: set[int], end_pts: int
) -> list[tuple[int, int]]:
    """(start, end) timestamps of each damaged keyframe's group of pictures: from it to the
    next keyframe (or ``end_pts``), neighbours merged. Pure."""
    ordered = sorted(set(keyframe_pts) | damaged_pts)
    stretches: list[tuple[int, int]] = []
    for index, stamp in enumerate(ordered):
        if stamp not in damaged_pts:
            continue
        end = ordered[index + 1] if index + 1 < len(ordered) else max(end_pts, stamp)
        if stretches and stretches[-1][1] >= stamp:
            stretches[-1] = (stretches[-1][0], end)
        else:
            stretches.append((stamp, end))
    return stretches


def prepare_reference(image: bytes | np.ndarray, *, width: int = SAMPLE_WIDTH) -> np.ndarray:
    """The room's reference picture as ``sample_segment`` compares it: gray, ``width`` wide.

    ``image`` is an uploaded JPEG/PNG (bytes) or a BGR (or gray) ``uint8`` array, e.g. from
    ``frame_at``. Raises ``ValueError`` when it is not a usable picture.
    """
    if isinstance(image, bytes | bytearray | memoryview):
        encoded = np.frombuffer(image, dtype=np.uint8)
        if encoded.size == 0:
            raise ValueError("The reference image is empty (0 bytes).")
        try:
            picture = cv2.imdecode(encoded, cv2.IMREAD_COLOR)
        except cv2.error as exc:
            raise ValueError("The reference image is not a JPEG or PNG picture.") from exc
        if picture is None:
            raise ValueError("The reference image is not a JPEG or PNG picture.")
    elif isinstance(image, np.ndarray):
        picture = image
    else:
        raise ValueError(f"The reference image must be bytes or an array, not {type(image)!r}.")
    if picture.dtype != np.uint8 or not (
        picture.ndim == 2 or (picture.ndim == 3 and picture.shape[2] == 3)
    ):
        raise ValueError(
            "The reference image must be an 8-bit BGR or gray picture, "
            f"not an array of shape {picture.shape} and type {picture.dtype}."
        )
    if min(picture.shape[:2]) < 8:
        raise ValueError(
            f"The reference image is too small ({picture.shape[1]}x{picture.shape[0]})."
        )
    gray = picture if picture.ndim == 2 else cv2.cvtColor(picture, cv2.COLOR_BGR2GRAY)
    height = max(1, round(gray.shape[0] * width / gray.shape[1]))
    shrinking = gray.shape[1] >= width
    return cv2.resize(
        gray, (width, height), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
    )


def frame_at(path: Path, offset_seconds: float) -> np.ndarray:
    """The BGR picture shown at ``offset_seconds`` after the recording's first video pts.

    That is the last frame presented at or before that instant: seek to the keyframe before
    it and decode forward. Raises ``ValueError`` for an instant outside the recording.
    """
    if not math.isfinite(offset_seconds) or offset_seconds < 0:
        raise ValueError(f"offset_seconds must be a finite number >= 0, not {offset_seconds}")
    with av.open(f"file:{path.resolve()}") as container:
        video = video_stream(container, path)
        time_base = video.time_base or Fraction(1, 90_000)
        first_pts = video.start_time
        if first_pts is None:
            first_pts = min(packet.pts for packet in stamped_packets(container, video))
        # The epsilon keeps 12.0 s on the frame stamped at 12.0 s despite float rounding.
        target = first_pts + math.floor(offset_seconds / time_base + 1e-6)
        container.seek(target, stream=video, backward=True, any_frame=False)
        found = _last_frame_until(_decoded_frames(container, video, path), target)
        if found is None:
            # The index sent us past the target (MPEG-TS seeks by bytes): start from the top.
            container.seek(first_pts, stream=video, backward=True, any_frame=False)
            found = _last_frame_until(_decoded_frames(container, video, path), target)
        if found is None:
            raise ValueError(f"{path} has no picture at or before {offset_seconds} s")
        frame, end_pts = found
        if end_pts is not None and target >= end_pts:
            raise ValueError(f"{offset_seconds} s is past the end of the recording {path}")
        return frame.to_ndarray(format="bgr24")


def encode_jpeg(frame: np.ndarray, quality: int = 85) -> bytes:
    """``frame`` (BGR or gray ``uint8``) as JPEG bytes, e.g. to store a reference or thumbnail."""
    if not 1 <= quality <= 100:
        raise ValueError(f"JPEG quality must be 1..100, not {quality}")
    if frame.dtype != np.uint8 or frame.ndim not in (2, 3) or frame.size == 0:
        raise ValueError(f"cannot encode an array of shape {frame.shape} and type {frame.dtype}")
    ok, encoded = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError("OpenCV could not encode the picture as JPEG")
    return encoded.tobytes()


def sharpness_baseline(
    samples: Sequence[TimedSample],
    *,
    thresholds: HealthThresholds = HealthThresholds(),
    min_samples: int = 5,
) -> float | None:
    """The camera's normal sharpness: the median over samples that show a picture at all.

    Black samples and samples under the absolute ``covered_max_sharpness`` floor are left out,
    so a camera covered for much of the time still gets the baseline of its open moments.
    ``None`` when fewer than ``min_samples`` samples qualify.
    """
    usable = [
        sample.sharpness
        for sample in samples
        if not _is_black(sample, thresholds)
        and sample.sharpness >= thresholds.covered_max_sharpness
    ]
    if len(usable) < max(1, min_samples):
        return None
    return float(statistics.median(usable))


def health_intervals(
    samples: Sequence[TimedSample],
    *,
    baseline_sharpness: float | None,
    thresholds: HealthThresholds = HealthThresholds(),
    max_step: timedelta = timedelta(seconds=10),
) -> list[HealthInterval]:
    """Black, covered, frozen and scene-mismatch intervals of one camera's samples. Pure.

    Each sample gets at most one kind (precedence: ``HEALTH_KINDS``); frozen stretches are
    found over neighbouring samples (``_frozen_indices``). A sample stands for the
    time from its instant to the next sample's, or for one typical step when the next one is
    more than ``max_step`` away or there is none. Neighbouring samples of the same kind merge.
    The order of ``samples`` does not matter; the result is sorted by start.
    """
    if max_step <= timedelta(0):
        raise ValueError("max_step must be positive")
    for sample in samples:
        if sample.at.tzinfo is None:
            raise ValueError(f"sample instants must be timezone-aware, not {sample.at!r}")
    ordered = sorted(samples, key=_sample_order)
    if not ordered:
        return []

    steps = [
        later.at - earlier.at
        for earlier, later in pairwise(ordered)
        if timedelta(0) < later.at - earlier.at <= max_step
    ]
    # A lone sample with no neighbour to learn the sampling step from stands for max_step:
    # better a visible flag slightly too long than one that lasts no time at all.
    typical_step = statistics.median(steps) if steps else max_step

    kinds = [_own_kind(sample, baseline_sharpness, thresholds) for sample in ordered]
    for index in _frozen_indices(ordered, kinds, thresholds, max_step):
        if _rank(kinds[index]) > _rank("frozen"):
            kinds[index] = "frozen"

    intervals: list[HealthInterval] = []
    index = 0
    while index < len(ordered):
        # Samples at the same instant (overlapping segments) count as one: the worst kind wins.
        start = ordered[index].at
        kind = kinds[index]
        while index + 1 < len(ordered) and ordered[index + 1].at == start:
            index += 1
            kind = min(kind, kinds[index], key=_rank)
        following = ordered[index + 1].at if index + 1 < len(ordered) else None
        if following is not None and following - start <= max_step:
            end = following
        else:
            end = start + typical_step
        index += 1
        if kind is None:
            continue
        last = intervals[-1] if intervals else None
        if last is not None and last.kind == kind and start - last.end <= timedelta(0):
            intervals[-1] = HealthInterval(start=last.start, end=end, kind=kind)
        else:
            intervals.append(HealthInterval(start=start, end=end, kind=kind))
    return intervals


@dataclass(frozen=True)
class _Metrics:
    mean_luma: float
    dark_share: float
    motion: float | None
    sharpness: float
    reference_similarity: float | None


def video_stream(container: av.container.InputContainer, source: object) -> av.VideoStream:
    """The recording's video track (`source` names it in the error)."""
    for stream in container.streams.video:
        # Cover art in an audio file is a "video" stream holding one picture.
        if not stream.disposition & av.stream.Disposition.attached_pic:
            return stream
    raise ValueError(f"{source} has no video track")


def decode_or_skip(
    codec_context: av.CodecContext, packet: av.Packet | None, source: object
) -> list[av.VideoFrame]:
    """The packet's pictures; none if it does not decode (logged with `source`)."""
    try:
        return codec_context.decode(packet)  # type: ignore[return-value]
    except av.FFmpegError as exc:
        # One damaged packet costs one picture (a sample, a tile), not the whole segment.
        logger.warning("%s: a video packet does not decode (%s); skipped", source, exc)
        return []


def _luma_plane(frame: av.VideoFrame) -> tuple[np.ndarray, bool]:
    """``(full-resolution 8-bit luma, is limited range)``, without a copy for common formats."""
    name = frame.format.name
    if name in _LUMA_PLANE_FORMATS:
        plane = frame.planes[0]
        rows = np.frombuffer(plane, dtype=np.uint8).reshape(frame.height, plane.line_size)
        full = name in _FULL_RANGE_FORMATS or frame.color_range == 2  # AVCOL_RANGE_JPEG
        return rows[:, : frame.width], not full and name != "gray"
    # 10-bit, RGB, palette...: let swscale make 8-bit full-range gray (one thread, like us).
    gray = frame.reformat(format="gray", threads=1).to_ndarray()
    return gray, False


def _sample_size(width: int, height: int, sample_width: int) -> tuple[int, int]:
    target_width = min(sample_width, width)  # never invent detail by upscaling
    return target_width, max(1, round(height * target_width / width))


def _downscale(luma: np.ndarray, width: int, limited: bool) -> np.ndarray:
    size = _sample_size(luma.shape[1], luma.shape[0], width)
    small = cv2.resize(luma, size, interpolation=cv2.INTER_AREA)
    return cv2.LUT(small, _LIMITED_TO_FULL) if limited else small


def _measure(small: np.ndarray, motion: float | None, similarity: float | None) -> _Metrics:
    laplacian = cv2.Laplacian(small, cv2.CV_64F)
    return _Metrics(
        mean_luma=float(cv2.mean(small)[0]),
        dark_share=float(np.count_nonzero(small < DARK_LUMA)) / small.size,
        motion=None if motion is None else float(motion),
        sharpness=float(laplacian.var()),
        reference_similarity=similarity,
    )


def _edge_layout(gray: np.ndarray, sample_width: int) -> np.ndarray:
    """Where the picture's edges are, blurred and normalised to zero mean and unit norm.

    Comparing edge layouts rather than brightness is what tells rooms apart: every room is a
    bright wall over a darker floor, which alone gives another room a plain correlation of 0.8;
    the edges of desks, boards and doors give it about 0. The final blur keeps a camera nudged
    by a few pixels matching. Correlation of these maps ignores lighting level and contrast.
    """
    scale = gray.shape[1] / sample_width
    smooth = cv2.GaussianBlur(gray.astype(np.float32), (0, 0), _EDGE_PRE_BLUR * scale)
    magnitude = cv2.magnitude(
        cv2.Sobel(smooth, cv2.CV_32F, 1, 0), cv2.Sobel(smooth, cv2.CV_32F, 0, 1)
    )
    layout = cv2.GaussianBlur(magnitude, (0, 0), _EDGE_POST_BLUR * scale)
    layout -= float(layout.mean())
    norm = float(np.linalg.norm(layout))
    return layout / norm if norm > 1e-6 else np.zeros_like(layout)


def _similarity(
    small: np.ndarray,
    reference: np.ndarray,
    cache: dict[tuple[int, int], np.ndarray],
    sample_width: int,
) -> float:
    shape = small.shape[:2]
    layout = cache.get(shape)
    if layout is None:
        fitted = reference
        if reference.shape[:2] != shape:
            # Another size or aspect ratio (a 4:3 photo for a 16:9 camera): stretch it to the
            # sample so that both cover the same field of view.
            fitted = cv2.resize(reference, (shape[1], shape[0]), interpolation=cv2.INTER_AREA)
        layout = cache[shape] = _edge_layout(fitted, sample_width)
    # Anti-correlated layouts are no more "the same room" than unrelated ones: clamp at 0.
    return max(0.0, min(1.0, float(np.vdot(layout, _edge_layout(small, sample_width)))))


def stamped_packets(
    container: av.container.InputContainer, video: av.VideoStream
) -> Iterator[av.Packet]:
    """Demux ``video``, skipping flush packets, with every packet's pts and dts filled in.

    MPEG-PS (what GB/T 28181 platforms export) stamps only the frames that start a 2 KiB pack,
    so many packets, keyframes included, come without timestamps. A missing decode time is
    carried forward from the last stamped packet by packet durations (counted back from the
    first stamp for packets before it), and a missing pts is that decode time plus the reorder
    delay seen on the first packet that has both. Packets with a pts are left as they are.
    """
    pending: list[av.Packet] = []  # no decode time known yet: counted back from the first one
    clock: int | None = None  # decode time of the next packet
    delay: int | None = None
    step = 0
    for packet in container.demux(video):
        if packet.size == 0:  # flush packets at the end of the demuxer
            continue
        if delay is None and packet.pts is not None and packet.dts is not None:
            delay = packet.pts - packet.dts
        if packet.duration:
            step = packet.duration
        if packet.dts is not None:
            decode_time: int | None = packet.dts
        elif clock is not None:
            decode_time = clock
        elif packet.pts is not None:
            decode_time = packet.pts - (delay or 0)
        else:
            pending.append(packet)
            continue
        if pending:
            earlier = decode_time
            for waiting in reversed(pending):
                earlier -= waiting.duration or step
                _fill_timestamps(waiting, earlier, delay or 0)
            yield from pending
            pending.clear()
        _fill_timestamps(packet, decode_time, delay or 0)
        clock = decode_time + (packet.duration or step)
        yield packet
    # Not a single timestamp in the stream: lay the packets end to end from zero.
    start = 0
    for waiting in pending:
        _fill_timestamps(waiting, start, delay or 0)
        start += waiting.duration or step
        yield waiting


def _fill_timestamps(packet: av.Packet, decode_time: int, delay: int) -> None:
    if packet.dts is None:
        packet.dts = decode_time
    if packet.pts is None:
        packet.pts = decode_time + delay


def _decoded_frames(
    container: av.container.InputContainer, video: av.VideoStream, path: Path
) -> Iterator[av.VideoFrame]:
    codec_context = video.codec_context
    for packet in stamped_packets(container, video):
        yield from decode_or_skip(codec_context, packet, path)
    yield from decode_or_skip(codec_context, None, path)


def _last_frame_until(
    frames: Iterator[av.VideoFrame], target: int
) -> tuple[av.VideoFrame, int | None] | None:
    """The last frame with pts <= ``target``, and where the recording ends when it is the last
    frame of the file (else None); ``None`` when the first frame decoded is already later."""
    chosen: av.VideoFrame | None = None
    previous_pts: int | None = None
    for frame in frames:
        if frame.pts is None:
            continue
        if frame.pts > target:
            return (chosen, None) if chosen is not None else None
        if chosen is not None and chosen.pts is not None:
            previous_pts = chosen.pts
        chosen = frame
    if chosen is None or chosen.pts is None:
        return None
    # The file ended before passing the target: the last frame lasts its own duration (or the
    # step from the frame before it), and an instant beyond that is outside the recording.
    duration = chosen.duration or (chosen.pts - previous_pts if previous_pts is not None else 0)
    return chosen, chosen.pts + max(duration, 1)


def _is_black(sample: TimedSample, limits: HealthThresholds) -> bool:
    return (
        sample.mean_luma <= limits.black_max_luma
        and sample.dark_share >= limits.black_min_dark_share
    )


def _frozen_indices(
    ordered: Sequence[TimedSample],
    kinds: Sequence[str | None],
    limits: HealthThresholds,
    max_step: timedelta,
) -> set[int]:
    """Indices (into time-ordered samples) of the stretches that show one repeated picture.

    A chain is a run of samples each within ``frozen_extend_motion`` of the one before it in
    the same segment (``motion`` is None at a segment's first sample) and at most ``max_step``
    after it. A chain with a sample at most ``frozen_max_motion`` is frozen, together with the
    sample just before it: that one already showed the picture the chain keeps repeating.
    Samples that are already black or covered break chains: their stillness is explained.
    """
    frozen: set[int] = set()
    chain: list[int] = []
    settled = False

    def close_chain() -> None:
        if chain and settled:
            frozen.update(range(chain[0] - 1, chain[-1] + 1))

    for index in range(1, len(ordered)):
        sample = ordered[index]
        linked = (
            _rank(kinds[index]) > _rank("frozen")
            and sample.motion is not None
            and sample.motion <= limits.frozen_extend_motion
            and sample.at - ordered[index - 1].at <= max_step
        )
        if not linked:
            close_chain()
            chain, settled = [], False
            continue
        chain.append(index)
        settled = settled or (
            sample.motion is not None and sample.motion <= limits.frozen_max_motion
        )
    close_chain()
    return frozen


def _own_kind(
    sample: TimedSample, baseline_sharpness: float | None, limits: HealthThresholds
) -> str | None:
    if _is_black(sample, limits):
        return "black"
    if sample.sharpness < limits.covered_max_sharpness or (
        baseline_sharpness is not None
        and baseline_sharpness > 0
        and sample.sharpness < limits.covered_max_sharpness_ratio * baseline_sharpness
    ):
        return "covered"
    if (
        sample.reference_similarity is not None
        and sample.reference_similarity < limits.mismatch_max_similarity
    ):
        return "scene_mismatch"
    return None


def _rank(kind: str | None) -> int:
    return HEALTH_KINDS.index(kind) if kind is not None else len(HEALTH_KINDS)


def _sample_order(sample: TimedSample) -> tuple[object, ...]:
    # Every field takes part, so equal instants sort the same whatever the input order.
    def optional(value: float | None) -> tuple[bool, float]:
        return (value is None, 0.0 if value is None else value)

    return (
        sample.at,
        sample.mean_luma,
        sample.dark_share,
        optional(sample.motion),
        sample.sharpness,
        optional(sample.reference_similarity),
    )


def merge_flags(
    flags: Sequence[HealthInterval], *, max_gap: timedelta = timedelta(seconds=2)
) -> list[HealthInterval]:
    """Join same-kind intervals that touch or nearly touch (a stretch crossing a segment
    boundary is stored as one interval per segment). Pure; the input order does not matter."""
    merged: list[HealthInterval] = []
    for flag in sorted(flags, key=lambda f: (f.kind, f.start, f.end)):
        last = merged[-1] if merged else None
        if last is not None and last.kind == flag.kind and flag.start - last.end <= max_gap:
            merged[-1] = HealthInterval(last.start, max(last.end, flag.end), flag.kind)
        else:
            merged.append(flag)
    return sorted(merged, key=lambda f: (f.start, f.kind))
