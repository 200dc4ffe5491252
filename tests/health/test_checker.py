"""Health checks of stored segments: flags stored per segment, re-derived without decoding."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

from services.context import Services
from services.demo.footage import black_scene, classroom_scene, spliced, write_recording
from services.health import checker
from services.health.sampling import HealthThresholds
from storage.models import Camera, HealthFlag, HealthSample
from tests.conftest import CAMERA_FRONT, ingest_file


def _ingest_with_black(services: Services, tmp_path: Path) -> None:
    path = tmp_path / "20261124T090000+0800.mp4"
    normal = classroom_scene(160, 120, seed=3)
    write_recording(
        path,
        seconds=20,
        fps=4,
        width=160,
        height=120,
        gop_seconds=1.0,
        scene=spliced((6.0, normal), (12.0, black_scene(160, 120)), (99.0, normal)),
    )
    ingest_file(services, CAMERA_FRONT, path)


def _kinds(services: Services) -> list[str]:
    with services.db.read() as session:
        return list(session.scalars(select(HealthFlag.kind)))


def test_check_stores_samples_flags_and_a_baseline(registered: Services, tmp_path: Path) -> None:
    _ingest_with_black(registered, tmp_path)
    assert registered.health.check_unchecked() == 1
    assert registered.health.check_unchecked() == 0  # done once
    assert _kinds(registered) == ["black"]
    with registered.db.read() as session:
        assert len(session.scalars(select(HealthSample)).all()) == 20
        camera = session.scalar(select(Camera).where(Camera.code == CAMERA_FRONT))
        assert camera is not None and camera.sharpness_baseline is not None


def test_retuned_thresholds_apply_without_decoding(
    registered: Services, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _ingest_with_black(registered, tmp_path)
    registered.health.check_unchecked()

    def no_decoding(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("re-deriving flags must not decode video")

    monkeypatch.setattr(checker, "sample_segment_within", no_decoding)
    registered.health.thresholds = HealthThresholds(black_max_luma=-1.0)
    assert registered.health.rederive_flags() == 1
    assert "black" not in _kinds(registered)


def test_a_check_cut_short_by_its_budget_flags_the_rest_unchecked(
    registered: Services, tmp_path: Path
) -> None:
    path = tmp_path / "20261124T090000+0800.mp4"
    # Every frame a keyframe, as in the clip that once cost a minute of health-check CPU.
    write_recording(path, seconds=12, fps=25, width=1280, height=720, gop_seconds=1 / 25)
    segment = ingest_file(registered, CAMERA_FRONT, path)
    registered.settings.health_check_budget_seconds = 0.1
    assert registered.health.check_unchecked() == 1

    with registered.db.read() as session:
        sampled = len(session.scalars(select(HealthSample)).all())
        flags = session.scalars(select(HealthFlag).where(HealthFlag.kind == "unchecked")).all()
    assert 0 < sampled < 300
    assert len(flags) == 1
    assert segment.starts_at < flags[0].starts_at < segment.ends_at
    assert flags[0].ends_at == segment.ends_at

    # Retuning thresholds re-derives the sample flags, not what was never sampled.
    registered.health.thresholds = HealthThresholds(black_max_luma=-1.0)
    registered.health.rederive_flags()
    assert _kinds(registered).count("unchecked") == 1


def test_a_check_within_its_budget_flags_nothing_unchecked(
    registered: Services, tmp_path: Path
) -> None:
    _ingest_with_black(registered, tmp_path)
    registered.health.check_unchecked()
    assert "unchecked" not in _kinds(registered)
