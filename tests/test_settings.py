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
