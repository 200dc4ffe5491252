"""Fixtures of the fault tests: a PostgreSQL schema of their own (the database cut needs a
real server to cut), and a small real filesystem to fill."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import POSTGRES_URL, STRICT, _postgres_schema_url


@pytest.fixture
def postgres_url() -> Iterator[str]:
    if not POSTGRES_URL:
        if STRICT:
            pytest.fail("EXAMVAULT_TEST_POSTGRES_URL is not set but CI must test PostgreSQL")
        pytest.skip("EXAMVAULT_TEST_POSTGRES_URL is not set")
    yield from _postgres_schema_url(POSTGRES_URL)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 30 MiB tmpfs mounted on a temporary folder: a disk that really fills (ENOSPC from the
    kernel, not a mock). Needs root (CI and this machine run as root)."""
    mount_point = tmp_path / "disk"
    mount_point.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=30m", "tmpfs", str(mount_point)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        message = f"cannot mount a tmpfs here: {mounted.stderr.strip()}"
        if STRICT:
            pytest.fail(message)
        pytest.skip(message)
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)
