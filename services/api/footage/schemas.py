from __future__ import annotations

from pydantic import BaseModel, Field


class SegmentOut(BaseModel):
    id: int
    camera: str
    start: str = Field(description="RFC 3339 with offset: the first frame's wall-clock instant")
    end: str = Field(description="start + media duration measured from the packets")
    duration_seconds: float
    sha256: str
    size: int
    container: str
    video_codec: str
    width: int
    height: int
    health: list[str] = Field(description="health flag kinds found in the segment")
    health_checked: bool
    clock_flags: list[str]
    purged: bool
    purged_at: str | None
    content: str = Field(description="where its original bytes are served (HTTP Range)")


class CameraSegmentsOut(BaseModel):
    camera: str
    position: str
    segments: list[SegmentOut]


class SittingSegmentsOut(BaseModel):
    sitting: str
    required_start: str
    required_end: str
    cameras: list[CameraSegmentsOut]


class WindowOut(BaseModel):
    start: str
    end: str


class PlaybackGapOut(BaseModel):
    start: str
    end: str
    cause: str = Field(description="not_received | rejected | clock_suspect | purged")
    media_at: float = Field(description="seconds into the output where the gap was cut out")


class PlaybackPieceOut(BaseModel):
    segment: int
    from_: str = Field(alias="from", description="wall clock, RFC 3339")
    to: str
    media_offset: float = Field(description="seconds into the output where this piece starts")
    seconds: float
    container: str
    video_codec: str
    width: int
    height: int


class PlaybackPlanOut(BaseModel):
    camera: str
    asked_start: str
    asked_end: str
    start: str | None = Field(description="wall clock of the first frame (its keyframe)")
    media_start: float = Field(description="output time of the first frame (B-frame delay)")
    media_seconds: float
    pieces: list[PlaybackPieceOut]
    gaps: list[PlaybackGapOut]
    continue_at: str | None = Field(
        description="playback stops here (codec parameters change): ask again from it"
    )
    stop_reason: str | None


class ThumbnailTileOut(BaseModel):
    index: int
    at: str
    shown_at: str | None = Field(description="the keyframe's own instant; null for a gap")
    segment: int | None
    gap: bool
    cause: str | None = Field(description="no_footage | purged | no_keyframe")


class ThumbnailIndexOut(BaseModel):
    sitting: str
    camera: str
    every_seconds: int
    required_start: str
    required_end: str
    tile_width: int
    tile_height: int
    strip_sha256: str
    tiles: list[ThumbnailTileOut]
