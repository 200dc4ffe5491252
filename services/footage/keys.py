"""Blob keys of what footage reads derive and cache beside the evidence.

A leaf module (standard library only) so that `services/purge.py` can keep these keys out of its
segment reconcile without importing the video code.
"""

from __future__ import annotations

# Derived pictures, never evidence: rebuilt from the segments whenever they are missing.
DERIVED_PREFIX = "derived/"
THUMBNAIL_PREFIX = f"{DERIVED_PREFIX}thumbnails/"


def thumbnail_key(sitting_code: str, camera_code: str, every_seconds: int, digest: str) -> str:
    """Where a strip is cached (`.jpg`; its index beside it as `.json`): new footage changes
    `digest`, so it gets a new key instead of overwriting a write-once object."""
    return f"{THUMBNAIL_PREFIX}{sitting_code}/{camera_code}/every-{every_seconds}s-{digest}"
