"""The reliability record refuses impossible figures and renders what was recorded."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.reliability import Reliability, render


def test_impossible_figures_are_refused() -> None:
    record = Reliability()
    with pytest.raises(ValueError, match="impossible"):
        record.record("faults", "x", tries=2, acknowledged=1, lost=3)
    with pytest.raises(ValueError, match="unknown reliability category"):
        record.record("weather", "x", tries=1)


def test_the_rendered_table_carries_each_case_and_the_totals(tmp_path: Path) -> None:
    record = Reliability()
    record.record(
        "faults",
        "store cut",
        tries=5,
        acknowledged=3,
        lost=0,
        answers={"201": 3, "503": 2},
        test="t::a[postgresql]",
    )
    record.record("hostile files", "truncated mp4", tries=7, lost=1, test="t::b")
    out = tmp_path / "run.json"
    record.write(out, outcomes={"t::a[postgresql]": True, "t::b": False})
    text = render([json.loads(out.read_text())])
    assert "| store cut | postgresql | 5 | 3 | 0 | 201 x3, 503 x2 | yes |" in text
    assert "| truncated mp4 | - | 7 | 0 | 1 | - | **no** |" in text
    assert "**2 cases, 12 tries, 3 acknowledged, 1 lost.**" in text
