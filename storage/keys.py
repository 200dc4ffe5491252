"""Where each kind of object lives in the blob store: segments, ledger checkpoints, derived
pictures. One module, so the purge's reconcile knows every prefix that is not a segment without
importing the code that writes it.
"""

from __future__ import annotations

from datetime import UTC, datetime

CHECKPOINT_PREFIX = "ledger/checkpoints/"
# Derived pictures, never evidence: rebuilt from the segments whenever they are missing.
DERIVED_PREFIX = "derived/"
THUMBNAIL_PREFIX = f"{DERIVED_PREFIX}thumbnails/"


def blob_key(camera_code: str, start: datetime, sha256: str, ext: str) -> str:
    """Where a segment lives: from the camera, the start and the content, never the client."""
    moment = start.astimezone(UTC)
    return (
        f"{camera_code}/{moment:%Y/%m/%d}/{moment:%Y%m%dT%H%M%S.%f}Z-{sha256[:16]}.{ext or 'bin'}"
    )


def thumbnail_key(sitting_code: str, camera_code: str, every_seconds: int, digest: str) -> str:
    """Where a strip is cached (`.jpg`; its index beside it as `.json`): new footage changes
    `digest`, so it gets a new key instead of overwriting a write-once object."""
    return f"{THUMBNAIL_PREFIX}{sitting_code}/{camera_code}/every-{every_seconds}s-{digest}"
