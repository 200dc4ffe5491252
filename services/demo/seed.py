"""Demo data for a newcomer's first `make run` (`serve --demo`; never seeded unasked, since a
production store's lock would keep demo footage for three years): one institution, one theory
room with two cameras, one sitting held yesterday at this time (so its upload grace period is
over and its verdict is final), and synthetic footage for it.

The footage goes through the real path: files are written as `NAME.part` into the spool and
renamed, and the ingest worker picks them up. The back camera misses two minutes in the middle,
so the demo sitting is `incomplete` with one gap rather than a perfect picture; the front
camera goes black for a minute, which the report shows as a health flag.
"""

from __future__ import annotations

import json
import logging
import secrets
import threading
from datetime import UTC, datetime, timedelta, tzinfo
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from services.access.people import assign, create_user
from services.access.tokens import create_token
from services.context import Services
from services.registry import import_registry
from storage.models import Institution, Room, Sitting

logger = logging.getLogger(__name__)

DEMO_REGISTRY = {
    "institutions": [
        {
            "code": "CQJD0001",
            "name": "重庆市示例职业技能鉴定所",
            "district": "渝中区",
            "filing_expires": "2028-06-30",
            "sites": [
                {
                    "code": "CQJD0001-S1",
                    "address": "渝中区示例路1号",
                    "rooms": [
                        {
                            "code": "CQJD0001-S1-R101",
                            "kind": "theory",
                            "cameras": [
                                {"code": "CQJD0001-S1-R101-F", "position": "front"},
                                {"code": "CQJD0001-S1-R101-B", "position": "back"},
                            ],
                        }
                    ],
                }
            ],
        }
    ]
}
SITTING_MINUTES = 20
DEMO_SUPERVISOR = "demo-supervisor"
SEGMENT_MINUTES = 2
DEMO_FPS = 5


def seed_demo_if_empty(
    services: Services,
    *,
    now: datetime | None = None,
    background: bool = True,
    footage: bool = True,
) -> bool:
    """Seed when the registry is empty; returns whether it did. The footage is written in a
    background thread so `serve` answers at once; the worker ingests it as it lands."""
    with services.db.read() as session:
        if session.scalar(select(func.count()).select_from(Institution)):
            return False
    now = (now or datetime.now(UTC)).replace(second=0, microsecond=0)
    sitting_end = now - timedelta(days=1)
    sitting_start = sitting_end - timedelta(minutes=SITTING_MINUTES)

    supervisor_password = secrets.token_urlsafe(9)

    def seed(session: Session) -> str:
        import_registry(session, json.dumps(DEMO_REGISTRY, ensure_ascii=False), actor="demo")
        room = session.scalar(select(Room).where(Room.code == "CQJD0001-S1-R101"))
        assert room is not None
        local_day = sitting_start.astimezone(services.settings.zone).strftime("%Y-%m-%d")
        session.add(
            Sitting(
                code=f"DEMO-{local_day}-001",
                room_id=room.id,
                kind="theory",
                occupation="电工",
                level="四级",
                starts_at=sitting_start,
                ends_at=sitting_end,
            )
        )
        _, admin_token = create_token(session, role="admin", name="demo-admin", actor="demo")
        # Someone to open the web page as: a supervisor assigned to the demo sitting.
        create_user(
            session,
            name=DEMO_SUPERVISOR,
            role="supervisor",
            password=supervisor_password,
            actor="demo",
        )
        assign(
            session,
            user_name=DEMO_SUPERVISOR,
            sitting_code=f"DEMO-{local_day}-001",
            valid_from=now,
            valid_until=now + timedelta(days=30),
            actor="demo",
        )
        return admin_token

    admin_token = services.db.run_write(seed)
    logger.info("demo data seeded: institution CQJD0001, room CQJD0001-S1-R101, one sitting")
    # On stdout, not in the log: a token has no business in log files, even a demo's.
    print(f"demo admin token (shown once): {admin_token}", flush=True)
    print(
        f"demo supervisor for the web page (shown once): user {DEMO_SUPERVISOR}, "
        f"password {supervisor_password}",
        flush=True,
    )
    spool = services.settings.resolved_spool_dir
    zone = services.settings.zone
    if not footage:
        return True
    if background:
        threading.Thread(
            target=write_demo_footage,
            args=(spool, sitting_start, sitting_end, zone),
            name="demo-footage",
            daemon=True,
        ).start()
    else:
        write_demo_footage(spool, sitting_start, sitting_end, zone)
    return True


def write_demo_footage(
    spool: Path, sitting_start: datetime, sitting_end: datetime, zone: tzinfo
) -> None:
    """Two-minute MP4 segments per camera, the on-screen clock showing local time. The back
    camera misses one segment (a gap); the front camera goes black for a minute (a health flag:
    footage that exists but shows nothing)."""
    from services.demo.footage import black_scene, classroom_scene, spliced, write_recording

    begin = sitting_start - timedelta(minutes=1)
    missing = begin + timedelta(minutes=SEGMENT_MINUTES * 5)
    darkened = begin + timedelta(minutes=SEGMENT_MINUTES * 2)
    for position, seed in (("F", 1), ("B", 2)):
        camera = f"CQJD0001-S1-R101-{position}"
        folder = spool / camera
        folder.mkdir(parents=True, exist_ok=True)
        start = begin
        while start < sitting_end + timedelta(minutes=1):
            if not (position == "B" and start == missing):
                name = f"{start:%Y%m%dT%H%M%S}Z.mp4"
                part = folder / f"{name}.part"
                # Low sensor noise keeps the demo's footage near 1 MB per two minutes.
                scene = classroom_scene(
                    320,
                    240,
                    seed=seed,
                    label=camera,
                    clock_start=start.astimezone(zone).replace(tzinfo=None),
                    noise_amplitude=1,
                )
                if position == "F" and start == darkened:
                    scene = spliced((30.0, scene), (90.0, black_scene(320, 240)), (1e9, scene))
                write_recording(
                    part, seconds=SEGMENT_MINUTES * 60, fps=DEMO_FPS, fmt="mp4", scene=scene
                )
                part.rename(folder / name)
            start += timedelta(minutes=SEGMENT_MINUTES)
    logger.info("demo footage written to the spool")
