"""deploy/systemd/: every unit passes `systemd-analyze verify` (Debian's systemd, installed by
`make nginx`) and scores "OK" on `systemd-analyze security --offline`; its command parses with
examvault's own CLI; its EXAMVAULT_* variables are settings examvault knows; it restarts and
is hardened. The units are copied to a temporary directory with /opt/examvault/bin/examvault
pointing at this environment's `examvault`, which verify requires to exist."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import STRICT
from tests.deploy.units import DEPLOY, known_variables, parse_command, subcommands

UNITS = sorted((DEPLOY / "systemd").glob("*.service"))
INSTALLED = "/opt/examvault/bin/examvault"
# Templates are verified as one instance each.
INSTANCES = {"examvault-serve@.service": "8000", "examvault-worker@.service": "1"}
HARDENING = (
    "NoNewPrivileges=yes",
    "ProtectSystem=strict",
    "ProtectHome=yes",
    "PrivateTmp=yes",
    "PrivateDevices=yes",
    "CapabilityBoundingSet=",
    "Restart=always",
)


def _systemd_analyze() -> str:
    found = shutil.which("systemd-analyze")
    if found is None:
        if STRICT:
            pytest.fail("systemd-analyze is missing (make nginx installs systemd)")
        pytest.skip("systemd-analyze is missing (apt-get install systemd)")
    return found


def _directives(unit: Path, name: str) -> list[str]:
    return [
        line.split("=", 1)[1]
        for line in unit.read_text(encoding="utf-8").splitlines()
        if line.startswith(f"{name}=")
    ]


def _examvault() -> str:
    script = Path(sys.executable).parent / "examvault"
    assert script.exists(), f"{script} is missing: install examvault (make install)"
    return str(script)


def _copies(tmp_path: Path) -> list[Path]:
    copies = []
    for unit in UNITS:
        target = tmp_path / unit.name.replace("@.", f"@{INSTANCES.get(unit.name, '')}.")
        target.write_text(
            unit.read_text(encoding="utf-8").replace(INSTALLED, _examvault()), encoding="utf-8"
        )
        copies.append(target)
    return copies


def test_there_is_a_unit_for_each_long_running_command() -> None:
    assert {unit.name for unit in UNITS} == {
        "examvault-serve@.service",
        "examvault-worker@.service",
        "examvault-witness.service",
        "examvault-push.service",
    }


def test_units_pass_systemd_analyze_verify(tmp_path: Path) -> None:
    analyze = _systemd_analyze()
    copies = _copies(tmp_path)
    verified = subprocess.run(
        [analyze, "verify", "--man=no", *map(str, copies)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    # verify exits 0 on an unknown key or a bad value and only says so: both fail here.
    assert verified.returncode == 0, verified.stderr
    ours = [line for line in verified.stderr.splitlines() if str(tmp_path) in line]
    assert ours == [], "\n".join(ours)


def test_systemd_analyze_verify_catches_a_mistake(tmp_path: Path) -> None:
    """The check above can fail: a misspelt directive is reported."""
    analyze = _systemd_analyze()
    (unit,) = (copy for copy in _copies(tmp_path) if copy.name == "examvault-push.service")
    unit.write_text(unit.read_text().replace("ProtectSystem=", "ProtectSystm="))
    verified = subprocess.run(
        [analyze, "verify", "--man=no", str(unit)], capture_output=True, text=True, timeout=60
    )
    assert "ProtectSystm" in verified.stderr


@pytest.mark.parametrize("unit", UNITS, ids=lambda unit: unit.name)
def test_units_are_hardened_and_restart(unit: Path, tmp_path: Path) -> None:
    text = unit.read_text(encoding="utf-8")
    for directive in HARDENING:
        assert f"\n{directive}\n" in text, f"{unit.name} lacks {directive}"
    assert _directives(unit, "ReadWritePaths"), f"{unit.name} names no ReadWritePaths"
    assert _directives(unit, "User") and _directives(unit, "User") != ["root"]
    analyze = _systemd_analyze()
    (copy,) = (c for c in _copies(tmp_path) if c.name.split("@")[0] == unit.name.split("@")[0])
    security = subprocess.run(
        [analyze, "security", "--offline=yes", "--no-pager", str(copy)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    exposure = re.search(r"Overall exposure level for \S+: ([0-9.]+) (\w+)", security.stdout)
    assert exposure is not None, security.stdout + security.stderr
    assert float(exposure.group(1)) <= 2.0 and exposure.group(2) == "OK", exposure.group(0)


@pytest.mark.parametrize("unit", UNITS, ids=lambda unit: unit.name)
def test_unit_commands_parse_with_the_cli(unit: Path) -> None:
    (command,) = _directives(unit, "ExecStart")
    binary, *arguments = shlex.split(command.replace("%i", "8000"))
    assert binary == INSTALLED
    assert arguments[0] in subcommands(), f"`examvault {arguments[0]}` is not a command"
    parse_command(arguments)


@pytest.mark.parametrize("unit", UNITS, ids=lambda unit: unit.name)
def test_unit_variables_are_known_settings(unit: Path) -> None:
    assignments = [value.split("=", 1)[0] for value in _directives(unit, "Environment")]
    unknown = {name for name in assignments if name not in known_variables()}
    assert unknown == set()
