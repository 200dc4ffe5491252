"""Findings (督导记录): supervisors' notes on a sitting."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(tags=["findings"])
