"""Bytes per row on PostgreSQL, for docs/operations.md's sizing: what one ingested segment costs
the database, measured instead of guessed from column widths.

`python -m bench.rowsize [--segments N]` makes a fresh schema on EXAMVAULT_BENCH_POSTGRES_URL
(or EXAMVAULT_TEST_POSTGRES_URL), migrates it and writes rows shaped like a city's: N 5-minute
720p segments with realistic codes, keys and hashes; one `segment.ingested` ledger entry per
segment with the pipeline's details, appended through `storage.ledger.append_many` (so the
stored tree's nodes come with them); one health sample per 2 s keyframe of 2,000 of the
segments; one tombstone and one `segment.purged` entry per segment of a tenth of them. After
VACUUM ANALYZE it reports, per table, rows and `pg_total_relation_size` (heap, indexes, TOAST)
divided by the rows. The schema is dropped at the end. Results: bench/results/rowsize.json.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import create_engine, insert, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from services.registry import import_registry
from storage import ledger
from storage.db import Database
from storage.keys import blob_key
from storage.models import Camera, HealthSample, PurgeRun, Segment, Tombstone

RESULTS = Path(__file__).with_name("results") / "rowsize.json"
SEGMENT = timedelta(minutes=5)
BYTES_PER_SEGMENT = 75_000_000  # 5 minutes at 2 Mbit/s
KEYFRAME_SECONDS = 2
TABLES = (
    "segments",
    "ledger_entries",
    "ledger_nodes",
    "health_samples",
    "tombstones",
)


def _registry() -> str:
    cameras = [
        {"code": f"CQJD0001-S1-R{room:03d}-{side}", "position": position}
        for room in range(1, 11)
        for side, position in (("F", "front"), ("B", "back"))
    ]
    rooms = [
        {
            "code": f"CQJD0001-S1-R{room:03d}",
            "kind": "theory",
            "cameras": [c for c in cameras if c["code"].startswith(f"CQJD0001-S1-R{room:03d}-")],
        }
        for room in range(1, 11)
    ]
    return json.dumps(
        {
            "institutions": [
                {
                    "code": "CQJD0001",
                    "name": "重庆市示例职业技能鉴定所",
                    "district": "渝中区",
                    "filing_expires": "2028-06-30",
                    "sites": [
                        {"code": "CQJD0001-S1", "address": "渝中区示例路1号", "rooms": rooms}
                    ],
                }
            ]
        },
        ensure_ascii=False,
    )


def _fill(db: Database, segments: int) -> None:
    db.run_write(lambda session: import_registry(session, _registry(), actor="bench"))
    with db.read() as session:
        cameras = list(session.execute(select(Camera.id, Camera.code)))
    start = datetime(2026, 11, 24, 1, 0, tzinfo=UTC)
    batch = 1000
    made = 0
    while made < segments:
        rows: list[dict[str, object]] = []
        events: list[ledger.Event] = []
        for index in range(made, min(made + batch, segments)):
            camera_id, code = cameras[index % len(cameras)]
            begins = start + SEGMENT * (index // len(cameras))
            sha = hashlib.sha256(f"{index}".encode()).hexdigest()
            key = blob_key(code, begins, sha, "mp4")
            expires = begins.replace(year=begins.year + 3) + timedelta(hours=16)
            name = f"{begins:%Y%m%dT%H%M%S}+0800.mp4"
            rows.append(
                {
                    "camera_id": camera_id,
                    "starts_at": begins,
                    "ends_at": begins + SEGMENT,
                    "declared_start": begins.isoformat(),
                    "duration_seconds": 300.0,
                    "sha256": sha,
                    "size_bytes": BYTES_PER_SEGMENT,
                    "blob_key": key,
                    "container": "mov,mp4,m4a,3gp,3g2,mj2",
                    "video_codec": "h264",
                    "width": 1280,
                    "height": 720,
                    "frame_rate": 25.0,
                    "keyframe_count": 150,
                    "has_audio": False,
                    "clock_flags": [],
                    "source": "http",
                    "original_name": name,
                    "received_at": begins + SEGMENT + timedelta(seconds=20),
                    "expires_at": expires,
                    "purged_at": None,
                    "health_attempts": 0,
                }
            )
            events.append(
                ledger.Event(
                    actor="camera_host:CQJD0001-S1-host",
                    action="segment.ingested",
                    subject_type="segment",
                    subject_id=index + 1,
                    details={
                        "camera": code,
                        "start": begins.isoformat(),
                        "end": (begins + SEGMENT).isoformat(),
                        "declared_start": begins.isoformat(),
                        "duration_seconds": 300.0,
                        "sha256": sha,
                        "size": BYTES_PER_SEGMENT,
                        "key": key,
                        "source": "http",
                        "original_name": name,
                        "container": "mov,mp4,m4a,3gp,3g2,mj2",
                        "video_codec": "h264",
                        "expires_at": expires.isoformat(),
                        "object_lock_until": expires.isoformat(),
                        "clock_flags": [],
                    },
                )
            )

        def write(
            session: Session,
            rows: list[dict[str, object]] = rows,
            events: list[ledger.Event] = events,
        ) -> None:
            session.execute(insert(Segment), rows)
            ledger.append_many(session, events)

        db.run_write(write)
        made += len(rows)


def _fill_health(db: Database, segments: int) -> None:
    with db.read() as session:
        found = list(
            session.execute(
                select(Segment.id, Segment.camera_id, Segment.starts_at).limit(segments)
            )
        )
    per_segment = int(SEGMENT.total_seconds()) // KEYFRAME_SECONDS
    for first in range(0, len(found), 100):
        rows = [
            {
                "segment_id": segment_id,
                "camera_id": camera_id,
                "at": starts_at + timedelta(seconds=KEYFRAME_SECONDS * k),
                "mean_luma": 112.5 + k % 7,
                "dark_share": 0.02,
                "motion": 1.5,
                "sharpness": 210.0,
                "reference_similarity": 0.91,
            }
            for segment_id, camera_id, starts_at in found[first : first + 100]
            for k in range(per_segment)
        ]
        db.run_write(lambda session, rows=rows: session.execute(insert(HealthSample), rows))


def _fill_purge(db: Database, segments: int) -> None:
    run_id = str(uuid.uuid4())
    now = datetime.now(UTC)

    def write(session: Session) -> None:
        session.add(
            PurgeRun(
                id=run_id,
                as_of=now,
                started_at=now,
                finished_at=now,
                actor="bench",
                planned=segments,
                planned_bytes=segments * BYTES_PER_SEGMENT,
                status="completed",
            )
        )
        rows = session.execute(select(Segment).limit(segments)).scalars().all()
        session.execute(
            insert(Tombstone),
            [
                {
                    "segment_id": row.id,
                    "run_id": run_id,
                    "sha256": row.sha256,
                    "size_bytes": row.size_bytes,
                    "blob_key": row.blob_key,
                    "starts_at": row.starts_at,
                    "ends_at": row.ends_at,
                    "expires_at": row.expires_at,
                    "purged_at": now,
                    "reason": "retention expired",
                    "blob_deleted_at": now,
                }
                for row in rows
            ],
        )
        ledger.append_many(
            session,
            [
                ledger.Event(
                    actor="retention",
                    action="segment.purged",
                    subject_type="segment",
                    subject_id=row.id,
                    details={
                        "run_id": run_id,
                        "sha256": row.sha256,
                        "size": row.size_bytes,
                        "key": row.blob_key,
                        "expires_at": row.expires_at.isoformat(),
                        "reason": "retention expired",
                    },
                )
                for row in rows
            ],
        )

    db.run_write(write)


def _sizes(db: Database) -> dict[str, dict[str, float]]:
    with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.execute(text("VACUUM ANALYZE"))
        sizes = {}
        for table in TABLES:
            rows = connection.scalar(text(f"SELECT count(*) FROM {table}"))
            total = connection.scalar(text(f"SELECT pg_total_relation_size('{table}')"))
            heap = connection.scalar(text(f"SELECT pg_relation_size('{table}')"))
            sizes[table] = {
                "rows": rows,
                "total_bytes": total,
                "bytes_per_row": round(total / rows, 1) if rows else 0.0,
                "heap_bytes_per_row": round(heap / rows, 1) if rows else 0.0,
            }
    return sizes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--segments", type=int, default=50_000)
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    base = os.environ.get("EXAMVAULT_BENCH_POSTGRES_URL") or os.environ.get(
        "EXAMVAULT_TEST_POSTGRES_URL"
    )
    if not base:
        print("set EXAMVAULT_BENCH_POSTGRES_URL to a PostgreSQL URL", file=sys.stderr)
        return 2
    schema = f"rowsize_{uuid.uuid4().hex[:8]}"
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    url = make_url(base).update_query_dict({"options": f"-csearch_path={schema}"})
    db = Database(url.render_as_string(hide_password=False))
    try:
        db.upgrade()
        _fill(db, args.segments)
        _fill_health(db, min(2000, args.segments))
        _fill_purge(db, args.segments // 10)
        sizes = _sizes(db)
        with db.read() as session:
            version = session.scalar(text("SHOW server_version"))
    finally:
        db.dispose()
        with admin.connect() as connection:
            connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()
    result = {
        "what": "PostgreSQL bytes per row (heap + indexes + TOAST) after VACUUM ANALYZE",
        "segments": args.segments,
        "health_samples_per_segment": int(SEGMENT.total_seconds()) // KEYFRAME_SECONDS,
        "postgresql": version,
        "python": platform.python_version(),
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "tables": sizes,
    }
    args.output.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
