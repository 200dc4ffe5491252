"""`examvault verify-export` on hostile and damaged packages: a compression bomb, JSON nested
past any sane depth, a package cut short at many offsets, a ZIP of many thousand members, and
files that are no ZIP at all. Each answers FAIL lines (exit 1) or bad input (exit 2), in bounded
time and memory, never a traceback. The packages start from a real one, exported from footage
ingested by the real pipeline; the verifier opens no database, so SQLite alone builds it."""

from __future__ import annotations

import json
import os
import random
import resource
import struct
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from services.cli import main
from services.context import Services
from services.demo.footage import classroom_scene, write_recording
from services.evidence.exports import prepare_export, stream_export
from services.evidence.package import CHECKPOINT, ENTRIES, MANIFEST, PROOFS, verify_package
from services.ledger.keys import load_or_create_signer
from services.registry import import_registry
from services.settings import load_settings
from tests.conftest import REGISTRY
from tests.evidence.test_exports import ADMIN, REASON, SITTING, record_sitting_with_footage
from tests.processes import ROOT

BOMB_BYTES = 1024**3
# What the child may use at most, so a regression fails the test instead of the machine.
CHILD_ADDRESS_SPACE = 3 * 1024**3
CHILD_CPU_SECONDS = 120


@pytest.fixture(scope="module")
def package(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """One genuine package, shared: every test alters a copy of it."""
    base = tmp_path_factory.mktemp("genuine")
    settings = load_settings(
        data_dir=base / "var",
        database_url=f"sqlite:///{base / 'examvault.sqlite3'}",
        spool_settle_seconds=0.0,
    )
    services = Services.from_settings(settings)
    try:
        services.db.run_write(
            lambda session: import_registry(session, json.dumps(REGISTRY), actor="test")
        )
        (base / "videos").mkdir()

        def make_video(name: str, *, seconds: float = 3.0, seed: int = 0) -> Path:
            scene = classroom_scene(320, 240, seed=seed)
            return write_recording(base / "videos" / name, seconds=seconds, scene=scene)

        record_sitting_with_footage(services, make_video)
        prepared = prepare_export(
            services.db,
            services.store,
            settings,
            load_or_create_signer(settings.data_dir),
            sitting_code=SITTING,
            subject=ADMIN,
            reason=REASON,
        )
        path = base / prepared.file_name
        path.write_bytes(b"".join(stream_export(prepared, services.db, services.store)))
    finally:
        services.close()
    assert verify_package(path).intact
    yield path


def _rebuilt(package: Path, target: Path, replaced: dict[str, bytes]) -> Path:
    """A copy of the package, stored like the original, with some members' bytes replaced."""
    with zipfile.ZipFile(package) as source, zipfile.ZipFile(target, "w") as copy:
        for info in source.infolist():
            copy.writestr(info, replaced.get(info.filename, source.read(info.filename)))
    return target


def _with_bomb(package: Path, target: Path, manifest: bytes | None = None) -> Path:
    """The package with ledger/entries.jsonl replaced by 1 GiB of short JSON lines, deflated
    to about 2 MB; optionally with a manifest of its own."""
    line = b'{"seq":1}\n'
    chunk = line * (1024 * 1024 // len(line))
    chunk += b"\n" * (1024 * 1024 - len(chunk))
    with zipfile.ZipFile(package) as source, zipfile.ZipFile(target, "w") as copy:
        for info in source.infolist():
            if info.filename == ENTRIES:
                bomb = zipfile.ZipInfo(ENTRIES, date_time=info.date_time)
                bomb.compress_type = zipfile.ZIP_DEFLATED
                with copy.open(bomb, "w", force_zip64=True) as writer:
                    for _ in range(BOMB_BYTES // len(chunk)):
                        writer.write(chunk)
            elif info.filename == MANIFEST and manifest is not None:
                copy.writestr(info, manifest)
            else:
                copy.writestr(info, source.read(info.filename))
    assert target.stat().st_size < 4 * 1024 * 1024
    return target


def _limit_child() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (CHILD_ADDRESS_SPACE, CHILD_ADDRESS_SPACE))
    resource.setrlimit(resource.RLIMIT_CPU, (CHILD_CPU_SECONDS, CHILD_CPU_SECONDS))


# A process forked from this (large) test process starts with its pages counted in its peak
# RSS, and exec keeps that peak; so a small launcher, fresh after its own exec, forks the
# verifier and reports the verifier's own peak (wait4) in a file.
_LAUNCHER = """
import os, subprocess, sys
child = subprocess.Popen(sys.argv[2:])
_, status, usage = os.wait4(child.pid, 0)
open(sys.argv[1], "w").write(f"{os.waitstatus_to_exitcode(status)} {usage.ru_maxrss}")
"""


def _verify_in_child(package: Path, folder: Path) -> tuple[int, str, str, float, int]:
    """A real `examvault verify-export` process: exit code, stdout, stderr, seconds, and its
    own peak RSS in bytes."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("EXAMVAULT_")}
    out_path, err_path = folder / "stdout.txt", folder / "stderr.txt"
    usage_path = folder / "usage.txt"
    command = [str(ROOT / ".venv" / "bin" / "examvault"), "verify-export", str(package)]
    started = time.monotonic()
    with out_path.open("wb") as out, err_path.open("wb") as err:
        subprocess.run(
            [sys.executable, "-c", _LAUNCHER, str(usage_path), *command],
            env=env,
            stdout=out,
            stderr=err,
            preexec_fn=_limit_child,
            check=True,
        )
    elapsed = time.monotonic() - started
    code, max_rss_kib = (int(value) for value in usage_path.read_text().split())
    return code, out_path.read_text(), err_path.read_text(), elapsed, max_rss_kib * 1024


def test_a_zip_bomb_ledger_is_refused_in_bounded_time_and_memory(
    package: Path, tmp_path: Path
) -> None:
    with zipfile.ZipFile(package) as archive:
        listed = archive.getinfo(ENTRIES).file_size
    bomb = _with_bomb(package, tmp_path / "bomb.zip")

    code, out, err, elapsed, peak = _verify_in_child(bomb, tmp_path)

    assert "Traceback" not in err, err
    assert code == 1, out + err
    assert (
        f"FAIL file {ENTRIES}: the ZIP declares {BOMB_BYTES} bytes, the manifest says {listed}"
        in out
    )
    assert f"FAIL ledger entries ({ENTRIES}): the ZIP declares {BOMB_BYTES} bytes" in out
    assert out.splitlines()[-1].startswith("export DOES NOT verify")
    # Inflating and hashing the gigabyte alone would take seconds; nothing of it is read.
    assert elapsed < 15, elapsed
    assert peak < 300 * 1024 * 1024, peak


def test_a_bomb_the_manifest_agrees_with_is_refused_by_its_ratio(
    package: Path, tmp_path: Path
) -> None:
    """A forger can make the (unsigned, then) manifest claim the bomb's size: the ratio of
    inflated to stored bytes still gives it away before a byte is inflated."""
    with zipfile.ZipFile(package) as archive:
        manifest = json.loads(archive.read(MANIFEST))
    for item in manifest["files"]:
        if item["path"] == ENTRIES:
            item["size"] = BOMB_BYTES
    bomb = _with_bomb(package, tmp_path / "agreed.zip", json.dumps(manifest).encode())

    code, out, err, elapsed, peak = _verify_in_child(bomb, tmp_path)

    assert (code, err) == (1, "")
    assert f"FAIL file {ENTRIES}: " in out and "a compression bomb, not read" in out
    assert f"FAIL ledger entries ({ENTRIES}): the ZIP declares {BOMB_BYTES} bytes, more" in out
    assert elapsed < 15 and peak < 300 * 1024 * 1024, (elapsed, peak)


@pytest.mark.parametrize(
    ("member", "failing"),
    [
        (MANIFEST, "manifest.json is readable"),
        (CHECKPOINT, "checkpoint signature (ledger/checkpoint.json)"),
        (PROOFS, "inclusion proofs (ledger/proofs.json)"),
    ],
    ids=["manifest", "checkpoint", "proofs"],
)
def test_json_nested_past_the_recursion_limit_is_a_failed_check_not_a_traceback(
    package: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    member: str,
    failing: str,
) -> None:
    # Deep enough to exhaust Python's recursion, small enough for each member's size cap.
    depth = 200_000 if member == MANIFEST else 20_000
    altered = _rebuilt(package, tmp_path / "deep.zip", {member: b"[" * depth})
    assert main(["verify-export", str(altered)]) == 1
    out = capsys.readouterr().out
    assert f"FAIL {failing}: " in out and "nested deeper than 64 levels" in out


def test_an_entry_nested_past_the_depth_bound_is_a_failed_check(
    package: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with zipfile.ZipFile(package) as archive:
        lines = archive.read(ENTRIES).splitlines(keepends=True)
    # json reads 100 levels happily; the bound is what refuses them.
    lines[0] = b'{"seq":' + b"[" * 100 + b"]" * 100 + b"}\n"
    lines[1] = b"[" * 20_000 + b"\n"
    lines[2] = b"5\n"  # JSON, but no entry
    altered = _rebuilt(package, tmp_path / "deep-entries.zip", {ENTRIES: b"".join(lines)})
    assert main(["verify-export", str(altered)]) == 1
    out = capsys.readouterr().out
    assert "FAIL ledger entry on line 1: unreadable: JSON nested deeper than 64 levels" in out
    assert "FAIL ledger entry on line 2: unreadable: JSON nested deeper than 64 levels" in out
    assert "FAIL ledger entry on line 3: unreadable: not an entry" in out


def test_an_overlong_entry_line_stops_the_reading(
    package: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with zipfile.ZipFile(package) as archive:
        segments = len(json.loads(archive.read(MANIFEST))["segments"])
    long_line = b'{"seq":1,"x":"' + b"a" * 200_000 + b'"}\n'
    altered = _rebuilt(package, tmp_path / "long.zip", {ENTRIES: long_line + b"{}\n" * 50})
    assert main(["verify-export", str(altered)]) == 1
    out = capsys.readouterr().out
    assert f"FAIL ledger entry on line 1: longer than {64 * 1024 + 32 * segments} bytes" in out
    assert "line 2" not in out


def test_a_manifest_listing_more_segments_than_the_bound_is_not_checked_one_by_one(
    package: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with zipfile.ZipFile(package) as archive:
        manifest = json.loads(archive.read(MANIFEST))
    manifest["segments"] = [{}] * 100_001
    altered = _rebuilt(package, tmp_path / "many.zip", {MANIFEST: json.dumps(manifest).encode()})
    assert main(["verify-export", str(altered)]) == 1
    out = capsys.readouterr().out
    assert "FAIL manifest.json is readable: lists 100001 segments and 4 files; the verifier" in out
    assert len(out.splitlines()) < 10


@pytest.mark.parametrize("keep", ["4", "100", "half", "-200", "-1"])
def test_a_package_cut_short_is_a_failed_check(
    package: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], keep: str
) -> None:
    """As an interrupted download leaves it: a prefix, at offsets inside the first header, the
    manifest, the footage, the central directory and its very last byte."""
    whole = package.read_bytes()
    cut = {"half": len(whole) // 2}.get(keep) or int(keep) % len(whole)
    truncated = tmp_path / "cut.zip"
    truncated.write_bytes(whole[:cut])

    assert main(["verify-export", str(truncated)]) == 1
    out = capsys.readouterr().out
    assert (
        "FAIL package is a complete ZIP: package is truncated: the ZIP's central directory is "
        f"missing ({cut} bytes present" in out
    )
    assert out.splitlines()[-1] == "export DOES NOT verify: 1 of 1 checks failed"


def test_a_damaged_central_directory_is_a_failed_check(
    package: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    whole = bytearray(package.read_bytes())
    with zipfile.ZipFile(package) as archive:
        directory = archive.start_dir
    whole[directory : directory + 4] = b"XXXX"  # the first central directory header's magic
    damaged = tmp_path / "damaged.zip"
    damaged.write_bytes(bytes(whole))
    assert main(["verify-export", str(damaged)]) == 1
    assert "FAIL package is a complete ZIP: the ZIP's central directory is damaged" in (
        capsys.readouterr().out
    )


def test_many_thousand_members_are_counted_in_linear_time(
    package: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    crowded = tmp_path / "crowded.zip"
    with zipfile.ZipFile(package) as source, zipfile.ZipFile(crowded, "w") as copy:
        for info in source.infolist():
            copy.writestr(info, source.read(info.filename))
        for index in range(60_000):
            copy.writestr(f"x/{index}", b"")
    started = time.monotonic()
    assert main(["verify-export", str(crowded)]) == 1
    assert time.monotonic() - started < 5
    out = capsys.readouterr().out
    assert "FAIL no member outside the manifest: unlisted: x/0, x/1, x/10," in out
    assert "and 59980 more" in out


def test_a_member_compressed_with_bzip2_is_not_inflated(
    package: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "bzip2.zip"
    with zipfile.ZipFile(package) as source, zipfile.ZipFile(target, "w") as copy:
        for info in source.infolist():
            data = source.read(info.filename)
            if info.filename == ENTRIES:
                info.compress_type = zipfile.ZIP_BZIP2
            copy.writestr(info, data)
    assert main(["verify-export", str(target)]) == 1
    assert (
        f"FAIL file {ENTRIES}: compression method {zipfile.ZIP_BZIP2}; the verifier reads only"
        in capsys.readouterr().out
    )


def _junk_with_a_directory() -> bytes:
    """Random bytes ending in an end-of-central-directory record that points at a central
    directory entry of an impossible ZIP version (zipfile raises NotImplementedError)."""
    junk = random.Random(11).randbytes(4096)
    entry = struct.pack("<4s4B4HL2L5H2L", b"PK\x01\x02", 200, 0, 200, 0, *([0] * 14))
    end = struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, 1, 1, len(entry), len(junk), 0)
    return junk + entry + end


@pytest.mark.parametrize(
    "content",
    [
        random.Random(7).randbytes(4096),
        random.Random(8).randbytes(1024 * 1024),
        b"",
        "证据包\n".encode(),
        _junk_with_a_directory(),
    ],
    ids=["random-4k", "random-1m", "empty", "text", "junk-with-a-directory"],
)
def test_a_file_that_is_no_zip_at_all_is_bad_input(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: bytes
) -> None:
    path = tmp_path / "not-a-package.zip"
    path.write_bytes(content)
    assert main(["verify-export", str(path)]) == 2
    assert "not a ZIP file" in capsys.readouterr().err


def test_the_console_script_answers_a_truncated_package_without_a_traceback(
    package: Path, tmp_path: Path
) -> None:
    truncated = tmp_path / "cut.zip"
    truncated.write_bytes(package.read_bytes()[:-5000])
    done = subprocess.run(
        [sys.executable, "-m", "services.cli", "verify-export", str(truncated), "--json"],
        cwd=ROOT,
        env={k: v for k, v in os.environ.items() if not k.startswith("EXAMVAULT_")},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1, done.stderr
    report = json.loads(done.stdout)
    assert report["outcome"] == "failed"
    assert [check["check"] for check in report["checks"]] == ["package is a complete ZIP"]
