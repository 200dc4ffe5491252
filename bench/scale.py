"""Scale: the same batch ingested by 1, 2 and 4 `examvault worker` processes on PostgreSQL.

`python -m bench.scale` encodes one batch of distinct real recordings with PyAV (default 192
segments of 10 s, 640x360 H.264 at 1 Mbit/s, about 1.2 MB each), then for each worker count:
a fresh PostgreSQL schema (its own, dropped afterwards) and data dir, `examvault db upgrade`,
the registry, the whole batch placed in the spool (settled), and K real `examvault worker
--queues ingest --concurrency 1` processes started (the job queue: a scanner in each worker
defers one job per file, any worker takes it). Health checks are off: this measures ingest
(probe, hash, store, index, ledger), not keyframe sampling, which runs on its own queue.

The batch is renamed into the spool once all K workers are registered in the queue (their
start-up is not ingest time). Throughput is segments over the time from the first
`segment.ingested` ledger entry to the last; scaling efficiency is (rate with K / rate with
1) / K. Every run must store each segment exactly once (rows and ledger entries counted) and pass
`examvault ledger verify`. Written to bench/results/scale.json with the machine: on its 2
cores, more than two CPU-bound workers cannot run at once, and PostgreSQL shares them.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import av

from bench.load import own_schema
from bench.machine import cpu_model, filesystem_of

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "scale.json"
DEFAULT_POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
CAMERAS = ("B1-S1-R1-F", "B1-S1-R1-B")
REGISTRY = {
    "institutions": [
        {
            "code": "B1",
            "name": "基准鉴定所",
            "district": "渝中区",
            "filing_expires": "2029-12-31",
            "sites": [
                {
                    "code": "B1-S1",
                    "address": "基准路1号",
                    "rooms": [
                        {
                            "code": "B1-S1-R1",
                            "kind": "theory",
                            "cameras": [
                                {"code": CAMERAS[0], "position": "front"},
                                {"code": CAMERAS[1], "position": "back"},
                            ],
                        }
                    ],
                }
            ],
        }
    ]
}


def encode_batch(folder: Path, count: int, seconds: float) -> list[tuple[str, Path, str]]:
    """(camera, spool file name, path) of `count` distinct recordings, each its own start."""
    from services.demo.footage import classroom_scene, write_recording

    folder.mkdir(parents=True, exist_ok=True)
    first = datetime(2026, 11, 24, 1, 0, tzinfo=UTC)
    batch = []
    for index in range(count):
        camera = CAMERAS[index % 2]
        start = first + timedelta(seconds=seconds * (index // 2))
        name = start.strftime("%Y%m%dT%H%M%SZ") + ".mp4"
        path = write_recording(
            folder / f"{index:04d}.mp4",
            seconds=seconds,
            width=640,
            height=360,
            fps=25,
            bit_rate=1_000_000,
            scene=classroom_scene(640, 360, seed=index),
        )
        batch.append((camera, path, name))
    return batch


def _env(data_dir: Path, url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EXAMVAULT_")}
    env.update(
        EXAMVAULT_DATA_DIR=str(data_dir),
        EXAMVAULT_DATABASE_URL=url,
        EXAMVAULT_HEALTH_CHECKS="false",
        EXAMVAULT_SPOOL_SETTLE_SECONDS="0.3",
        EXAMVAULT_SPOOL_RESCAN_SECONDS="2",
        PYTHONUNBUFFERED="1",
    )
    return env


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "services.cli", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def _ingested(url: str) -> tuple[int, int, list[datetime]]:
    """(segment rows, distinct (camera, start) rows, times of segment.ingested entries)."""
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            rows = int(connection.execute(text("SELECT count(*) FROM segments")).scalar() or 0)
            distinct = int(
                connection.execute(
                    text("SELECT count(DISTINCT (camera_id, starts_at)) FROM segments")
                ).scalar()
                or 0
            )
            times = [
                value
                for (value,) in connection.execute(
                    text(
                        "SELECT recorded_at FROM ledger_entries "
                        "WHERE action = 'segment.ingested' ORDER BY recorded_at"
                    )
                )
            ]
    finally:
        engine.dispose()
    return rows, distinct, times


def _registered_workers(url: str) -> int:
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            return int(
                connection.execute(text("SELECT count(*) FROM procrastinate_workers")).scalar() or 0
            )
    finally:
        engine.dispose()


def run_one(
    workers: int, batch: list[tuple[str, Path, str]], base_url: str, scratch: Path
) -> dict[str, Any]:
    with own_schema(base_url, "bench_scale") as (url, _version):
        data_dir = scratch / f"run-{workers}"
        env = _env(data_dir, url)
        for step in (("db", "upgrade"), ("registry", "import", str(scratch / "registry.json"))):
            done = _cli(env, *step)
            if done.returncode != 0:
                raise RuntimeError(f"{' '.join(step)} failed: {done.stderr[-2000:]}")
        # The batch waits on the spool's filesystem, outside the spool, until every worker is
        # up (registered in the queue): start-up (imports, on a loaded machine many seconds)
        # is not ingest time. Then each file is renamed in, as a camera host completes a file.
        waiting = data_dir / "batch"
        waiting.mkdir(parents=True)
        settled = time.time() - 60
        placed = []
        for index, (camera, path, name) in enumerate(batch):
            held = waiting / f"{index:04d}.mp4"
            shutil.copyfile(path, held)
            os.utime(held, (settled, settled))
            target = data_dir / "spool" / camera / name
            target.parent.mkdir(parents=True, exist_ok=True)
            placed.append((held, target))
        logs = [data_dir / f"worker-{index}.log" for index in range(workers)]
        processes = []
        cpu_before = os.times()
        for log in logs:
            with log.open("ab") as sink:
                processes.append(
                    subprocess.Popen(
                        [sys.executable, "-m", "services.cli", "worker", "--queues", "ingest",
                         "--concurrency", "1"],
                        cwd=ROOT, env=env, stdout=sink, stderr=subprocess.STDOUT,
                    )
                )  # fmt: skip
        started = time.monotonic()
        while _registered_workers(url) < workers:
            if time.monotonic() - started > 300 or any(p.poll() is not None for p in processes):
                raise RuntimeError("the workers did not start: " + logs[0].read_text()[-2000:])
            time.sleep(0.2)
        start_up = time.monotonic() - started
        began = time.monotonic()
        for held, target in placed:
            os.rename(held, target)
        try:
            deadline = began + 1800
            while True:
                rows, distinct, times = _ingested(url)
                if rows >= len(batch):
                    break
                if time.monotonic() > deadline or any(p.poll() is not None for p in processes):
                    raise RuntimeError(
                        f"{workers} worker(s): {rows}/{len(batch)} stored; "
                        + "".join(log.read_text(errors="replace")[-1500:] for log in logs)
                    )
                time.sleep(0.5)
            wall = time.monotonic() - began
        finally:
            for process in processes:
                process.send_signal(signal.SIGTERM)
            for process in processes:
                try:
                    process.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    process.kill()
        children = os.times()
        verified = _cli(env, "ledger", "verify")
        rows, distinct, times = _ingested(url)
        span = (times[-1] - times[0]).total_seconds()
        return {
            "workers": workers,
            "segments": len(batch),
            "stored_rows": rows,
            "stored_once": rows == distinct == len(times) == len(batch),
            "ledger_verifies": verified.returncode == 0,
            "first_to_last_seconds": round(span, 2),
            "segments_per_s": round((len(batch) - 1) / span, 3),
            "fed_to_last_seconds": round(wall, 2),
            "workers_start_up_seconds": round(start_up, 2),
            "workers_cpu_seconds": round(
                (children.children_user - cpu_before.children_user)
                + (children.children_system - cpu_before.children_system),
                1,
            ),
        }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.scale", description=__doc__)
    parser.add_argument("--segments", type=int, default=192, help="segments in the batch")
    parser.add_argument("--segment-seconds", type=float, default=10.0)
    parser.add_argument("--workers", default="1,2,4", help="worker counts, comma-separated")
    parser.add_argument(
        "--postgres",
        default=os.environ.get("EXAMVAULT_TEST_POSTGRES_URL", DEFAULT_POSTGRES),
        help="PostgreSQL to run on (a schema of its own per run, dropped afterwards)",
    )
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    counts = [int(value) for value in args.workers.split(",")]
    with tempfile.TemporaryDirectory(prefix="examvault-scale-") as tmp:
        scratch = Path(tmp)
        (scratch / "registry.json").write_text(json.dumps(REGISTRY), encoding="utf-8")
        batch = encode_batch(scratch / "videos", args.segments, args.segment_seconds)
        batch_bytes = sum(path.stat().st_size for _camera, path, _name in batch)
        digest = hashlib.sha256()
        for _camera, path, _name in batch:
            digest.update(path.read_bytes())
        load_before = [round(value, 2) for value in os.getloadavg()]
        runs = [run_one(count, batch, args.postgres, scratch) for count in counts]
        load_after = [round(value, 2) for value in os.getloadavg()]
        with own_schema(args.postgres, "bench_scale") as (_url, version):
            postgres_version = version
        filesystem = filesystem_of(scratch)
    base = next(run for run in runs if run["workers"] == counts[0])
    for run in runs:
        speedup = run["segments_per_s"] / base["segments_per_s"]
        run["speedup"] = round(speedup, 3)
        run["scaling_efficiency"] = round(speedup / (run["workers"] / base["workers"]), 3)
    document = {
        "benchmark": "scale",
        "machine": {
            "platform": platform.platform(),
            "cpu_model": cpu_model(),
            "cores": os.cpu_count(),
            "python": platform.python_version(),
            "av": av.__version__,
            "postgresql": postgres_version,
            "scratch_filesystem": filesystem,
            "date_utc": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        },
        "workload": {
            "segments": args.segments,
            "segment_seconds": args.segment_seconds,
            "resolution": "640x360",
            "fps": 25,
            "codec": "h264",
            "bit_rate": 1_000_000,
            "batch_bytes": batch_bytes,
            "batch_sha256": digest.hexdigest(),
        },
        "setup": {
            "database": f"postgresql {postgres_version} on 127.0.0.1 (a schema per run)",
            "blob_store": "local (embedded default), one data dir shared by the workers",
            "workers": "`examvault worker --queues ingest --concurrency 1`, one process each",
            "feed": "the whole batch renamed into the spool once every worker is registered",
            "health_checks": False,
            "statistic": "one run per worker count; first to last segment.ingested entry",
            "load_average_1m": {"before": load_before[0], "after": load_after[0]},
        },
        "runs": runs,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(document, ensure_ascii=False, indent=1) + "\n")
    for run in runs:
        print(
            f"{run['workers']} worker(s): {run['segments_per_s']} segments/s, speedup "
            f"{run['speedup']}, efficiency {run['scaling_efficiency']}, stored once "
            f"{run['stored_once']}, ledger verifies {run['ledger_verifies']}"
        )
    print(f"written to {args.output}")
    ok = all(run["stored_once"] and run["ledger_verifies"] for run in runs)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
