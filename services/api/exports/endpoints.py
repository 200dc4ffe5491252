"""Evidence exports: a sitting's signed, verifiable ZIP package."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(tags=["exports"])
