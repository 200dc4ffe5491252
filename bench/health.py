"""Health pass speed: keyframe sampling against a full decode of the same file, on one core.

`python -m bench.health` times `sample_segment` (keyframes only, with a room reference, so every
metric is computed) on a 60 s 1280x720 H.264 recording (2 Mbit/s, 25 fps, a keyframe every 2 s)
and, in the same run and alternating with it, a full decode of every frame of that file. Both
count CPU time (`time.process_time`, every thread of the process) and wall time; the median of
the repetitions is reported as a real-time factor: seconds of video per second of CPU.

"One core" is made literal: the decoder runs one thread in both, and OpenCV's own thread pool is
set to one thread (its workers would otherwise spin on the small per-sample images and bill the
CPU clock for it). A full decode with two decoder threads is reported for information.

Targets: health pass >= 150x real time, and >= 4x faster than the single-threaded full decode.
The recording is encoded once and cached in bench/.cache/ (gitignored). Results go to
bench/results/health.json with the machine they came from.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import av
import cv2
import numpy as np

from bench.machine import cpu_model
from services.demo.footage import classroom_scene, write_recording
from services.health.sampling import frame_at, prepare_reference, sample_segment
from services.ingest.probe import probe_recording

BENCH_DIR = Path(__file__).resolve().parent
CACHE_DIR = BENCH_DIR / ".cache"
RESULTS_DIR = BENCH_DIR / "results"
TARGET_HEALTH_RTF = 150.0
TARGET_RATIO = 4.0


@dataclass(frozen=True)
class RecordingSpec:
    """How the cached recording is encoded; every field is part of its name."""

    seconds: int = 60
    fps: int = 25
    width: int = 1280
    height: int = 720
    bit_rate: int = 2_000_000
    gop_seconds: float = 2.0
    seed: int = 0

    def cache_name(self) -> str:
        return (
            f"classroom-{self.width}x{self.height}-{self.fps}fps-h264-"
            f"{self.bit_rate // 1000}kbps-gop{self.gop_seconds:g}s-{self.seconds}s-"
            f"seed{self.seed}.mp4"
        )


@dataclass(frozen=True)
class Timing:
    cpu_seconds: float
    wall_seconds: float


def cached_recording(spec: RecordingSpec) -> Path:
    path = CACHE_DIR / spec.cache_name()
    if path.exists():
        return path
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    # Encode under another name: an interrupted run must not leave a truncated file that later
    # runs would take for a finished one.
    partial = path.with_name(path.name + ".part")
    print(f"encoding {path.name} (cached for later runs)", file=sys.stderr, flush=True)
    write_recording(
        partial,
        seconds=spec.seconds,
        fps=spec.fps,
        width=spec.width,
        height=spec.height,
        bit_rate=spec.bit_rate,
        gop_seconds=spec.gop_seconds,
        fmt="mp4",
        scene=classroom_scene(spec.width, spec.height, seed=spec.seed),
    )
    partial.rename(path)
    return path


def full_decode(path: Path, threads: int) -> int:
    """Decode every frame of ``path`` (no conversion) and return how many came out."""
    frames = 0
    with av.open(f"file:{path.resolve()}") as container:
        video = container.streams.video[0]
        video.codec_context.thread_count = threads
        if threads != 1:
            video.codec_context.thread_type = "AUTO"
        for _frame in container.decode(video):
            frames += 1
    return frames


def timed(work: Callable[[], object]) -> Timing:
    cpu, wall = time.process_time(), time.perf_counter()
    work()
    return Timing(time.process_time() - cpu, time.perf_counter() - wall)


def summarize(timings: list[Timing], video_seconds: float) -> dict[str, Any]:
    cpu = statistics.median(t.cpu_seconds for t in timings)
    wall = statistics.median(t.wall_seconds for t in timings)
    return {
        "cpu_seconds": round(cpu, 4),
        "wall_seconds": round(wall, 4),
        "realtime_factor_cpu": round(video_seconds / cpu, 1),
        "realtime_factor_wall": round(video_seconds / wall, 1),
        # The least-disturbed run, for information: on a shared VM the median moves with load.
        "realtime_factor_cpu_best": round(video_seconds / min(t.cpu_seconds for t in timings), 1),
        "repetitions_cpu_seconds": [round(t.cpu_seconds, 4) for t in timings],
    }


def machine() -> dict[str, Any]:
    return {
        "platform": platform.platform(),
        "cpu_model": cpu_model(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "av": av.__version__,
        "ffmpeg": str(av.ffmpeg_version_info),
        "cv2": cv2.__version__,
        "numpy": np.__version__,
        "date_utc": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.health",
        description="Keyframe health pass against a full decode of the same 720p file.",
    )
    parser.add_argument(
        "--repetitions", type=int, default=7, help="timed runs of each side (default 7)"
    )
    parser.add_argument(
        "--output",
        type=Path,
        default=RESULTS_DIR / "health.json",
        help="results file (default bench/results/health.json)",
    )
    args = parser.parse_args(argv)
    if args.repetitions < 1:
        parser.error("--repetitions must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    spec = RecordingSpec()
    path = cached_recording(spec)
    probe = probe_recording(path)
    video_seconds = probe.duration_seconds
    cv2.setNumThreads(1)
    # The production pass compares with the room's reference, so the benchmark does too.
    reference = prepare_reference(frame_at(path, 1.0))

    def health_pass() -> object:
        return sample_segment(path, reference=reference, threads=1)

    print(
        f"health: {video_seconds:.1f} s {probe.width}x{probe.height} {probe.video_codec} "
        f"{spec.bit_rate / 1e6:g} Mbit/s, {probe.packet_count} frames, "
        f"{probe.keyframe_count} keyframes, {args.repetitions} repetitions",
        flush=True,
    )
    samples = len(sample_segment(path, reference=reference))  # warm-up, untimed
    full_decode(path, 1)
    load_before = os.getloadavg()[0]
    health: list[Timing] = []
    decode_1: list[Timing] = []
    decode_2: list[Timing] = []
    # Alternating the sides spreads any background load over all of them alike.
    for index in range(args.repetitions):
        health.append(timed(health_pass))
        decode_1.append(timed(lambda: full_decode(path, 1)))
        decode_2.append(timed(lambda: full_decode(path, 2)))
        print(
            f"  run {index + 1}: health {health[-1].cpu_seconds * 1000:6.0f} ms CPU, "
            f"full decode {decode_1[-1].cpu_seconds * 1000:6.0f} ms CPU (1 thread), "
            f"{decode_2[-1].wall_seconds * 1000:6.0f} ms wall (2 threads)",
            flush=True,
        )
    load_after = os.getloadavg()[0]

    health_summary = summarize(health, video_seconds)
    decode_1_summary = summarize(decode_1, video_seconds)
    decode_2_summary = summarize(decode_2, video_seconds)
    ratio = decode_1_summary["cpu_seconds"] / health_summary["cpu_seconds"]
    health_rtf = health_summary["realtime_factor_cpu"]
    rtf_met, ratio_met = health_rtf >= TARGET_HEALTH_RTF, ratio >= TARGET_RATIO
    results = {
        "benchmark": "health",
        "machine": machine(),
        "workload": {
            "file": path.name,
            "seconds": round(video_seconds, 3),
            "resolution": f"{probe.width}x{probe.height}",
            "fps": spec.fps,
            "codec": probe.video_codec,
            "bit_rate": spec.bit_rate,
            "gop_seconds": spec.gop_seconds,
            "frames": probe.packet_count,
            "keyframes": probe.keyframe_count,
            "samples": samples,
            "size_bytes": path.stat().st_size,
        },
        "setup": {
            "repetitions": args.repetitions,
            "statistic": "median of repetitions; the three sides alternate, one warm-up each",
            "clocks": "time.process_time (CPU of all threads) and time.perf_counter (wall)",
            "realtime_factor": "video seconds / CPU seconds (wall for the *_wall figures)",
            "health_pass": "sample_segment(threads=1) with a reference: keyframes only, "
            "160 px gray, luma, dark share, motion, Laplacian, edge-layout similarity",
            "full_decode": "every frame decoded, no conversion; 1 decoder thread, and 2 for "
            "information",
            "opencv_threads": cv2.getNumThreads(),
            "load_average_1m": {"before": round(load_before, 2), "after": round(load_after, 2)},
        },
        "health_pass": health_summary,
        "full_decode_1_thread": decode_1_summary,
        "full_decode_2_threads": decode_2_summary,
        "ratio_full_decode_to_health_cpu": round(ratio, 2),
        "targets": {"health_realtime_factor_cpu": TARGET_HEALTH_RTF, "ratio": TARGET_RATIO},
        "met": {"health_realtime_factor_cpu": rtf_met, "ratio": ratio_met},
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")

    def verdict(met: bool) -> str:
        return "met" if met else "NOT met"

    print(
        f"health pass:          {health_rtf:7.1f}x real time (CPU), "
        f"{health_summary['realtime_factor_wall']:7.1f}x (wall) "
        f"- target >= {TARGET_HEALTH_RTF:g}x: {verdict(rtf_met)}"
    )
    print(
        f"full decode, 1 thread:  {decode_1_summary['realtime_factor_cpu']:7.1f}x real time "
        f"(CPU), {decode_1_summary['realtime_factor_wall']:7.1f}x (wall)"
    )
    print(
        f"full decode, 2 threads: {decode_2_summary['realtime_factor_cpu']:7.1f}x real time "
        f"(CPU), {decode_2_summary['realtime_factor_wall']:7.1f}x (wall)"
    )
    print(
        f"health vs full decode (CPU, 1 thread each): {ratio:.1f}x faster "
        f"- target >= {TARGET_RATIO:g}x: {verdict(ratio_met)}"
    )
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
