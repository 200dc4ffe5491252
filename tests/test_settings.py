from __future__ import annotations

from pathlib import Path

import pytest

from services.settings import SettingsError, load_settings


def test_retention_below_three_years_is_refused_citing_article_14() -> None:
    with pytest.raises(SettingsError, match="Article 14"):
        load_settings(retention_years=2)


def test_unknown_time_zone_is_refused() -> None:
    with pytest.raises(SettingsError, match="time zone"):
        load_settings(timezone="Mars/Olympus")


def test_defaults_are_embedded(tmp_path: Path) -> None:
    settings = load_settings(data_dir=tmp_path)
    assert settings.resolved_database_url.startswith("sqlite:///")
    assert settings.resolved_storage_url == f"file://{tmp_path.resolve() / 'objects'}"
    assert settings.resolved_spool_dir == tmp_path.resolve() / "spool"


@pytest.mark.parametrize(
    "name",
    [
        "s3_connect_timeout_seconds",
        "s3_read_timeout_seconds",
        "database_connect_timeout_seconds",
        "database_pool_timeout_seconds",
        "readiness_interval_seconds",
        "outage_retry_seconds",
    ],
)
def test_a_zero_or_negative_wait_on_a_dependency_is_refused(name: str) -> None:
    for value in (0, -1):
        with pytest.raises(SettingsError, match=f"EXAMVAULT_{name.upper()}"):
            load_settings(**{name: value})


def test_dependency_bounds_have_finite_defaults() -> None:
    settings = load_settings()
    assert settings.s3_connect_timeout_seconds == 5
    assert settings.s3_read_timeout_seconds == 30
    assert settings.s3_retries == 2
    assert settings.database_connect_timeout_seconds == 5
    assert settings.database_pool_timeout_seconds == 10
