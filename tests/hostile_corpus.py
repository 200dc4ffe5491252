"""The hostile-file corpus: what a broken camera, a bad disk or a hostile host can push, built
from real recordings each time (nothing binary is checked in). Each group is a list of files;
tests/ingest/test_hostile_files.py pushes every one over HTTP and through the spool."""

from __future__ import annotations

import random
import struct
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from services.demo.footage import CONTAINER_BY_SUFFIX, classroom_scene, write_recording
from tests.damage import flipped, keyframes
from tests.large_picture import write_large_picture

TRUNCATIONS = 37


def _spread(size: int, count: int) -> list[int]:
    """``count`` distinct offsets spread over 1..size-1."""
    return sorted({max(1, min(size - 1, round(size * (i + 0.5) / count))) for i in range(count)})


def _seed(folder: Path, suffix: str, **options: object) -> Path:
    return write_recording(
        folder / f"seed{suffix}",
        seconds=4,
        fps=10,
        gop_seconds=1.0,
        scene=classroom_scene(320, 240, seed=7),
        **options,  # type: ignore[arg-type]
    )


def _write(folder: Path, name: str, data: bytes) -> Path:
    path = folder / name
    path.write_bytes(data)
    return path


def _absurd_duration(path: Path, hours: float) -> Path:
    """Three small frames whose timestamps claim ``hours`` of recording."""
    with av.open(str(path), "w", format=CONTAINER_BY_SUFFIX[path.suffix]) as output:
        video = output.add_stream("libx264", rate=10, options={"preset": "ultrafast"})
        video.width, video.height, video.pix_fmt = 64, 64, "yuv420p"
        video.time_base = Fraction(1, 10)
        for index, seconds in enumerate((0.0, 1.0, hours * 3600)):
            frame = av.VideoFrame.from_ndarray(
                np.full((64, 64, 3), 40 * index, dtype=np.uint8), format="rgb24"
            )
            frame.pts, frame.time_base = round(seconds * 10), Fraction(1, 10)
            output.mux(video.encode(frame))
        output.mux(video.encode(None))
    return path


def _audio_only(path: Path) -> Path:
    with av.open(str(path), "w", format=CONTAINER_BY_SUFFIX[path.suffix]) as output:
        audio = output.add_stream("aac", rate=16000)
        audio.layout = "mono"
        for index in range(40):
            samples = np.zeros((1, 1024), dtype=np.float32)
            frame = av.AudioFrame.from_ndarray(samples, format="fltp", layout="mono")
            frame.sample_rate, frame.pts = 16000, index * 1024
            output.mux(audio.encode(frame))
        output.mux(audio.encode(None))
    return path


def _with_box_dimensions(data: bytes, width: int, height: int) -> bytes:
    """The MP4 with the sizes in its ``avc1`` sample entry and ``tkhd`` box replaced (the
    H.264 parameters inside keep the real size): a header that lies."""
    patched = bytearray(data)
    entry = patched.find(b"avc1")
    if entry > 0:
        struct.pack_into(">HH", patched, entry + 4 + 24, width, height)
    track = patched.find(b"tkhd")
    if track > 0:
        version = patched[track + 4]
        offset = track + 4 + (92 if version == 1 else 80)
        struct.pack_into(">II", patched, offset, width << 16, height << 16)
    return bytes(patched)


def build_corpus(folder: Path) -> dict[str, list[Path]]:
    """Every group of hostile files, by the name the reliability record gives it."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(11)
    mp4 = _seed(folder, ".mp4")
    mkv = _seed(folder, ".mkv")
    ts = _seed(folder, ".ts")
    data = {path.suffix: path.read_bytes() for path in (mp4, mkv, ts)}
    groups: dict[str, list[Path]] = {}

    for suffix, label in ((".mp4", "mp4"), (".mkv", "matroska"), (".ts", "mpeg-ts")):
        source = data[suffix]
        offsets = _spread(len(source), TRUNCATIONS)
        groups[f"{label} truncated at {len(offsets)} offsets"] = [
            _write(folder, f"cut{offset}{suffix}", source[:offset]) for offset in offsets
        ]

    # The header: the first 4 KiB (ftyp and the first samples) and the moov box a camera
    # writes last; 64 bytes inverted at each of 12 places.
    source = data[".mp4"]
    moov = source.rfind(b"moov") - 4
    places = _spread(4096, 6) + [moov + (len(source) - moov) * i // 6 for i in range(6)]
    groups["mp4 with 64 bytes flipped in its header or index"] = [
        _write(folder, f"hflip{place}.mp4", flipped(source, place, 64)) for place in places
    ]
    middle = [kf for kf in keyframes(mp4) if kf.position > 4096]
    groups["mp4 with 2000 bytes flipped in the middle of mdat"] = [
        _write(folder, f"mflip{kf.position}.mp4", flipped(source, kf.position + 64, 2000))
        for kf in middle
    ] + [
        _write(folder, f"pflip{offset}.mp4", flipped(source, offset, 2000))
        for offset in _spread(moov, 6)
    ]

    randoms = []
    for index, size in enumerate((1, 7, 188, 4096, 65536, 300_000)):
        for suffix in (".mp4", ".mkv", ".ts", ".ps"):
            randoms.append(_write(folder, f"random{index}{suffix}", rng.randbytes(size)))
    randoms.append(_write(folder, "empty.mp4", b""))
    randoms.append(_write(folder, "text.mp4", "这不是录像 not a video\n".encode() * 200))
    groups["random bytes, empty and text files under video names"] = randoms

    groups["absurd header dimensions"] = [
        _write(folder, "lying-header.mp4", _with_box_dimensions(source, 65535, 65535)),
        _write(folder, "lying-header-small.mp4", _with_box_dimensions(source, 1, 1)),
        write_large_picture(folder / "huge-8192.mp4"),
        write_large_picture(folder / "wide-16000x16.mkv", width=16000, height=16),
    ]
    groups["absurd durations"] = [
        _absurd_duration(folder / "thirteen-hours.mp4", 13),
        _absurd_duration(folder / "thousand-hours.mkv", 1000),
        _absurd_duration(folder / "a-year.ts", 24 * 365),
    ]
    groups["padded files"] = [
        _write(folder, "zeros-2mib.mp4", source + bytes(2 * 1024 * 1024)),
        _write(folder, "zeros-8mib.mkv", data[".mkv"] + bytes(8 * 1024 * 1024)),
        _write(folder, "zeros-4mib.ts", data[".ts"] + bytes(4 * 1024 * 1024)),
        _write(folder, "random-2mib.mp4", source + rng.randbytes(2 * 1024 * 1024)),
        _write(folder, "copy-of-itself.mp4", source + source * 40),
        _write(folder, "stray-1000.mp4", source + bytes(1000)),
    ]
    groups["decode bombs"] = [
        write_large_picture(folder / "bomb-8192.ts"),
        write_large_picture(folder / "bomb-8192.mkv"),
        write_large_picture(folder / "bomb-4097x2160.mp4", width=4112, height=2160),
    ]
    groups["audio-only streams"] = [
        _audio_only(folder / "audio.mp4"),
        _audio_only(folder / "audio.mkv"),
        _audio_only(folder / "audio.ts"),
    ]
    return groups
