"""Thumbnail strips: one JPEG per camera per sitting, a small tile every N seconds of the
required interval, decoded from keyframes only, cached in the blob store (docs/playback.md).

Each tile shows the first keyframe at or after its instant (within N seconds and inside the
same segment), so every picture lies inside the sitting's required interval: a supervisor's
window never opens a frame earlier. A tile with no footage is a flat grey tile, and the index
says why.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from services.coverage.rule import Interval
from services.footage.catalogue import open_recording
from services.footage.playback import SourceSegment
from services.health.sampling import decode_or_skip, encode_jpeg, stamped_packets, video_stream
from services.timefmt import rfc3339
from storage.blobs import BlobStore, BlobStoreError
from storage.keys import thumbnail_key

logger = logging.getLogger(__name__)

TILE_WIDTH = 160
DEFAULT_EVERY_SECONDS = 60
MIN_EVERY_SECONDS = 5
MAX_EVERY_SECONDS = 3600
# JPEG allows 65,535 pixels a side: 400 tiles of 160 px stay well inside it.
MAX_TILES = 400
JPEG_QUALITY = 80
_GAP_LEVEL = 48  # a dark grey tile where there is no picture
_MICROSECOND = timedelta(microseconds=1)
# Cached strips are derived data, not evidence: a short lock is enough (S3 needs one) and
# lets them be deleted once superseded or once their footage is purged.
_CACHE_LOCK = timedelta(minutes=5)


class TooManyTiles(ValueError):
    """The interval needs more tiles than a strip may hold; the message names the least N."""


@dataclass(frozen=True)
class Tile:
    index: int
    at: datetime  # the instant the tile stands for
    shown_at: datetime | None  # the keyframe's own instant; None for a gap tile
    segment_id: int | None
    cause: str | None  # why there is no picture: no_footage | purged | no_keyframe


@dataclass(frozen=True)
class ThumbnailStrip:
    key: str
    jpeg: bytes
    index: dict[str, Any]
    cached: bool


def tile_instants(required: Interval, every: timedelta) -> list[datetime]:
    count = max(1, int((required.end - required.start) / every))
    if (required.end - required.start) > count * every:
        count += 1
    return [required.start + i * every for i in range(count)]


def check_every(required: Interval, every_seconds: int) -> None:
    seconds = (required.end - required.start).total_seconds()
    if seconds / every_seconds > MAX_TILES:
        least = int(-(-seconds // MAX_TILES))
        raise TooManyTiles(
            f"every={every_seconds} s gives more than {MAX_TILES} tiles for this interval; "
            f"use every={least} or more"
        )


def strip_digest(
    sitting: str,
    camera: str,
    required: Interval,
    every_seconds: int,
    segments: Sequence[SourceSegment],
    sha256_by_id: dict[int, str],
    zone: tzinfo,
) -> str:
    """What the strip depends on: the interval, N, the tile size, the zone its index is written
    in and the exact set of footage (ids, contents, purged or not)."""
    basis = {
        "sitting": sitting,
        "camera": camera,
        "required": [required.start.isoformat(), required.end.isoformat()],
        "every": every_seconds,
        "tile_width": TILE_WIDTH,
        "zone": str(zone),
        "segments": sorted((s.id, sha256_by_id.get(s.id, ""), s.purged) for s in segments),
    }
    text = json.dumps(basis, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


def thumbnail_strip(
    store: BlobStore,
    *,
    sitting: str,
    camera: str,
    required: Interval,
    every_seconds: int,
    segments: Sequence[SourceSegment],
    sha256_by_id: dict[int, str],
    zone: tzinfo,
) -> ThumbnailStrip:
    """The cached strip when there is one for exactly this footage, else a new one (stored)."""
    check_every(required, every_seconds)
    digest = strip_digest(sitting, camera, required, every_seconds, segments, sha256_by_id, zone)
    key = thumbnail_key(sitting, camera, every_seconds, digest)
    cached = _read_cached(store, key)
    if cached is not None:
        jpeg, index = cached
        return ThumbnailStrip(key=key, jpeg=jpeg, index=index, cached=True)

    tiles, pictures = _render(store, required, timedelta(seconds=every_seconds), segments)
    strip = np.hstack(pictures)
    jpeg = encode_jpeg(strip, quality=JPEG_QUALITY)
    height = int(pictures[0].shape[0])
    index = {
        "sitting": sitting,
        "camera": camera,
        "every_seconds": every_seconds,
        "required_start": rfc3339(required.start, zone),
        "required_end": rfc3339(required.end, zone),
        "tile_width": TILE_WIDTH,
        "tile_height": height,
        "strip_sha256": hashlib.sha256(jpeg).hexdigest(),
        "tiles": [
            {
                "index": tile.index,
                "at": rfc3339(tile.at, zone),
                "shown_at": None if tile.shown_at is None else rfc3339(tile.shown_at, zone),
                "segment": tile.segment_id,
                "gap": tile.shown_at is None,
                "cause": tile.cause,
            }
            for tile in tiles
        ],
    }
    _store_cached(store, key, jpeg, index)
    return ThumbnailStrip(key=key, jpeg=jpeg, index=index, cached=False)


def _read_cached(store: BlobStore, key: str) -> tuple[bytes, dict[str, Any]] | None:
    # The index is written last, so its presence means the strip is complete.
    try:
        if store.stat(f"{key}.json") is None or store.stat(f"{key}.jpg") is None:
            return None
        index = json.loads(b"".join(store.read(f"{key}.json")))
        return b"".join(store.read(f"{key}.jpg")), index
    except (BlobStoreError, ValueError):
        logger.exception("cached thumbnail strip %s is unreadable; rebuilding it", key)
        return None


def _store_cached(store: BlobStore, key: str, jpeg: bytes, index: dict[str, Any]) -> None:
    retain_until = datetime.now(UTC) + _CACHE_LOCK
    try:
        with tempfile.TemporaryDirectory(prefix="examvault-thumbnails-") as folder:
            for suffix, data in (
                ("jpg", jpeg),
                ("json", json.dumps(index, ensure_ascii=False).encode("utf-8")),
            ):
                source = Path(folder) / f"strip.{suffix}"
                source.write_bytes(data)
                store.put_file(
                    source, lambda _sha256, s=suffix: f"{key}.{s}", retain_until=retain_until
                )
    except BlobStoreError:
        # The strip is served anyway; only the next request pays for it again.
        logger.exception("could not cache thumbnail strip %s", key)


def _render(
    store: BlobStore, required: Interval, every: timedelta, segments: Sequence[SourceSegment]
) -> tuple[list[Tile], list[np.ndarray]]:
    instants = tile_instants(required, every)
    live = sorted((s for s in segments if not s.purged), key=lambda s: s.starts_at)
    purged = [s for s in segments if s.purged]
    reference = live[0] if live else None
    width = TILE_WIDTH
    height = _tile_height(reference.width, reference.height) if reference else width * 3 // 4

    planned: dict[int, list[tuple[int, datetime]]] = {}
    tiles: dict[int, Tile] = {}
    for index, at in enumerate(instants):
        owner = next((s for s in live if s.starts_at <= at < s.ends_at), None)
        if owner is None:
            cause = "purged" if any(s.starts_at <= at < s.ends_at for s in purged) else "no_footage"
            tiles[index] = Tile(index, at, None, None, cause)
        else:
            planned.setdefault(owner.id, []).append((index, at))

    pictures: dict[int, np.ndarray] = {}
    by_id = {s.id: s for s in live}
    for segment_id, wanted in planned.items():
        segment = by_id[segment_id]
        found = _keyframes(store, segment, wanted, every, width, height)
        for index, at in wanted:
            if index in found:
                shown_at, picture = found[index]
                tiles[index] = Tile(index, at, shown_at, segment_id, None)
                pictures[index] = picture
            else:
                tiles[index] = Tile(index, at, None, segment_id, "no_keyframe")
    gap = np.full((height, width, 3), _GAP_LEVEL, dtype=np.uint8)
    return (
        [tiles[i] for i in range(len(instants))],
        [pictures.get(i, gap) for i in range(len(instants))],
    )


def _tile_height(width: int, height: int) -> int:
    # Even, for the JPEG encoder's chroma subsampling.
    return max(2, round(TILE_WIDTH * height / max(1, width) / 2) * 2)


def _keyframes(
    store: BlobStore,
    segment: SourceSegment,
    wanted: list[tuple[int, datetime]],
    every: timedelta,
    width: int,
    height: int,
) -> dict[int, tuple[datetime, np.ndarray]]:
    """For each (tile, instant) of one segment: the first keyframe at or after the instant,
    before the next tile's instant and the segment's end, decoded and scaled to the tile.
    Only those keyframes are decoded."""
    found: dict[int, tuple[datetime, np.ndarray]] = {}
    with open_recording(store, segment.blob_key) as container:
        source = f"segment {segment.id}"
        video = video_stream(container, source)
        context = video.codec_context
        context.skip_frame = "NONKEY"
        time_base = video.time_base or Fraction(1, 90_000)
        origin = video.start_time or 0

        def pts_at(moment: datetime) -> int:
            micros = (moment - segment.starts_at) // _MICROSECOND
            return origin + math.ceil(Fraction(micros, 1_000_000) / time_base)

        def wall_at(pts: int) -> datetime:
            seconds = (pts - origin) * time_base
            return segment.starts_at + timedelta(microseconds=round(seconds * 1_000_000))

        # One forward pass (demuxing is cheap, decoding is not): MPEG-TS and MPEG-PS seek by
        # bytes and may land past a tile's keyframe, so seeking per tile would skip pictures.
        pending = sorted(wanted, key=lambda item: item[1])
        bounds = [(pts_at(at), pts_at(min(at + every, segment.ends_at))) for _, at in pending]
        position = 0
        for packet in stamped_packets(container, video):
            moment = packet.pts
            while position < len(pending) and moment >= bounds[position][1]:
                position += 1  # this tile's stretch passed without a keyframe
            if position == len(pending):
                break
            if not packet.is_keyframe or moment < bounds[position][0]:
                continue
            frames = decode_or_skip(context, packet, source) or decode_or_skip(
                context, None, source
            )
            context.flush_buffers()
            if frames:
                picture = (
                    frames[0]
                    .reformat(width=width, height=height, format="bgr24", interpolation="AREA")
                    .to_ndarray()
                )
                # One keyframe may stand for several tiles when N is shorter than a GOP.
                while position < len(pending) and bounds[position][0] <= moment:
                    found[pending[position][0]] = (wall_at(moment), picture)
                    position += 1
    return found
