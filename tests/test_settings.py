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


def test_secret_settings_are_read_from_files_named_by_their_file_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = tmp_path / "s3_secret_key"
    secret.write_text("from-a-file\n", encoding="utf-8")
    monkeypatch.setenv("EXAMVAULT_S3_SECRET_KEY_FILE", str(secret))
    monkeypatch.delenv("EXAMVAULT_S3_SECRET_KEY", raising=False)
    assert load_settings().s3_secret_key == "from-a-file"
    # A variable set outright wins over its _FILE twin.
    monkeypatch.setenv("EXAMVAULT_S3_SECRET_KEY", "outright")
    assert load_settings().s3_secret_key == "outright"


def test_an_unreadable_secret_file_is_refused_naming_the_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EXAMVAULT_DATABASE_URL_FILE", str(tmp_path / "missing"))
    with pytest.raises(SettingsError, match="EXAMVAULT_DATABASE_URL_FILE"):
        load_settings()


def test_footage_offload_is_off_by_default_and_its_location_is_checked() -> None:
    assert load_settings().footage_offload is False
    with pytest.raises(SettingsError, match="EXAMVAULT_FOOTAGE_ACCEL_LOCATION"):
        load_settings(footage_accel_location="/no-trailing-slash")
    with pytest.raises(SettingsError, match="EXAMVAULT_FOOTAGE_PRESIGN_SECONDS"):
        load_settings(footage_presign_seconds=7 * 24 * 3600)
