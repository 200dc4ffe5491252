"""The day's sittings list (the console's day view) against the number of sittings.

`python -m bench.console` seeds, untimed and in bulk, a city on each database: 20 districts,
200 institutions (one site, five rooms of two cameras each), and 10^4 then 10^5 sittings: 2,000
on the benchmarked day (2026-11-20, two per room), the rest spread over the other days of 2026.
Verdicts and gap summaries are stored as the verdict sweep stores them (70 % complete, 15 %
incomplete with one to three gaps, 5 % missing, 10 % pending); on the benchmarked day one
sitting in ten has picture problems (a segment with health flags), one in twenty an open
finding and one in a hundred a hold, so every row's at-a-glance reads find something.

It then times `GET /api/v1/sittings` through the ASGI app (in process, httpx's TestClient: no
network, the whole FastAPI stack, auth included) with the filter combinations and pages the
page sends, as the admin, a district officer and an institution, each `--rounds` times after a
warm-up, and reports p50/p99 per call and over all list calls. Also timed, outside the target:
the filter choices and the whole day's CSV (2,000 rows, streamed).

Target: the list under 300 ms p99 at 10^5 sittings on both databases. Results go to
bench/results/console.json with the machine they came from.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import sqlite3
import statistics
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import create_engine, insert, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from bench.machine import cpu_model, filesystem_of
from services.access.people import create_user
from services.access.tokens import create_token
from services.api.app import create_app
from services.context import Services
from services.settings import Settings
from storage.models import (
    Camera,
    Finding,
    HealthFlag,
    Hold,
    HoldScopeRecord,
    Institution,
    Room,
    Segment,
    Site,
    Sitting,
)

BENCH_DIR = Path(__file__).resolve().parent
RESULTS_DIR = BENCH_DIR / "results"
CACHE_DIR = BENCH_DIR / ".cache" / "console"
SIZES = (10_000, 100_000)
DISTRICTS = [
    "渝中区",
    "大渡口区",
    "江北区",
    "沙坪坝区",
    "九龙坡区",
    "南岸区",
    "北碚区",
    "渝北区",
    "巴南区",
    "涪陵区",
    "綦江区",
    "大足区",
    "黔江区",
    "长寿区",
    "江津区",
    "合川区",
    "永川区",
    "南川区",
    "璧山区",
    "铜梁区",
]
INSTITUTIONS_PER_DISTRICT = 10
ROOMS_PER_SITE = 5
DAY = date(2026, 11, 20)
ON_DAY = 2_000
OCCUPATIONS = ("电工", "焊工", "育婴员", "中式烹调师", "保育员", "汽车维修工", "美容师", "车工")
LEVELS = ("五级", "四级", "三级", "二级")
ROUNDS = 100
WARMUP = 5
TARGET_P99_MS = 300.0
PG_SCHEMA = "bench_console"
PASSWORD = "bench console password"
_SHANGHAI = timedelta(hours=8)


def log(message: str, *args: object) -> None:
    print(f"[{datetime.now(UTC):%H:%M:%S}] " + message % args, file=sys.stderr, flush=True)


def _pg_url(base: str) -> str:
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'DROP SCHEMA IF EXISTS "{PG_SCHEMA}" CASCADE'))
        connection.execute(text(f'CREATE SCHEMA "{PG_SCHEMA}"'))
    admin.dispose()
    url = make_url(base).update_query_dict({"options": f"-csearch_path={PG_SCHEMA}"})
    return url.render_as_string(hide_password=False)


def _local(day: date, hour: int, minute: int = 0) -> datetime:
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=UTC) - _SHANGHAI


def _summary(cameras: list[tuple[str, str]], status: str, start: datetime, end: datetime, rng):  # type: ignore[no-untyped-def]
    seconds = (end - start).total_seconds()
    out = []
    for index, (code, position) in enumerate(cameras):
        gaps: list[list[str]] = []
        if status == "missing" and index == 1:
            gaps = [[start.isoformat(), end.isoformat(), "not_received"]]
        elif status in ("incomplete", "pending") and (index == 1 or rng.random() < 0.3):
            cursor = start
            for _ in range(rng.randint(1, 3)):
                gap_start = cursor + timedelta(minutes=rng.randint(5, 30))
                gap_end = gap_start + timedelta(seconds=rng.randint(30, 300))
                if gap_end >= end:
                    break
                gaps.append([gap_start.isoformat(), gap_end.isoformat(), "not_received"])
                cursor = gap_end
        missing = (
            seconds
            if status == "missing" and index == 1
            else sum(
                (datetime.fromisoformat(b) - datetime.fromisoformat(a)).total_seconds()
                for a, b, _ in gaps
            )
        )
        out.append(
            {
                "camera": code,
                "position": position,
                "missing_seconds": missing,
                "has_footage": not (status == "missing" and index == 1),
                "gap_count": len(gaps),
                "gaps": gaps,
            }
        )
    return {"cameras": out}


def seed(db_session: Session, size: int, rng: random.Random) -> dict[str, Any]:
    """The city and `size` sittings, in bulk; returns what the timed calls ask for."""
    now = datetime.now(UTC)
    institutions, sites, rooms, cameras = [], [], [], []
    room_cameras: dict[int, list[tuple[int, str, str]]] = {}
    room_id = camera_id = 0
    for d, district in enumerate(DISTRICTS):
        for i in range(INSTITUTIONS_PER_DISTRICT):
            inst_id = d * INSTITUTIONS_PER_DISTRICT + i + 1
            code = f"CQJD{inst_id:04d}"
            institutions.append(
                {
                    "id": inst_id,
                    "code": code,
                    "name": f"{district}第{i + 1}职业技能鉴定所",
                    "district": district,
                }
            )
            sites.append(
                {
                    "id": inst_id,
                    "code": f"{code}-S1",
                    "institution_id": inst_id,
                    "address": f"{district}示例路{i + 1}号",
                }
            )
            for r in range(ROOMS_PER_SITE):
                room_id += 1
                kind = "theory" if r < 3 else "practical"
                rooms.append(
                    {
                        "id": room_id,
                        "code": f"{code}-S1-R{101 + r}",
                        "site_id": inst_id,
                        "kind": kind,
                        "name": f"{101 + r} {'理论' if kind == 'theory' else '实操'}考场",
                    }
                )
                room_cameras[room_id] = []
                for position, suffix in (("front", "F"), ("back", "B")):
                    camera_id += 1
                    camera_code = f"{code}-S1-R{101 + r}-{suffix}"
                    cameras.append(
                        {
                            "id": camera_id,
                            "code": camera_code,
                            "room_id": room_id,
                            "position": position,
                            "active_from": None,
                            "retired_at": None,
                        }
                    )
                    room_cameras[room_id].append((camera_id, camera_code, position))
    db_session.execute(insert(Institution), institutions)
    db_session.execute(insert(Site), sites)
    db_session.execute(insert(Room), rooms)
    db_session.execute(insert(Camera), cameras)

    other_days = [DAY + timedelta(days=n) for n in range(-323, 41) if n != 0]
    statuses = ["complete"] * 70 + ["incomplete"] * 15 + ["missing"] * 5 + ["pending"] * 10
    room_ids = list(room_cameras)
    batch: list[dict[str, Any]] = []
    day_sittings: list[tuple[int, int, datetime, datetime]] = []
    for n in range(size):
        sitting_id = n + 1
        if n < ON_DAY:
            room = room_ids[n % len(room_ids)]
            day, hour = DAY, 9 if n < len(room_ids) else 14
        else:
            room = rng.choice(room_ids)
            day, hour = rng.choice(other_days), rng.choice((8, 9, 10, 13, 14, 15))
        start = _local(day, hour, rng.choice((0, 30)))
        end = start + timedelta(minutes=rng.choice((60, 90, 120)))
        status = rng.choice(statuses)
        if n < ON_DAY:
            day_sittings.append((sitting_id, room, start, end))
        batch.append(
            {
                "id": sitting_id,
                "code": f"CQ{day:%Y%m%d}-{sitting_id:06d}",
                "room_id": room,
                "kind": "theory" if rng.random() < 0.6 else "practical",
                "occupation": rng.choice(OCCUPATIONS),
                "level": rng.choice(LEVELS),
                "starts_at": start,
                "ends_at": end,
                "coverage_status": status,
                "coverage_checked_at": now,
                "coverage_summary": _summary(
                    [(code, position) for _, code, position in room_cameras[room]],
                    status,
                    start,
                    end,
                    rng,
                ),
            }
        )
        if len(batch) == 5_000:
            db_session.execute(insert(Sitting), batch)
            batch = []
    if batch:
        db_session.execute(insert(Sitting), batch)

    segments, flags, findings, holds, scopes = [], [], [], [], []
    for index, (sitting_id, room, start, end) in enumerate(day_sittings):
        front_id, _front_code, _ = room_cameras[room][0]
        if index % 10 == 0:
            segment_id = len(segments) + 1
            segments.append(
                {
                    "id": segment_id,
                    "camera_id": front_id,
                    "starts_at": start,
                    "ends_at": start + timedelta(minutes=5),
                    "declared_start": start.isoformat(),
                    "duration_seconds": 300.0,
                    "sha256": f"{segment_id:064x}",
                    "size_bytes": 1,
                    "blob_key": f"bench/{segment_id}",
                    "container": "mp4",
                    "video_codec": "h264",
                    "width": 320,
                    "height": 240,
                    "frame_rate": 10.0,
                    "keyframe_count": 60,
                    "has_audio": False,
                    "clock_flags": [],
                    "source": "http",
                    "original_name": "x.mp4",
                    "received_at": now,
                    "expires_at": now + timedelta(days=1200),
                    "purged_at": None,
                    "health_checked_at": now,
                }
            )
            flags.append(
                {
                    "segment_id": segment_id,
                    "camera_id": front_id,
                    "starts_at": start,
                    "ends_at": start + timedelta(seconds=40),
                    "kind": rng.choice(("black", "frozen", "covered")),
                }
            )
        if index % 20 == 0:
            findings.append(
                {
                    "sitting_id": sitting_id,
                    "camera_id": front_id,
                    "category": "other",
                    "observed_from": start + timedelta(minutes=3),
                    "observed_until": None,
                    "text": "考生离场",
                    "author_user_id": None,
                    "author": "supervisor:bench",
                    "created_at": now,
                    "updated_at": now,
                    "revision": 1,
                    "withdrawn_at": None,
                }
            )
        if index % 100 == 0:
            hold_id = len(holds) + 1
            holds.append(
                {
                    "id": hold_id,
                    "scope": "sitting",
                    "sitting_id": sitting_id,
                    "reason": "投诉",
                    "placed_by": "admin:bench",
                    "placed_at": now,
                }
            )
            for camera, _, _ in room_cameras[room]:
                scopes.append(
                    {
                        "hold_id": hold_id,
                        "camera_id": camera,
                        "starts_at": start,
                        "ends_at": end,
                        "cause": "placed",
                        "added_at": now,
                    }
                )
    for model, rows in (
        (Segment, segments),
        (HealthFlag, flags),
        (Finding, findings),
        (Hold, holds),
        (HoldScopeRecord, scopes),
    ):
        if rows:
            db_session.execute(insert(model), rows)
    inst = institutions[0]
    return {
        "district": inst["district"],
        "institution": inst["code"],
        "other_institution": institutions[57]["code"],
        "site": sites[123]["code"],
        "cameras_flagged": len(flags),
        "findings": len(findings),
        "holds": len(holds),
    }


@contextmanager
def city(
    kind: str, size: int, postgres_url: str | None
) -> Iterator[tuple[Services, dict[str, Any]]]:
    home = CACHE_DIR / kind / str(size)
    shutil.rmtree(home, ignore_errors=True)
    home.mkdir(parents=True)
    url = (
        f"sqlite:///{home / 'console.sqlite3'}" if kind == "sqlite" else _pg_url(postgres_url or "")
    )
    settings = Settings(data_dir=home, database_url=url, health_checks=False)
    services = Services.from_settings(settings)
    rng = random.Random(size)
    started = time.perf_counter()
    with services.db.write() as session:
        facts = seed(session, size, rng)
    with services.db.write() as session:
        session.execute(text("ANALYZE"))
    facts["seed_seconds"] = round(time.perf_counter() - started, 1)
    try:
        yield services, facts
    finally:
        services.close()


def _people(services: Services, facts: dict[str, Any]) -> dict[str, str]:
    def work(session: Session) -> str:
        _, token = create_token(session, role="admin", name="bench", actor="bench")
        create_user(
            session,
            name="district",
            role="district_officer",
            password=PASSWORD,
            district=facts["district"],
            actor="bench",
        )
        create_user(
            session,
            name="institution",
            role="institution",
            password=PASSWORD,
            institution_code=facts["institution"],
            actor="bench",
        )
        return token

    return {"admin": services.db.run_write(work)}


def _calls(facts: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    day = DAY.isoformat()
    week = {"from": (DAY - timedelta(days=6)).isoformat(), "to": day}
    return [
        ("admin: the day, first page by time", "admin", {"date": day, "sort": "time", "limit": 50}),
        (
            "admin: the day, last page by verdict",
            "admin",
            {"date": day, "sort": "verdict", "limit": 50, "offset": ON_DAY - 50},
        ),
        (
            "admin: the day, one district, incomplete",
            "admin",
            {"date": day, "district": facts["district"], "status": "incomplete", "limit": 50},
        ),
        (
            "admin: the day, one institution, theory rooms",
            "admin",
            {"date": day, "institution": facts["other_institution"], "room_kind": "theory"},
        ),
        (
            "admin: the day, one site, one occupation",
            "admin",
            {"date": day, "site": facts["site"], "occupation": "电工"},
        ),
        (
            "admin: a week, by institution, page 11",
            "admin",
            {**week, "sort": "institution", "limit": 50, "offset": 500},
        ),
        ("admin: no dates (the list before the day view)", "admin", {}),
        ("district officer: the day", "district", {"date": day, "sort": "time", "limit": 50}),
        (
            "district officer: forged other district",
            "district",
            {"date": day, "district": "江北区", "limit": 50},
        ),
        ("institution: the day", "institution", {"date": day, "sort": "time", "limit": 50}),
    ]


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(share * (len(ordered) - 1))))
    return ordered[index]


def _time(
    client: TestClient, url: str, headers: dict[str, str], params: dict[str, Any], rounds: int
) -> list[float]:
    for _ in range(WARMUP):
        assert client.get(url, headers=headers, params=params).status_code == 200
    timings = []
    for _ in range(rounds):
        started = time.perf_counter()
        response = client.get(url, headers=headers, params=params)
        _ = response.content
        timings.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200, response.text
    return timings


def measure(services: Services, facts: dict[str, Any], rounds: int) -> dict[str, Any]:
    tokens = _people(services, facts)
    out: dict[str, Any] = {"calls": {}}
    every: list[float] = []
    with TestClient(create_app(services)) as client:
        auth = {"admin": {"Authorization": f"Bearer {tokens['admin']}"}}
        for name in ("district", "institution"):
            answer = client.post(
                "/api/v1/auth/token", data={"username": name, "password": PASSWORD}
            )
            auth[name] = {"Authorization": f"Bearer {answer.json()['access_token']}"}
        day_view: list[float] = []
        for label, who, params in _calls(facts):
            timings = _time(client, "/api/v1/sittings", auth[who], params, rounds)
            every.extend(timings)
            # What the page sends always has dates; the no-dates call is the older clients'.
            if params:
                day_view.extend(timings)
            body = client.get("/api/v1/sittings", headers=auth[who], params=params).json()
            out["calls"][label] = {
                "params": params,
                "rows": len(body["sittings"]),
                "total": body["total"],
                "p50_ms": round(statistics.median(timings), 1),
                "p99_ms": round(_percentile(timings, 0.99), 1),
                "max_ms": round(max(timings), 1),
            }
            log(
                "  %-50s total %6d  p50 %6.1f  p99 %6.1f ms",
                label,
                body["total"],
                out["calls"][label]["p50_ms"],
                out["calls"][label]["p99_ms"],
            )
        out["list_p50_ms"] = round(statistics.median(every), 1)
        out["list_p99_ms"] = round(_percentile(every, 0.99), 1)
        out["list_calls"] = len(every)
        out["day_view_p50_ms"] = round(statistics.median(day_view), 1)
        out["day_view_p99_ms"] = round(_percentile(day_view, 0.99), 1)
        choices = _time(
            client,
            "/api/v1/sitting-choices",
            auth["admin"],
            {"date": DAY.isoformat()},
            max(10, rounds // 5),
        )
        out["choices_p50_ms"] = round(statistics.median(choices), 1)
        out["choices_p99_ms"] = round(_percentile(choices, 0.99), 1)
        csv_timings = _time(
            client, "/api/v1/sittings", auth["admin"], {"date": DAY.isoformat(), "format": "csv"}, 5
        )
        out["csv_day_2000_rows_median_ms"] = round(statistics.median(csv_timings), 1)
    return out


def machine(scratch: Path) -> dict[str, Any]:
    return {
        "platform": platform.platform(),
        "cpu_model": cpu_model(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "scratch_filesystem": filesystem_of(scratch),
        "date_utc": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.console", description=__doc__)
    parser.add_argument("--sizes", default=",".join(str(size) for size in SIZES))
    parser.add_argument("--databases", default="sqlite,postgresql")
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get(
            "EXAMVAULT_BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
        ),
    )
    parser.add_argument("--rounds", type=int, default=ROUNDS)
    parser.add_argument("--output", type=Path, default=RESULTS_DIR / "console.json")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    sizes = [int(size) for size in args.sizes.split(",")]
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {
        "benchmark": "console",
        "machine": machine(CACHE_DIR),
        "load_average_before": round(os.getloadavg()[0], 2),
        "workload": {
            "sizes": sizes,
            "districts": len(DISTRICTS),
            "institutions": len(DISTRICTS) * INSTITUTIONS_PER_DISTRICT,
            "rooms": len(DISTRICTS) * INSTITUTIONS_PER_DISTRICT * ROOMS_PER_SITE,
            "benchmarked_day": DAY.isoformat(),
            "sittings_on_the_day": ON_DAY,
            "rounds_per_call": args.rounds,
            "warmup_per_call": WARMUP,
        },
        "setup": {
            "client": "in-process ASGI (fastapi TestClient over httpx): the whole app, "
            "auth and scope included, no network",
            "sqlite": "embedded default (WAL), file on the scratch filesystem",
            "postgresql": "local server, schema of its own",
            "creation": "untimed bulk inserts; verdicts and gap summaries stored as the sweep "
            "stores them; ANALYZE after seeding",
            "statistic": "p50 and p99 of the rounds per call; list_p99 over every list call, "
            "day_view_p99 over the calls with dates (what the page sends)",
        },
        "target": {"list_p99_ms_at_100000": TARGET_P99_MS},
        "databases": {},
    }
    for kind in args.databases.split(","):
        report["databases"][kind] = {}
        for size in sizes:
            log("%s: seeding %d sittings", kind, size)
            with city(kind, size, args.postgres_url) as (services, facts):
                log("%s: seeded in %.1f s; timing", kind, facts["seed_seconds"])
                result = {"seeded": facts, **measure(services, facts, args.rounds)}
            report["databases"][kind][str(size)] = result
            log(
                "%s %d: list p50 %.1f ms, p99 %.1f ms",
                kind,
                size,
                result["list_p50_ms"],
                result["list_p99_ms"],
            )
        by_size = report["databases"][kind]
        if len(sizes) > 1:
            low, high = by_size[str(sizes[0])], by_size[str(sizes[-1])]
            report["databases"][kind]["growth_p50"] = round(
                high["list_p50_ms"] / max(low["list_p50_ms"], 0.001), 2
            )
    biggest = str(max(sizes))
    report["day_view_meets_target"] = all(
        report["databases"][kind][biggest]["day_view_p99_ms"] < TARGET_P99_MS
        for kind in report["databases"]
    )
    report["meets_target"] = all(
        report["databases"][kind][biggest]["list_p99_ms"] < TARGET_P99_MS
        for kind in report["databases"]
    )
    report["load_average_after"] = round(os.getloadavg()[0], 2)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    log("written %s", args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
