"""Demo data for a newcomer's first `make run` (`serve --demo`; never seeded unasked, since a
production store's lock would keep demo footage for three years), so that every page of the
console shows something on the day it is started:

- two institutions in two districts (渝中区: CQJD0001 with a theory and a practical room;
  江北区: CQJD0002 with one theory room), each room with a front and a back camera;
- one person per role, each with a random password printed once (admin, district officer of
  渝中区, supervisor assigned to CQJD0001, institution CQJD0001), a camera-host token for the demo
  cameras and an admin API token, also printed once;
- sittings: one held yesterday at this time (its upload grace is over: `incomplete`, the back
  camera misses two minutes and the front one goes black for a minute), two earlier today in
  the theory room with footage (one complete, one with a gap the institution can still fill),
  sittings at fixed hours of today in the other rooms without footage (pending, or not started
  yet), and one two days ago without footage (`missing`);
- findings by the supervisor (and one by the centre in 江北区, which the district officer of
  渝中区 must not see), and a hold on yesterday's sitting.

The footage goes through the real path: files are written as `NAME.part` into the spool and
renamed, and the ingest worker picks them up.
"""

from __future__ import annotations

import json
import logging
import secrets
import threading
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from services.access.people import assign, create_user
from services.access.scopes import Subject
from services.access.tokens import create_token
from services.context import Services
from services.evidence.findings import FindingCategory, FindingDraft, record_finding
from services.registry import import_registry
from services.retention.holds import HoldRequest, place_hold
from storage.models import Institution, Room, Sitting, User

logger = logging.getLogger(__name__)


def _room(code: str, kind: str) -> dict[str, object]:
    return {
        "code": code,
        "kind": kind,
        "cameras": [
            {"code": f"{code}-F", "position": "front"},
            {"code": f"{code}-B", "position": "back"},
        ],
    }


THEORY_ROOM = "CQJD0001-S1-R101"
PRACTICAL_ROOM = "CQJD0001-S1-R102"
OTHER_DISTRICT_ROOM = "CQJD0002-S1-R201"
DEMO_DISTRICT = "渝中区"
DEMO_REGISTRY = {
    "institutions": [
        {
            "code": "CQJD0001",
            "name": "重庆市示例职业技能鉴定所",
            "district": DEMO_DISTRICT,
            "filing_expires": "2028-06-30",
            "sites": [
                {
                    "code": "CQJD0001-S1",
                    "address": "渝中区示例路1号",
                    "rooms": [_room(THEORY_ROOM, "theory"), _room(PRACTICAL_ROOM, "practical")],
                }
            ],
        },
        {
            "code": "CQJD0002",
            "name": "重庆市江北区示例技工学校鉴定站",
            "district": "江北区",
            "filing_expires": "2027-12-31",
            "sites": [
                {
                    "code": "CQJD0002-S1",
                    "address": "江北区示例大道88号",
                    "rooms": [_room(OTHER_DISTRICT_ROOM, "theory")],
                }
            ],
        },
    ]
}
SITTING_MINUTES = 20
DEMO_SUPERVISOR = "demo-supervisor"
# One person per role who logs in on the web page; `district`/`institution` as create_user takes.
DEMO_PEOPLE = (
    ("demo-admin", "admin", {}),
    ("demo-district", "district_officer", {"district": DEMO_DISTRICT}),
    (DEMO_SUPERVISOR, "supervisor", {}),
    ("demo-institution", "institution", {"institution_code": "CQJD0001"}),
)
SEGMENT_MINUTES = 2
DEMO_FPS = 5


@dataclass(frozen=True)
class DemoSitting:
    code: str
    room: str
    kind: str
    occupation: str
    level: str
    start: datetime
    end: datetime


@dataclass(frozen=True)
class DemoFootage:
    """Footage for one sitting: which segments (by index from one minute before the start) the
    back camera misses, and which the front camera shows black for 90 s of."""

    start: datetime
    end: datetime
    missing: tuple[int, ...] = ()
    darkened: tuple[int, ...] = ()


def demo_plan(now: datetime, zone: tzinfo) -> tuple[list[DemoSitting], list[DemoFootage]]:
    """The demo's sittings and footage around `now` (UTC, whole minutes): pure, so a test can
    see what `make run` would seed on any day."""
    today = now.astimezone(zone).date()

    def local(day: date, hour: int, minute: int = 0) -> datetime:
        return datetime.combine(day, time(hour, minute), tzinfo=zone).astimezone(UTC)

    def code(start: datetime, number: int) -> str:
        return f"DEMO-{start.astimezone(zone):%Y-%m-%d}-{number:03d}"

    yesterday_end = now - timedelta(days=1)
    yesterday_start = yesterday_end - timedelta(minutes=SITTING_MINUTES)
    complete_start = now - timedelta(minutes=50)
    gap_start = now - timedelta(minutes=25)
    sittings = [
        # The first stays number 001 and yesterday at this time, as the demo always had it.
        DemoSitting(
            code(yesterday_start, 1), THEORY_ROOM, "theory", "电工", "四级",
            yesterday_start, yesterday_end,
        ),
        DemoSitting(
            code(complete_start, 2), THEORY_ROOM, "theory", "电工", "三级",
            complete_start, complete_start + timedelta(minutes=SITTING_MINUTES),
        ),
        DemoSitting(
            code(gap_start, 3), THEORY_ROOM, "theory", "电子商务师", "四级",
            gap_start, gap_start + timedelta(minutes=SITTING_MINUTES),
        ),
        DemoSitting(
            code(local(today, 8, 30), 4), PRACTICAL_ROOM, "practical", "焊工", "四级",
            local(today, 8, 30), local(today, 10, 30),
        ),
        DemoSitting(
            code(local(today, 14), 5), PRACTICAL_ROOM, "practical", "焊工", "三级",
            local(today, 14), local(today, 16),
        ),
        DemoSitting(
            code(local(today, 9), 6), OTHER_DISTRICT_ROOM, "theory", "育婴员", "五级",
            local(today, 9), local(today, 10, 30),
        ),
        DemoSitting(
            code(local(today, 15), 7), OTHER_DISTRICT_ROOM, "theory", "保育师", "四级",
            local(today, 15), local(today, 16, 30),
        ),
        DemoSitting(
            code(local(today - timedelta(days=2), 9), 8), OTHER_DISTRICT_ROOM, "theory",
            "中式烹调师", "五级", local(today - timedelta(days=2), 9),
            local(today - timedelta(days=2), 10),
        ),
    ]  # fmt: skip
    footage = [
        DemoFootage(yesterday_start, yesterday_end, missing=(5,), darkened=(2,)),
        DemoFootage(complete_start, complete_start + timedelta(minutes=SITTING_MINUTES)),
        DemoFootage(gap_start, gap_start + timedelta(minutes=SITTING_MINUTES), missing=(4,)),
    ]
    return sittings, footage


def demo_users_exist(services: Services) -> list[str]:
    with services.db.read() as session:
        names = [name for name, _, _ in DEMO_PEOPLE]
        return list(session.scalars(select(User.name).where(User.name.in_(names))))


def seed_demo_if_empty(
    services: Services,
    *,
    now: datetime | None = None,
    background: bool = True,
    footage: bool = True,
) -> bool:
    """Seed when the registry is empty; returns whether it did. The footage is written in a
    background thread so `serve` answers at once; the worker ingests it as it lands. When the
    database is not empty, say which demo accounts exist and how to reset a password: theirs
    were printed once, at the first start."""
    with services.db.read() as session:
        if session.scalar(select(func.count()).select_from(Institution)):
            existing = demo_users_exist(services)
            if existing:
                print(
                    f"demo data already present; demo accounts: {', '.join(sorted(existing))} "
                    "(their passwords were shown once, at the first start). Set a new one with: "
                    "examvault user reset-password NAME",
                    flush=True,
                )
            return False
    now = (now or datetime.now(UTC)).replace(second=0, microsecond=0)
    zone = services.settings.zone
    sittings, footage_plan = demo_plan(now, zone)
    passwords = {name: secrets.token_urlsafe(12) for name, _, _ in DEMO_PEOPLE}
    cameras = [
        camera["code"]
        for institution in DEMO_REGISTRY["institutions"]
        for site in institution["sites"]  # type: ignore[attr-defined]
        for room in site["rooms"]
        for camera in room["cameras"]
    ]

    def seed(session: Session) -> tuple[str, str]:
        import_registry(session, json.dumps(DEMO_REGISTRY, ensure_ascii=False), actor="demo")
        rooms = {room.code: room.id for room in session.scalars(select(Room))}
        for planned in sittings:
            session.add(
                Sitting(
                    code=planned.code,
                    room_id=rooms[planned.room],
                    kind=planned.kind,
                    occupation=planned.occupation,
                    level=planned.level,
                    starts_at=planned.start,
                    ends_at=planned.end,
                )
            )
        session.flush()
        _, admin_token = create_token(session, role="admin", name="demo-admin", actor="demo")
        _, host_token = create_token(
            session, role="camera_host", name="demo-camera-host", cameras=cameras, actor="demo"
        )
        users = {
            name: create_user(
                session, name=name, role=role, password=passwords[name], actor="demo", **extra
            )
            for name, role, extra in DEMO_PEOPLE
        }
        # The supervisor oversees CQJD0001's sittings from two days ago to tomorrow.
        assign(
            session,
            user_name=DEMO_SUPERVISOR,
            institution_code="CQJD0001",
            covers_from=now - timedelta(days=3),
            covers_until=now + timedelta(days=2),
            valid_from=now - timedelta(minutes=1),
            valid_until=now + timedelta(days=30),
            actor="demo",
        )
        _demo_findings(session, services, sittings, users)
        place_hold(
            session,
            services.store,
            services.settings,
            HoldRequest(
                reason="考生投诉，调查期间保全录像（示例）",
                case_reference="DEMO-2026-001",
                sitting_code=sittings[0].code,
            ),
            actor="admin:demo-admin",
        )
        return admin_token, host_token

    admin_token, host_token = services.db.run_write(seed)
    logger.info(
        "demo data seeded: institutions CQJD0001 and CQJD0002, %d sittings, %d people",
        len(sittings),
        len(DEMO_PEOPLE),
    )
    # On stdout, not in the log: a token or password has no business in log files, even a
    # demo's. Shown once: only hashes are stored.
    for name, role, _ in DEMO_PEOPLE:
        print(
            f"demo {role} for the web page (shown once): user {name}, password {passwords[name]}",
            flush=True,
        )
    print(f"demo camera host token for the demo cameras (shown once): {host_token}", flush=True)
    print(f"demo admin token (shown once): {admin_token}", flush=True)
    if not footage:
        return True
    spool = services.settings.resolved_spool_dir
    if background:
        threading.Thread(
            target=_write_all_footage,
            args=(spool, footage_plan, zone),
            name="demo-footage",
            daemon=True,
        ).start()
    else:
        _write_all_footage(spool, footage_plan, zone)
    return True


def _demo_findings(
    session: Session, services: Services, sittings: list[DemoSitting], users: dict[str, User]
) -> None:
    """What the supervisor noted (and one note of the centre's in the other district)."""
    by_code = {s.code: s for s in session.scalars(select(Sitting))}

    def note(
        planned: DemoSitting,
        author: str,
        camera: str,
        category: FindingCategory,
        offset: timedelta,
        text: str,
        length: timedelta | None = None,
    ) -> None:
        user = users[author]
        subject = Subject(name=user.name, role=user.role, user_id=user.id)
        start = planned.start + offset
        draft = FindingDraft(
            camera=camera,
            category=category,
            observed_from=start,
            observed_until=start + length if length else None,
            text=text,
        )
        record_finding(session, by_code[planned.code], draft, subject, services.settings)

    yesterday, complete, _gap, _, _, other_district = sittings[:6]
    note(
        yesterday, DEMO_SUPERVISOR, f"{THEORY_ROOM}-F", FindingCategory.camera_blocked,
        timedelta(minutes=3, seconds=30), "前置摄像机画面全黑约一分半钟，无法看清考生。",
        length=timedelta(seconds=90),
    )  # fmt: skip
    note(
        complete, DEMO_SUPERVISOR, f"{THEORY_ROOM}-B", FindingCategory.absent_assessor,
        timedelta(minutes=12), "考评员离开考场约两分钟。",
    )  # fmt: skip
    note(
        other_district, "demo-admin", f"{OTHER_DISTRICT_ROOM}-F", FindingCategory.other,
        timedelta(minutes=30), "抽查：考场座位图与签到表不一致（示例）。",
    )  # fmt: skip


def _write_all_footage(spool: Path, plan: list[DemoFootage], zone: tzinfo) -> None:
    for seed, part in enumerate(plan):
        write_demo_footage(
            spool,
            part.start,
            part.end,
            zone,
            missing=part.missing,
            darkened=part.darkened,
            seed=seed,
        )


def write_demo_footage(
    spool: Path,
    sitting_start: datetime,
    sitting_end: datetime,
    zone: tzinfo,
    *,
    missing: tuple[int, ...] = (5,),
    darkened: tuple[int, ...] = (2,),
    seed: int = 0,
    room: str = THEORY_ROOM,
) -> None:
    """Two-minute MP4 segments per camera from a minute before the sitting to a minute after,
    the on-screen clock showing local time. The back camera misses the segments numbered in
    `missing` (gaps); the front camera goes black for 90 s in those in `darkened` (a health
    flag: footage that exists but shows nothing)."""
    from services.demo.footage import black_scene, classroom_scene, spliced, write_recording

    begin = sitting_start - timedelta(minutes=1)
    for position, scene_seed in (("F", 1 + 2 * seed), ("B", 2 + 2 * seed)):
        camera = f"{room}-{position}"
        folder = spool / camera
        folder.mkdir(parents=True, exist_ok=True)
        start = begin
        index = 0
        while start < sitting_end + timedelta(minutes=1):
            if not (position == "B" and index in missing):
                name = f"{start:%Y%m%dT%H%M%S}Z.mp4"
                part = folder / f"{name}.part"
                # Low sensor noise keeps the demo's footage near 1 MB per two minutes.
                scene = classroom_scene(
                    320,
                    240,
                    seed=scene_seed,
                    label=camera,
                    clock_start=start.astimezone(zone).replace(tzinfo=None),
                    noise_amplitude=1,
                )
                if position == "F" and index in darkened:
                    scene = spliced((30.0, scene), (90.0, black_scene(320, 240)), (1e9, scene))
                write_recording(
                    part, seconds=SEGMENT_MINUTES * 60, fps=DEMO_FPS, fmt="mp4", scene=scene
                )
                part.rename(folder / name)
            start += timedelta(minutes=SEGMENT_MINUTES)
            index += 1
    logger.info("demo footage written to the spool")
