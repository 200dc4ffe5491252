"""Ingest throughput: the real pipeline against the floor of hashing and copying the same bytes.

`python -m bench.ingest` (what `make bench` runs) ingests a batch of realistic camera segments
(60 s, 1280x720, H.264 at 2 Mbit/s, MP4) through `IngestPipeline.ingest` on the embedded
defaults: SQLite and the local blob store in a temporary data dir, health checks off. In the
same run it measures the floor, the least any ingest must do with those bytes: read them in
1 MiB chunks, hash them with SHA-256 and write an fsynced copy. Floor and pipeline run
alternately for a few rounds, each on a fresh data dir, and their medians are compared; the
target is a pipeline at 0.7 of the floor's throughput or better.

Both sides read files that were just copied into place, so both read from the page cache; the
results say so. The segments are encoded once and cached in bench/.cache/ (gitignored); delete
it to re-encode. Results go to bench/results/ingest.json with the machine they came from.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

import av

from bench.machine import cpu_model, filesystem_of
from services.context import Services
from services.demo.footage import classroom_scene, write_recording
from services.ingest import pipeline as pipeline_module
from services.ingest.pipeline import Arrival, Outcome
from services.registry import import_registry
from services.settings import load_settings
from storage.blobs import LocalBlobStore

P = ParamSpec("P")
R = TypeVar("R")

BENCH_DIR = Path(__file__).resolve().parent
CACHE_DIR = BENCH_DIR / ".cache"
RESULTS_DIR = BENCH_DIR / "results"
# The same chunk as the blob store's, so the floor does the same number of reads and writes.
CHUNK = 1024 * 1024
MB = 1_000_000
TARGET_RATIO = 0.7
# Encoding 1500 frames at 1280x720 takes a while; a few distinct files reused under distinct
# starts make distinct segments (the pipeline keys on camera + start) without hours of encoding.
MAX_DISTINCT_FILES = 8
CAMERA = "BENCH0001-S1-R1-F"
# A room needs two cameras to pass the registry's checks; the batch uses only the front one.
REGISTRY = {
    "institutions": [
        {
            "code": "BENCH0001",
            "name": "Benchmark testing centre",
            "district": "Bench district",
            "sites": [
                {
                    "code": "BENCH0001-S1",
                    "address": "1 Benchmark Road",
                    "rooms": [
                        {
                            "code": "BENCH0001-S1-R1",
                            "kind": "theory",
                            "cameras": [
                                {"code": CAMERA, "position": "front"},
                                {"code": "BENCH0001-S1-R1-B", "position": "back"},
                            ],
                        }
                    ],
                }
            ],
        }
    ]
}


@dataclass(frozen=True)
class SegmentSpec:
    """How the cached recordings are encoded; every field is part of the cache key."""

    seconds: int = 60
    fps: int = 25
    width: int = 1280
    height: int = 720
    codec: str = "h264"
    bit_rate: int = 2_000_000

    def cache_name(self, seed: int) -> str:
        return (
            f"classroom-{self.width}x{self.height}-{self.fps}fps-{self.codec}-"
            f"{self.bit_rate // 1000}kbps-{self.seconds}s-seed{seed}.mp4"
        )


@dataclass(frozen=True)
class PlannedSegment:
    """One entry of the batch: cached bytes and the spool name that gives them their start."""

    source: Path
    file_name: str
    size: int


@dataclass(frozen=True)
class Timing:
    seconds: float
    segments: int
    size: int

    @property
    def segments_per_s(self) -> float:
        return self.segments / self.seconds

    @property
    def mb_per_s(self) -> float:
        return self.size / MB / self.seconds


def cached_recording(spec: SegmentSpec, seed: int) -> Path:
    path = CACHE_DIR / spec.cache_name(seed)
    if path.exists():
        return path
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    # Encode under another name: an interrupted run must not leave a truncated file that later
    # runs would take for a finished one.
    partial = path.with_name(path.name + ".part")
    print(f"encoding {path.name} (cached for later runs)", file=sys.stderr, flush=True)
    started = time.perf_counter()
    write_recording(
        partial,
        seconds=spec.seconds,
        fps=spec.fps,
        width=spec.width,
        height=spec.height,
        codec=spec.codec,
        bit_rate=spec.bit_rate,
        fmt="mp4",
        scene=classroom_scene(spec.width, spec.height, seed=seed),
    )
    partial.rename(path)
    print(f"  {time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True)
    return path


def plan_batch(
    sources: list[Path], count: int, first_start: datetime, seconds: int
) -> list[PlannedSegment]:
    """Back-to-back segments cycling over the distinct files, named as a camera host would."""
    batch = []
    for index in range(count):
        source = sources[index % len(sources)]
        start = first_start + timedelta(seconds=index * seconds)
        batch.append(
            PlannedSegment(
                source=source, file_name=f"{start:%Y%m%dT%H%M%S}Z.mp4", size=source.stat().st_size
            )
        )
    return batch


def stage(batch: list[PlannedSegment], folder: Path) -> list[Path]:
    """Copy the batch into `folder`: the host's upload, done before any clock starts."""
    folder.mkdir(parents=True, exist_ok=True)
    staged = []
    for planned in batch:
        target = folder / planned.file_name
        shutil.copyfile(planned.source, target)
        staged.append(target)
    return staged


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def copy_durably(source: Path, target_dir: Path) -> str:
    """The floor for one file: read, hash, write, fsync the file and its directory, remove the
    source. No rename, no row, no probe: what is left when everything but the bytes is free."""
    digest = hashlib.sha256()
    target = target_dir / source.name
    with source.open("rb") as reader, target.open("xb") as writer:
        while chunk := reader.read(CHUNK):
            digest.update(chunk)
            writer.write(chunk)
        writer.flush()
        os.fsync(writer.fileno())
    _fsync_dir(target_dir)
    source.unlink()
    return digest.hexdigest()


def open_services(data_dir: Path) -> Services:
    # Explicit Nones: an EXAMVAULT_DATABASE_URL or _STORAGE_URL in the environment (or .env)
    # must not quietly turn this into a PostgreSQL or S3 benchmark.
    settings = load_settings(
        data_dir=data_dir,
        database_url=None,
        storage_url=None,
        spool_dir=None,
        spool_settle_seconds=0,
        health_checks=False,
    )
    services = Services.from_settings(settings)
    if not services.db.is_sqlite or not isinstance(services.store, LocalBlobStore):
        raise RuntimeError("the benchmark must run on the embedded SQLite + local blob store")
    text = json.dumps(REGISTRY)
    services.db.run_write(lambda session: import_registry(session, text, actor="bench"))
    return services


def ingest_staged(services: Services, paths: list[Path]) -> None:
    for path in paths:
        result = services.pipeline.ingest(
            Arrival(
                path=path,
                camera_code=CAMERA,
                file_name=path.name,
                source="spool",
                received_at=datetime.now(UTC),
            ),
            actor="bench",
        )
        if result.outcome is not Outcome.STORED:
            raise RuntimeError(
                f"{path.name} was not stored: {result.outcome} {result.code} {result.reason}"
            )


def time_floor(paths: list[Path], target_dir: Path, size: int) -> Timing:
    target_dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    for path in paths:
        copy_durably(path, target_dir)
    return Timing(time.perf_counter() - started, len(paths), size)


def time_pipeline(services: Services, paths: list[Path], size: int) -> Timing:
    started = time.perf_counter()
    ingest_staged(services, paths)
    return Timing(time.perf_counter() - started, len(paths), size)


@dataclass(frozen=True)
class Workload:
    batch: list[PlannedSegment]
    # Ingested untimed first, as a running service has a warm engine and compiled statements.
    warmup: PlannedSegment
    scratch: Path

    @property
    def size(self) -> int:
        return sum(planned.size for planned in self.batch)


def prepare_round(workload: Workload, round_dir: Path) -> tuple[Services, list[Path], list[Path]]:
    services = open_services(round_dir / "data")
    spool = services.settings.resolved_spool_dir / CAMERA
    ingest_staged(services, stage([workload.warmup], spool))
    pipeline_paths = stage(workload.batch, spool)
    floor_paths = stage(workload.batch, round_dir / "floor-in")
    # Flush the staged copies now, so neither side pays for writing back the other's upload.
    os.sync()
    return services, pipeline_paths, floor_paths


def run_round(index: int, workload: Workload) -> tuple[Timing, Timing]:
    """One floor and one pipeline pass over the same bytes on a fresh data dir; the order
    alternates between rounds so that neither side always runs on a quieter disk."""
    round_dir = Path(tempfile.mkdtemp(prefix=f"round{index}-", dir=workload.scratch))
    try:
        services, pipeline_paths, floor_paths = prepare_round(workload, round_dir)
        try:
            timings: dict[str, Timing] = {}
            order = ["floor", "pipeline"] if index % 2 == 0 else ["pipeline", "floor"]
            for side in order:
                if side == "floor":
                    timings[side] = time_floor(floor_paths, round_dir / "floor-out", workload.size)
                else:
                    timings[side] = time_pipeline(services, pipeline_paths, workload.size)
                os.sync()
            return timings["floor"], timings["pipeline"]
        finally:
            services.close()
    finally:
        shutil.rmtree(round_dir, ignore_errors=True)


class StageClock:
    """Sums the wall time spent inside wrapped callables."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)

    def wrap(self, name: str, function: Callable[P, R]) -> Callable[P, R]:
        def timed(*args: P.args, **kwargs: P.kwargs) -> R:
            started = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                self.seconds[name] += time.perf_counter() - started

        return timed

    def wrap_context(
        self, name: str, factory: Callable[P, AbstractContextManager[R]]
    ) -> Callable[P, AbstractContextManager[R]]:
        """Time entering and leaving the contexts `factory` makes, not the body in between."""
        clock = self

        class Timed(AbstractContextManager[R]):
            def __init__(self, inner: AbstractContextManager[R]) -> None:
                self.inner = inner

            def __enter__(self) -> R:
                started = time.perf_counter()
                try:
                    return self.inner.__enter__()
                finally:
                    clock.seconds[name] += time.perf_counter() - started

            def __exit__(self, *exc_info: Any) -> bool | None:
                started = time.perf_counter()
                try:
                    return self.inner.__exit__(*exc_info)
                finally:
                    clock.seconds[name] += time.perf_counter() - started

        def timed(*args: P.args, **kwargs: P.kwargs) -> AbstractContextManager[R]:
            return Timed(factory(*args, **kwargs))

        return timed


# Stage names in pipeline order; "other" is what none of them covers.
STAGES = {
    "claim": "open + flock the arrival; its close after the unlink frees the file's blocks",
    "segment_at": "duplicate check (camera + start)",
    "probe_recording": "av.open, demux every video packet, decode one keyframe; runs in a "
    "second thread while store_stage reads the same file, so it is not added into 'other'",
    "expiry": "retention query over the room's sittings",
    "store_stage": "read, sha256, write a temporary copy, fsync",
    "store_commit": "rename into place, fsync dir",
    "db_write": "segment row + ledger entry, one SQLite transaction (WAL, synchronous=FULL)",
    "remove_arrival": "unlink the spool file",
    "other": "start parsing, camera lookup, clock flags, Python overhead",
}


def measure_stages(workload: Workload) -> dict[str, float]:
    """Milliseconds per segment in each stage of the pipeline, from one extra pass with timers
    around its steps. Kept apart from the timed rounds so the wrappers cannot skew them."""
    round_dir = Path(tempfile.mkdtemp(prefix="stages-", dir=workload.scratch))
    clock = StageClock()
    original_probe, original_claim = pipeline_module.probe_recording, pipeline_module.claim
    try:
        services, pipeline_paths, _ = prepare_round(workload, round_dir)
        try:
            # Instance attributes shadow the methods for this Services only; the two module
            # functions are put back in the finally below.
            pipeline = services.pipeline
            store, db = services.store, services.db
            # Instance attributes shadow the methods for this Services only.
            vars(store)["stage"] = clock.wrap("store_stage", store.stage)
            vars(store)["commit"] = clock.wrap("store_commit", store.commit)
            vars(db)["run_write"] = clock.wrap("db_write", db.run_write)
            for name in ("segment_at", "expiry", "remove_arrival"):
                method = getattr(pipeline, f"_{name}")
                setattr(pipeline, f"_{name}", clock.wrap(name, method))
            pipeline_module.probe_recording = clock.wrap("probe_recording", original_probe)
            pipeline_module.claim = clock.wrap_context("claim", original_claim)
            total = time_pipeline(services, pipeline_paths, workload.size)
        finally:
            pipeline_module.probe_recording = original_probe
            pipeline_module.claim = original_claim
            services.close()
    finally:
        shutil.rmtree(round_dir, ignore_errors=True)
    count = len(workload.batch)
    stages = {name: clock.seconds[name] * 1000 / count for name in STAGES if name != "other"}
    sequential = sum(ms for name, ms in stages.items() if name != "probe_recording")
    stages["other"] = total.seconds * 1000 / count - sequential
    stages["total"] = total.seconds * 1000 / count
    return {name: round(ms, 2) for name, ms in stages.items()}


def machine(scratch: Path) -> dict[str, Any]:
    return {
        "platform": platform.platform(),
        "cpu_model": cpu_model(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "av": av.__version__,
        "ffmpeg": str(av.ffmpeg_version_info),
        "sqlite": sqlite3.sqlite_version,
        "scratch_filesystem": filesystem_of(scratch),
        "date_utc": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


def summarize(timings: list[Timing]) -> dict[str, Any]:
    return {
        "segments_per_s": round(statistics.median(t.segments_per_s for t in timings), 3),
        "mb_per_s": round(statistics.median(t.mb_per_s for t in timings), 1),
        "ms_per_segment": round(
            statistics.median(t.seconds * 1000 / t.segments for t in timings), 2
        ),
        "rounds_mb_per_s": [round(t.mb_per_s, 1) for t in timings],
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.ingest",
        description="Ingest throughput of the real pipeline against the hash-and-copy floor.",
    )
    parser.add_argument("--segments", type=int, help="segments per batch (default 16, quick 4)")
    parser.add_argument(
        "--quick", action="store_true", help="20 s segments, 4 of them unless --segments"
    )
    # Five rather than three: single rounds on this kind of shared VM vary by a third or more.
    parser.add_argument("--rounds", type=int, default=5, help="rounds of each side (default 5)")
    parser.add_argument(
        "--scratch", type=Path, help="where the temporary data dirs go (default: the system tmp)"
    )
    parser.add_argument(
        "--output",
        type=Path,
        help="results file (default bench/results/ingest.json; ingest-quick.json with --quick)",
    )
    args = parser.parse_args(argv)
    if args.segments is None:
        args.segments = 4 if args.quick else 16
    if args.segments < 1 or args.rounds < 1:
        parser.error("--segments and --rounds must be at least 1")
    if args.output is None:
        # A quick smoke run must not overwrite the figures of a full one.
        args.output = RESULTS_DIR / ("ingest-quick.json" if args.quick else "ingest.json")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    spec = SegmentSpec(seconds=20) if args.quick else SegmentSpec()
    distinct = min(args.segments, MAX_DISTINCT_FILES)
    sources = [cached_recording(spec, seed) for seed in range(distinct)]
    # Starts well in the past, whole seconds, so no segment is flagged as from the future.
    first_start = datetime.now(UTC).replace(microsecond=0) - timedelta(days=1)
    batch = plan_batch(sources, args.segments, first_start, spec.seconds)
    warmup = plan_batch(sources[:1], 1, first_start - timedelta(hours=1), spec.seconds)[0]
    scratch = (args.scratch or Path(tempfile.gettempdir())).resolve()
    scratch.mkdir(parents=True, exist_ok=True)
    workload = Workload(batch=batch, warmup=warmup, scratch=scratch)

    print(
        f"ingest: {len(batch)} segments ({len(sources)} distinct files) of {spec.seconds} s "
        f"{spec.width}x{spec.height} {spec.codec} {spec.bit_rate / 1e6:g} Mbit/s, "
        f"{workload.size / MB:.1f} MB per pass, {args.rounds} rounds, cache warm on both sides",
        flush=True,
    )
    # Other work on the machine skews every figure; the load shows how quiet it was.
    load_before = os.getloadavg()[0]
    floors: list[Timing] = []
    pipelines: list[Timing] = []
    for index in range(args.rounds):
        floor, pipe = run_round(index, workload)
        floors.append(floor)
        pipelines.append(pipe)
        print(
            f"  round {index + 1}: floor {floor.mb_per_s:7.1f} MB/s "
            f"({floor.segments_per_s:.2f} seg/s), pipeline {pipe.mb_per_s:7.1f} MB/s "
            f"({pipe.segments_per_s:.2f} seg/s)",
            flush=True,
        )
    stages = measure_stages(workload)
    load_after = os.getloadavg()[0]

    floor_summary, pipeline_summary = summarize(floors), summarize(pipelines)
    ratio = statistics.median(t.mb_per_s for t in pipelines) / statistics.median(
        t.mb_per_s for t in floors
    )
    results = {
        "benchmark": "ingest",
        "machine": machine(scratch),
        "workload": {
            "segments": len(batch),
            "distinct_files": len(sources),
            "segment_seconds": spec.seconds,
            "resolution": f"{spec.width}x{spec.height}",
            "fps": spec.fps,
            "codec": spec.codec,
            "bit_rate": spec.bit_rate,
            "container": "mp4",
            "bytes_per_pass": workload.size,
            "quick": args.quick,
        },
        "setup": {
            "database": "sqlite (embedded default)",
            "blob_store": "local (embedded default)",
            "health_checks": False,
            "cache": "warm, both sides",
            "rounds": args.rounds,
            "statistic": "median of rounds; floor and pipeline alternate, fresh data dir each",
            "warmup": "one untimed pipeline ingest per round before the clock starts",
            "floor": "read 1 MiB chunks, sha256, write copy, fsync file and directory, unlink",
            "load_average_1m": {"before": round(load_before, 2), "after": round(load_after, 2)},
        },
        "floor": floor_summary,
        "pipeline": pipeline_summary,
        "ratio": round(ratio, 3),
        # Each round's floor and pipeline ran back to back, so their own ratio shows the spread.
        "ratio_by_round": [
            round(pipe.mb_per_s / floor.mb_per_s, 3)
            for floor, pipe in zip(floors, pipelines, strict=True)
        ],
        "target": TARGET_RATIO,
        "met": ratio >= TARGET_RATIO,
        "pipeline_stages": {
            "ms_per_segment": stages,
            "method": "one extra pass, apart from the timed rounds, with timers around each step",
            "what": STAGES,
        },
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")

    print(
        f"floor:    {floor_summary['segments_per_s']:.2f} segments/s, "
        f"{floor_summary['mb_per_s']:.1f} MB/s"
    )
    print(
        f"pipeline: {pipeline_summary['segments_per_s']:.2f} segments/s, "
        f"{pipeline_summary['mb_per_s']:.1f} MB/s"
    )
    verdict = "met" if results["met"] else "NOT met"
    print(f"ratio pipeline/floor: {ratio:.3f} (target >= {TARGET_RATIO}: {verdict})")
    print("pipeline stages, ms/segment: " + ", ".join(f"{k} {v}" for k, v in stages.items()))
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
