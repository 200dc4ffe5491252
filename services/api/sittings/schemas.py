from __future__ import annotations

from pydantic import BaseModel, Field


class SittingSummary(BaseModel):
    code: str
    room: str
    institution: str
    kind: str
    occupation: str
    level: str
    starts_at: str = Field(description="RFC 3339 with offset")
    ends_at: str
    status: str = Field(description="pending | complete | incomplete | missing")
    checked_at: str | None
    # Names beside the codes; the single-sitting route fills them (the registry has no room
    # names: a room is known by its code, its kind and its site's address).
    institution_name: str | None = None
    district: str | None = None
    site_address: str | None = None


class SittingList(BaseModel):
    sittings: list[SittingSummary]


class GapOut(BaseModel):
    start: str
    end: str
    seconds: float
    cause: str = Field(description="not_received | rejected | clock_suspect")


class HealthOut(BaseModel):
    start: str
    end: str
    seconds: float
    kind: str = Field(description="black | frozen | covered | scene_mismatch")


class CameraCoverageOut(BaseModel):
    camera: str
    position: str
    segments: int
    required_start: str = Field(
        description="the part of the sitting's required interval this camera was in service"
    )
    required_end: str
    covered_seconds: float
    required_seconds: float
    ratio: float
    gaps: list[GapOut]
    health: list[HealthOut]


class CoverageOut(BaseModel):
    sitting: str
    room: str
    institution: str
    status: str
    starts_at: str
    ends_at: str
    required_start: str
    required_end: str
    computed_at: str
    cameras: list[CameraCoverageOut]


class SittingIn(BaseModel):
    sitting_code: str
    room_code: str
    kind: str
    occupation: str
    level: str
    starts_at: str = Field(description="RFC 3339; without an offset the configured zone applies")
    ends_at: str


class ScheduleIn(BaseModel):
    sittings: list[SittingIn]


class ScheduleOut(BaseModel):
    created: list[str]
    updated: list[str]
    unchanged: list[str]
    zone_assumed: list[str] = Field(description="fields read in the configured zone")
