"""Purge throughput: the real retention purge against the floor of reading the same rows and
unlinking the same files.

`python -m bench.purge` builds, untimed, a data dir on the embedded defaults (SQLite and the
local blob store) holding 100,000 expired segments with 1 KiB blobs: rows by bulk Core inserts,
blob files written straight into the store's layout (one directory per camera and day, keys as
ingest makes them). Then it times, in the same run:

- planning: `plan_purge` over all of them, against a bare SELECT of the same columns, filter and
  order through the sqlite3 module (no ORM, no type processing, no hold check);
- executing: `execute_purge` deleting all of them (tombstones, ledger entries, unlinks, fsyncs),
  against unlinking the same number of files in the same layout plus one fsync per directory.

Targets: planning at 20,000 segments/s or better, executing at 1,000 segments/s or better.
`--quick` does 10,000 segments and writes purge-quick.json; results go to bench/results/ with
the machine they came from.
"""

from __future__ import annotations

import argparse
import cProfile
import hashlib
import io
import json
import os
import pstats
import shutil
import sqlite3
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import insert, select

from bench.ingest import CAMERA, REGISTRY, machine
from services.context import Services
from services.registry import import_registry
from services.retention.purge import BATCH, execute_purge, plan_purge
from services.settings import load_settings
from storage.blobs import LocalBlobStore
from storage.keys import blob_key
from storage.models import Camera, Segment

BENCH_DIR = Path(__file__).resolve().parent
RESULTS_DIR = BENCH_DIR / "results"
BLOB_SIZE = 1024
SEGMENT = timedelta(minutes=10)
INSERT_CHUNK = 10_000
PLAN_REPEATS = 3
# A missed target is profiled on a dataset of this size, apart from the timed passes.
PROFILE_SEGMENTS = 10_000
PROFILE_TOP = 15
TARGET_PLAN_PER_S = 20_000
TARGET_EXECUTE_PER_S = 1_000
CAMERAS = (CAMERA, "BENCH0001-S1-R1-B")


@dataclass(frozen=True)
class Timing:
    seconds: float
    segments: int

    @property
    def segments_per_s(self) -> float:
        return self.segments / self.seconds

    def as_json(self) -> dict[str, float]:
        return {
            "seconds": round(self.seconds, 4),
            "segments_per_s": round(self.segments_per_s, 1),
            "us_per_segment": round(self.seconds * 1e6 / self.segments, 2),
        }


def open_services(data_dir: Path) -> Services:
    # Explicit Nones: an EXAMVAULT_DATABASE_URL or _STORAGE_URL in the environment (or .env)
    # must not quietly turn this into a PostgreSQL or S3 benchmark.
    settings = load_settings(
        data_dir=data_dir, database_url=None, storage_url=None, spool_dir=None, health_checks=False
    )
    services = Services.from_settings(settings)
    if not services.db.is_sqlite or not isinstance(services.store, LocalBlobStore):
        raise RuntimeError("the benchmark must run on the embedded SQLite + local blob store")
    text = json.dumps(REGISTRY)
    services.db.run_write(lambda session: import_registry(session, text, actor="bench"))
    return services


def _blob(key: str) -> bytes:
    # Distinct bytes per segment, as real evidence would be.
    return key.encode().ljust(BLOB_SIZE, b".")


def planned_keys(count: int) -> list[tuple[str, datetime]]:
    """(key, start) for `count` back-to-back segments, alternating between the two cameras, so
    the files spread over one directory per camera and day as a real store's do."""
    first = datetime(2021, 1, 4, 0, tzinfo=UTC)
    keys = []
    for number in range(count):
        camera = CAMERAS[number % 2]
        start = first + (number // 2) * SEGMENT
        placeholder = hashlib.sha256(f"{camera}{start}".encode()).hexdigest()
        keys.append((blob_key(camera, start, placeholder, "mp4"), start))
    return keys


def write_files(root: Path, keys: list[tuple[str, datetime]]) -> None:
    """Plain writes, no fsync (creation is not timed); one os.sync() afterwards."""
    made: set[Path] = set()
    for key, _ in keys:
        path = root / key
        if path.parent not in made:
            path.parent.mkdir(parents=True, exist_ok=True)
            made.add(path.parent)
        path.write_bytes(_blob(key))


def seed(services: Services, keys: list[tuple[str, datetime]], expired_by: datetime) -> None:
    with services.db.read() as session:
        cameras = dict(session.execute(select(Camera.code, Camera.id)).all())
    store = services.store
    assert isinstance(store, LocalBlobStore)
    write_files(store.root, keys)
    rows = []
    for number, (key, start) in enumerate(keys):
        rows.append(
            {
                "camera_id": cameras[key.split("/", 1)[0]],
                "starts_at": start,
                "ends_at": start + SEGMENT,
                "declared_start": start.isoformat(),
                "duration_seconds": SEGMENT.total_seconds(),
                "sha256": hashlib.sha256(_blob(key)).hexdigest(),
                "size_bytes": BLOB_SIZE,
                "blob_key": key,
                "container": "mov,mp4,m4a,3gp,3g2,mj2",
                "video_codec": "h264",
                "width": 1280,
                "height": 720,
                "frame_rate": 25.0,
                "keyframe_count": 60,
                "has_audio": False,
                "clock_flags": [],
                "source": "spool",
                "original_name": f"{start:%Y%m%dT%H%M%S}Z.mp4",
                "received_at": start + SEGMENT,
                # Spread over the past, as a store that was last purged a while ago would be.
                "expires_at": expired_by - timedelta(seconds=number),
                "purged_at": None,
            }
        )
    for begin in range(0, len(rows), INSERT_CHUNK):
        with services.db.write() as session:
            session.execute(insert(Segment), rows[begin : begin + INSERT_CHUNK])


def _sqlite_instant(moment: datetime) -> str:
    """How UTCDateTime stores an instant on SQLite: naive UTC text with microseconds."""
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


def time_plan(services: Services, as_of: datetime, expected: int) -> Timing:
    started = time.perf_counter()
    with services.db.read() as session:
        plan = plan_purge(session, services.settings, as_of)
    seconds = time.perf_counter() - started
    if len(plan.items) != expected:
        raise RuntimeError(f"the plan lists {len(plan.items)} segments, expected {expected}")
    return Timing(seconds, expected)


def time_select_floor(database: Path, as_of: datetime, expected: int) -> Timing:
    """The same columns, filter and order as plan_purge, straight from the sqlite3 module."""
    connection = sqlite3.connect(database)
    try:
        started = time.perf_counter()
        rows = connection.execute(
            "SELECT id, camera_id, blob_key, size_bytes, starts_at, ends_at, expires_at, sha256 "
            "FROM segments WHERE purged_at IS NULL AND expires_at <= ? "
            "ORDER BY expires_at, id",
            (_sqlite_instant(as_of),),
        ).fetchall()
        seconds = time.perf_counter() - started
    finally:
        connection.close()
    if len(rows) != expected:
        raise RuntimeError(f"the bare SELECT returned {len(rows)} rows, expected {expected}")
    return Timing(seconds, expected)


def time_unlink_floor(root: Path, keys: list[tuple[str, datetime]]) -> Timing:
    """Unlink every file, then fsync each directory once: what any durable delete must do."""
    started = time.perf_counter()
    parents: set[Path] = set()
    for key, _ in keys:
        path = root / key
        path.unlink()
        parents.add(path.parent)
    for parent in parents:
        fd = os.open(parent, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    return Timing(time.perf_counter() - started, len(keys))


def time_execute(services: Services, expected: int) -> Timing:
    started = time.perf_counter()
    result = execute_purge(services.db, services.store, services.settings, actor="bench")
    seconds = time.perf_counter() - started
    if result.purged != expected:
        raise RuntimeError(f"purged {result.purged} segments, expected {expected}")
    return Timing(seconds, expected)


def median_timing(measure: Callable[[], Timing], repeats: int) -> tuple[Timing, list[Timing]]:
    """The middle pass of `repeats` (an odd number), and all of them to show the spread."""
    timings = [measure() for _ in range(repeats)]
    return sorted(timings, key=lambda t: t.seconds)[len(timings) // 2], timings


def _top_entries(profile: cProfile.Profile, order: str) -> list[str]:
    text = io.StringIO()
    stats = pstats.Stats(profile, stream=text)
    stats.strip_dirs().sort_stats(order).print_stats(PROFILE_TOP)
    rows = text.getvalue().splitlines()
    header = next(i for i, row in enumerate(rows) if row.lstrip().startswith("ncalls"))
    return [row.rstrip() for row in rows[header : header + PROFILE_TOP + 1] if row.strip()]


def profile_phase(phase: str, scratch: Path, count: int) -> dict[str, Any]:
    """cProfile of one phase on a fresh dataset, apart from the timed passes (the profiler
    slows Python code several-fold but not system calls, so only the shares are meaningful)."""
    work = Path(tempfile.mkdtemp(prefix="bench-purge-profile-", dir=scratch))
    try:
        services = open_services(work / "data")
        seed(services, planned_keys(count), datetime.now(UTC) - timedelta(days=1))
        os.sync()
        profile = cProfile.Profile()
        started = time.perf_counter()
        profile.enable()
        if phase == "plan":
            time_plan(services, datetime.now(UTC), count)
        else:
            time_execute(services, count)
        profile.disable()
        seconds = time.perf_counter() - started
        services.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return {
        "phase": phase,
        "segments": count,
        "seconds_under_profiler": round(seconds, 2),
        "top_by_own_time": _top_entries(profile, "tottime"),
        "top_by_cumulative_time": _top_entries(profile, "cumulative"),
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.purge",
        description="Retention purge throughput (plan and execute) against their floors.",
    )
    parser.add_argument("--segments", type=int, help="expired segments (default 100000)")
    parser.add_argument("--quick", action="store_true", help="10000 segments unless --segments")
    parser.add_argument(
        "--scratch", type=Path, help="where the temporary data dir goes (default: the system tmp)"
    )
    parser.add_argument(
        "--output",
        type=Path,
        help="results file (default bench/results/purge.json; purge-quick.json with --quick)",
    )
    args = parser.parse_args(argv)
    if args.segments is None:
        args.segments = 10_000 if args.quick else 100_000
    if args.segments < 1:
        parser.error("--segments must be at least 1")
    if args.output is None:
        # A quick smoke run must not overwrite the figures of a full one.
        args.output = RESULTS_DIR / ("purge-quick.json" if args.quick else "purge.json")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    scratch = (args.scratch or Path(tempfile.gettempdir())).resolve()
    scratch.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="bench-purge-", dir=scratch))
    count = args.segments
    try:
        print(f"purge: creating {count} expired segments with {BLOB_SIZE}-byte blobs", flush=True)
        started = time.perf_counter()
        services = open_services(work / "data")
        keys = planned_keys(count)
        now = datetime.now(UTC)
        seed(services, keys, now - timedelta(days=1))
        floor_root = work / "floor"
        write_files(floor_root, keys)
        # Flush both trees now, so neither timed side pays for writing back the creation.
        os.sync()
        directories = len({key.rsplit("/", 1)[0] for key, _ in keys})
        print(f"  created in {time.perf_counter() - started:.1f} s", flush=True)

        # Other work on the machine skews every figure; the load shows how quiet it was.
        load_before = os.getloadavg()[0]
        database = services.settings.data_dir.resolve() / "examvault.sqlite3"
        as_of = datetime.now(UTC)
        # One untimed pass of each, so both sides read a warm page cache and compiled statements.
        time_select_floor(database, as_of, count)
        time_plan(services, as_of, count)
        select_floor, select_rounds = median_timing(
            lambda: time_select_floor(database, as_of, count), PLAN_REPEATS
        )
        plan, plan_rounds = median_timing(lambda: time_plan(services, as_of, count), PLAN_REPEATS)
        print(
            f"  plan:    {plan.segments_per_s:10.0f} seg/s   floor (bare SELECT) "
            f"{select_floor.segments_per_s:10.0f} seg/s",
            flush=True,
        )
        unlink_floor = time_unlink_floor(floor_root, keys)
        os.sync()
        execute = time_execute(services, count)
        os.sync()
        print(
            f"  execute: {execute.segments_per_s:10.0f} seg/s   floor (unlink + fsync/dir) "
            f"{unlink_floor.segments_per_s:10.0f} seg/s",
            flush=True,
        )
        load_after = os.getloadavg()[0]
        services.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)

    results: dict[str, Any] = {
        "benchmark": "purge",
        "machine": machine(scratch),
        "workload": {
            "segments": count,
            "blob_bytes": BLOB_SIZE,
            "directories": directories,
            "batch": BATCH,
            "holds": 0,
            "all_expired": True,
            "quick": args.quick,
        },
        "setup": {
            "database": "sqlite (embedded default, WAL, synchronous=FULL)",
            "blob_store": "local (embedded default)",
            "creation": "untimed: bulk Core inserts, blob files written without fsync, os.sync()",
            "plan_statistic": f"median of {PLAN_REPEATS} passes after one untimed warm-up",
            "execute_statistic": "one pass (it deletes what it measures)",
            "plan_floor": "sqlite3 module: SELECT the same 8 columns, same WHERE and ORDER BY, "
            "fetchall; no ORM, no type processing, no hold check",
            "execute_floor": "unlink the same number of files in the same layout, then one "
            "fsync per directory; run just before the purge, on its own copy of the tree",
            "load_average_1m": {"before": round(load_before, 2), "after": round(load_after, 2)},
        },
        "plan": {
            **plan.as_json(),
            "rounds_segments_per_s": [round(t.segments_per_s, 1) for t in plan_rounds],
            "floor": {
                **select_floor.as_json(),
                "rounds_segments_per_s": [round(t.segments_per_s, 1) for t in select_rounds],
            },
            "ratio_to_floor": round(plan.segments_per_s / select_floor.segments_per_s, 3),
            "target_segments_per_s": TARGET_PLAN_PER_S,
            "met": plan.segments_per_s >= TARGET_PLAN_PER_S,
        },
        "execute": {
            **execute.as_json(),
            "floor": unlink_floor.as_json(),
            "ratio_to_floor": round(execute.segments_per_s / unlink_floor.segments_per_s, 3),
            "target_segments_per_s": TARGET_EXECUTE_PER_S,
            "met": execute.segments_per_s >= TARGET_EXECUTE_PER_S,
        },
    }
    missed = [phase for phase in ("plan", "execute") if not results[phase]["met"]]
    if missed:
        print(
            f"profiling {', '.join(missed)} on {min(count, PROFILE_SEGMENTS)} segments", flush=True
        )
        results["profile"] = [
            profile_phase(phase, scratch, min(count, PROFILE_SEGMENTS)) for phase in missed
        ]
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    for phase in ("plan", "execute"):
        figures = results[phase]
        verdict = "met" if figures["met"] else "NOT met"
        print(
            f"{phase}: {figures['segments_per_s']:.0f} segments/s "
            f"(target >= {figures['target_segments_per_s']}: {verdict}), "
            f"{figures['ratio_to_floor']:.3f} of the floor"
        )
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
