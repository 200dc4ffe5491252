from __future__ import annotations

from pydantic import BaseModel, Field

from services.api.deps import BoundedAwareDatetime
from services.evidence.findings import MAX_TEXT, FindingCategory, FindingStatus


class FindingIn(BaseModel):
    camera: str = Field(description="code of a camera in the sitting's room")
    category: FindingCategory = Field(
        description="substitution 代考 | absent_assessor 考评员缺席 | camera_blocked 画面遮挡 | "
        "off_site 非备案场所 | other 其他"
    )
    observed_from: BoundedAwareDatetime = Field(
        description="RFC 3339 with offset: the instant, or start"
    )
    observed_until: BoundedAwareDatetime | None = Field(
        default=None, description="end of the interval; omit for an instant"
    )
    text: str = Field(min_length=1, max_length=MAX_TEXT)


class WithdrawIn(BaseModel):
    reason: str = Field(min_length=1, max_length=1000)


class ReviewIn(BaseModel):
    reason: str = Field(min_length=1, max_length=1000)


class FindingOut(BaseModel):
    id: int
    sitting: str
    camera: str
    category: FindingCategory
    observed_from: str = Field(description="RFC 3339 with offset")
    observed_until: str | None
    text: str
    author: str
    created_at: str
    updated_at: str
    revision: int
    withdrawn_at: str | None
    editable: bool = Field(description="whether the caller may still change it")


class FindingList(BaseModel):
    sitting: str
    review_closed_at: str | None
    review_closed_by: str | None
    findings: list[FindingOut]


class ReviewOut(BaseModel):
    sitting: str
    review_closed_at: str | None
    review_closed_by: str | None


class ListedFindingOut(BaseModel):
    id: int
    sitting: str
    sitting_starts_at: str = Field(description="RFC 3339 with offset")
    sitting_ends_at: str
    institution: str = Field(description="institution code")
    institution_name: str
    district: str
    camera: str
    position: str = Field(description="front | back | ...")
    category: FindingCategory
    observed_from: str = Field(description="RFC 3339 with offset")
    observed_until: str | None
    text: str
    author: str
    created_at: str
    updated_at: str
    revision: int
    withdrawn_at: str | None
    status: FindingStatus = Field(
        description="open (review open) | final (review closed) | withdrawn"
    )


class InstitutionChoice(BaseModel):
    code: str
    name: str
    district: str


class ScopedFindingList(BaseModel):
    findings: list[ListedFindingOut]
    total: int = Field(description="findings matching the filter, over all pages")
    limit: int
    offset: int
    institutions: list[InstitutionChoice] = Field(
        description="the institutions in the caller's scope, for the filter"
    )
