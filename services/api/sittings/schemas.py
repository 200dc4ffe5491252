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


class GapBrief(BaseModel):
    start: str
    end: str
    cause: str = Field(description="not_received | rejected | clock_suspect")


class CameraMissing(BaseModel):
    camera: str
    position: str
    missing_seconds: float = Field(description="seconds of the required interval with no footage")
    has_footage: bool
    gap_count: int
    gaps: list[GapBrief] = Field(description="the first gaps (at most 20), in time order")


class PictureProblem(BaseModel):
    camera: str
    position: str
    kind: str = Field(description="black | frozen | covered | scene_mismatch")
    seconds: int


class DaySitting(SittingSummary):
    """A row of the day's list: the sitting, names beside codes, and what is wrong at a glance."""

    institution_name: str
    district: str
    site: str
    site_address: str
    room_name: str | None
    room_kind: str = Field(description="theory | practical")
    ended: bool = Field(description="its required interval is over (missing footage is missing)")
    upload_deadline: str = Field(description="required end + upload grace: late footage until then")
    summarised: bool = Field(description="false until the verdict sweep stored its gap summary")
    missing: list[CameraMissing]
    picture_problems: list[PictureProblem]
    open_findings: int | None = Field(
        description="findings not withdrawn; null for institutions, who are the ones supervised"
    )
    active_holds: int


class SittingList(BaseModel):
    sittings: list[DaySitting]
    total: int = Field(description="sittings matching every filter")
    offset: int
    limit: int
    counts: dict[str, int] = Field(
        description="per verdict, over the filtered set without the verdict filter"
    )
    window_start: str | None = Field(description="the dates asked, as instants (start inclusive)")
    window_end: str | None = Field(description="end exclusive")
    now: str


class InstitutionChoice(BaseModel):
    code: str
    name: str
    district: str


class SiteChoice(BaseModel):
    code: str
    address: str
    institution: str


class SittingChoices(BaseModel):
    districts: list[str]
    institutions: list[InstitutionChoice]
    sites: list[SiteChoice]
    room_kinds: list[str]
    occupations: list[str]
    verdicts: list[str]


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
