"""Ways to damage a real recording the way disks, cables and hostile hosts do, for the integrity
tests, the hostile-file corpus and the probe's fuzzing."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import av


@dataclass(frozen=True)
class KeyframeAt:
    """Where a video keyframe's bytes lie in the file, and when it is shown."""

    position: int
    size: int
    seconds: float  # from the first video pts


def keyframes(path: Path) -> list[KeyframeAt]:
    with av.open(str(path)) as container:
        video = container.streams.video[0]
        stamped = [
            (packet.pos, packet.size, packet.pts, packet.is_keyframe)
            for packet in container.demux(video)
            if packet.size
        ]
        time_base = float(video.time_base)
    origin = min(pts for _, _, pts, _ in stamped)
    return [
        KeyframeAt(position, size, (pts - origin) * time_base)
        for position, size, pts, key in stamped
        if key
    ]


def flipped(data: bytes, offset: int, count: int) -> bytes:
    """``data`` with ``count`` bytes inverted from ``offset`` (clipped to the data)."""
    damaged = bytearray(data)
    for index in range(max(offset, 0), min(offset + count, len(damaged))):
        damaged[index] ^= 0xFF
    return bytes(damaged)


def flip_keyframe(path: Path, keyframe: KeyframeAt, count: int = 2000) -> None:
    """Invert ``count`` bytes in the middle of one keyframe (all of it if it is smaller)."""
    count = min(count, keyframe.size - 16)
    offset = keyframe.position + (keyframe.size - count) // 2
    path.write_bytes(flipped(path.read_bytes(), offset, count))
