"""The test-only crash points: inert unless armed, and when armed a real SIGKILL at the Nth hit."""

from __future__ import annotations

import signal
import subprocess
import sys

import pytest

from services.settings import SettingsError, load_settings
from storage import faults
from tests.processes import ROOT


def _run(script: str) -> subprocess.CompletedProcess[str]:
    """In a child: a fault point that fires where it must not would kill the test run itself."""
    return subprocess.run(
        [sys.executable, "-c", "from storage import faults\n" + script],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_fault_points_do_nothing_unarmed_or_armed_for_another_step() -> None:
    run = _run(
        "for name in faults.POINTS:\n"
        "    faults.fault_point(name)\n"
        "faults.arm('ingest.committed')\n"
        "for name in set(faults.POINTS) - {'ingest.committed'}:\n"
        "    faults.fault_point(name)\n"
        "print('alive')\n"
    )
    assert (run.returncode, run.stdout) == (0, "alive\n"), run.stderr


def test_the_armed_point_kills_the_process_at_the_nth_hit() -> None:
    run = _run(
        "faults.arm('ingest.committed:2')\n"
        "faults.fault_point('ingest.committed')\n"
        "print('after the first hit', flush=True)\n"
        "faults.fault_point('ingest.committed')\n"
        "print('after the second hit', flush=True)\n"
    )
    assert run.returncode == -signal.SIGKILL
    assert run.stdout == "after the first hit\n"
    assert "fault point ingest.committed reached (hit 2): SIGKILL" in run.stderr


@pytest.mark.parametrize(
    ("spec", "message"),
    [("ingest.comitted", "unknown step"), ("ingest.committed:0", "1 or more")],
)
def test_a_bad_spec_is_refused_with_what_is_allowed(spec: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        faults.parse(spec)


def test_settings_refuse_a_fault_point_without_the_test_flag() -> None:
    with pytest.raises(SettingsError, match="EXAMVAULT_TEST_FAULTS=1"):
        load_settings(fault_point="ingest.committed")


def test_settings_accept_a_fault_point_with_the_test_flag() -> None:
    settings = load_settings(test_faults=True, fault_point="s3.multipart_part:3")
    assert settings.fault_point == "s3.multipart_part:3"
