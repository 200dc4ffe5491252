"""Footage: a segment's original bytes, time-range playback across segments, thumbnails."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(tags=["footage"])
