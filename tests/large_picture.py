"""A decode bomb for the probe's picture limits: a few hundred KB of flat H.264 whose pictures
are 8192x8192, which would cost hundreds of MB to decode."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from services.demo.footage import CONTAINER_BY_SUFFIX


def write_large_picture(path: Path, *, width: int = 8192, height: int = 8192) -> Path:
    """Two flat grey keyframes of ``width`` x ``height`` at 10 frames/s (two packets, so the
    probe does not take it for a still image); the container comes from the suffix."""
    with av.open(str(path), "w", format=CONTAINER_BY_SUFFIX[path.suffix]) as output:
        video = output.add_stream(
            "libx264",
            rate=10,
            options={"preset": "ultrafast", "x264-params": "keyint=1:threads=1"},
        )
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        grey = np.full((height * 3 // 2, width), 128, dtype=np.uint8)
        for index in range(2):
            frame = av.VideoFrame.from_numpy_buffer(grey, format="yuv420p")
            frame.pts, frame.time_base = index, Fraction(1, 10)
            output.mux(video.encode(frame))
        output.mux(video.encode(None))
    return path
