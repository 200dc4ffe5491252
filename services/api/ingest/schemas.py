from __future__ import annotations

from pydantic import BaseModel, Field


class StoredSegment(BaseModel):
    """What a camera host needs before deleting its copy: the server's hash of the bytes."""

    segment_id: int
    status: str = Field(description="stored (201) or duplicate (200)")
    camera: str
    sha256: str
    size: int
    start: str = Field(description="RFC 3339 with offset")
    end: str = Field(description="start + media duration measured from the packets")
    duration_seconds: float
    expires_at: str
    clock_flags: list[str]
    damaged: list[dict[str, str]] = Field(
        default_factory=list,
        description="stretches (start, end, RFC 3339) whose keyframe the probe found damaged; "
        "the footage is stored and flagged `damaged`",
    )
