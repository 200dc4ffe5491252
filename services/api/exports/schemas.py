from __future__ import annotations

from pydantic import BaseModel, Field, field_validator

from services.evidence.exports import MAX_REASON_LENGTH


class ExportIn(BaseModel):
    reason: str = Field(
        min_length=1,
        max_length=MAX_REASON_LENGTH,
        description="why the footage leaves the vault; recorded in the ledger and the manifest",
    )

    @field_validator("reason")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        # Spaces are no reason: the ledger must say why footage was taken out.
        if not value.strip():
            raise ValueError("the reason must not be blank")
        return value.strip()
