"""The data directory's disk fills up under a real `examvault serve`: a 30 MiB tmpfs holding
the SQLite database, the spool and the local blob store, filled by the test to the last byte.

What must hold: a push is answered JSON 503 `disk_full` with Retry-After, never a plain 500;
/readyz says unready because writes are failing (even with no free-space floor configured),
/metrics shows the free bytes and counts the refused pushes; once space is back, everything
is acknowledged, reads back with its SHA-256, and the ledger verifies.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
from pathlib import Path

from tests.conftest import CAMERA_FRONT, VideoFactory
from tests.faults.harness import (
    HEALTHZ_BOUND_SECONDS,
    Answer,
    LatencyWatch,
    Pushes,
    check_outage_answer,
    ledger_verifies,
    lost_segments,
    push_until_acknowledged,
    serving,
    tally,
)
from tests.reliability import Reliability


def _fill(disk: Path) -> Path:
    """Write a filler file until the kernel says ENOSPC; returns it."""
    filler = disk / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        for size in (1024 * 1024, 4096, 1):
            with contextlib.suppress(OSError):
                while os.write(fd, b"\0" * size):
                    pass
    finally:
        os.close(fd)
    try:
        (disk / "probe").write_bytes(b"x" * 4096)
    except OSError as exc:
        assert exc.errno == errno.ENOSPC
    else:
        raise AssertionError("the disk still took 4 KiB after filling")
    return filler


def test_disk_full_answers_503_and_readiness_says_so(
    tmp_path: Path, small_disk: Path, make_video: VideoFactory, reliability: Reliability
) -> None:
    files = {
        f"20261124T11{number:02d}00+0800.mp4": make_video(
            f"f{number}.mp4", seconds=1, seed=number
        ).read_bytes()
        for number in range(6)
    }
    names = list(files)
    data_dir = small_disk / "var"
    database_url = f"sqlite:///{data_dir / 'examvault.sqlite3'}"
    data_dir.mkdir()
    acknowledged: dict[str, Answer] = {}
    with serving(tmp_path, database_url, data_dir) as server:
        server.wait_readiness(True)
        for name in names[:2]:
            acknowledged[name] = push_until_acknowledged(server, CAMERA_FRONT, name, files[name])

        with LatencyWatch(f"{server.base_url}/healthz") as health:
            filler = _fill(small_disk)
            pushes = Pushes(server, CAMERA_FRONT, files, names[2:])
            # No free-space floor is set (EXAMVAULT_MIN_FREE_BYTES=0): only the failed writes
            # can tell readiness that the disk is full.
            unready_after, unready = server.wait_readiness(False, timeout=15)
            assert any("disk" in problem for problem in unready.json()["problems"])
            during = list(pushes.join().values())
            for answer in during:
                check_outage_answer(answer, {"disk_full"})
            counted = server.metrics()
            refused = re.search(
                r'examvault_http_ingest_answers_total\{code="disk_full",status="503"\} (\S+)',
                counted,
            )
            assert refused is not None and float(refused.group(1)) >= len(during), counted
            free = re.search(r'examvault_free_bytes\{path="data"\} (\S+)', counted)
            assert free is not None and float(free.group(1)) < 64 * 1024, counted
            assert "examvault_spool_waiting_files" in counted

            filler.unlink()
            ready_after, _ = server.wait_readiness(True, timeout=30)
        assert health.failures == [], health.failures[:3]
        assert health.worst < HEALTHZ_BOUND_SECONDS, (
            f"/healthz took {health.worst:.2f} s while the disk was full"
        )

        for name in names[2:]:
            acknowledged[name] = push_until_acknowledged(server, CAMERA_FRONT, name, files[name])
        lost = lost_segments(server, acknowledged, files)
        assert lost == set()
        assert ledger_verifies(server)
    reliability.record(
        "faults",
        f"disk full (30 MiB tmpfs) during HTTP ingest (unready after {unready_after:.1f} s, "
        f"ready again {ready_after:.1f} s after space came back)",
        tries=len(during),
        acknowledged=len(names) - 2,
        lost=len(lost),
        answers=tally(during),
    )


def test_rejected_pushes_never_fill_the_disk_under_the_free_space_floor(
    tmp_path: Path, small_disk: Path, make_video: VideoFactory, reliability: Reliability
) -> None:
    # The quarantine's budget (20 GiB by default) can be larger than the disk's free space: a
    # camera-host token pushing junk must not be able to fill the disk and so refuse every
    # real segment after it (a kept junk upload then retried for ever on a full disk).
    floor = 2 * 1024 * 1024
    junk = [os.urandom(5 * 1024 * 1024) for _ in range(8)]  # 40 MiB onto a 30 MiB disk
    data_dir = small_disk / "var"
    data_dir.mkdir()
    database_url = f"sqlite:///{data_dir / 'examvault.sqlite3'}"
    video = make_video("after.mp4", seconds=1).read_bytes()
    with serving(tmp_path, database_url, data_dir, EXAMVAULT_MIN_FREE_BYTES=str(floor)) as server:
        server.wait_readiness(True)
        answers = [
            server.push(CAMERA_FRONT, f"20261124T12{number:02d}00+0800.mp4", data)
            for number, data in enumerate(junk)
        ]
        kept = [str(answer.body.get("quarantine_kept")) for answer in answers]
        free = os.statvfs(small_disk).f_bavail * os.statvfs(small_disk).f_frsize
        after = server.push(CAMERA_FRONT, "20261124T130000+0800.mp4", video)
        lost = (
            lost_segments(
                server, {"20261124T130000+0800.mp4": after}, {"20261124T130000+0800.mp4": video}
            )
            if after.status == 201
            else set()
        )
    reliability.record(
        "faults",
        f"8 rejected 5 MiB pushes onto a 30 MiB disk, then a real one ({free // 1024} KiB "
        f"left; kept: {', '.join(kept)})",
        tries=len(answers) + 1,
        acknowledged=1 if after.status == 201 else 0,
        lost=len(lost),
        answers=tally([*answers, after]),
    )
    assert [answer.status for answer in answers] == [422] * len(junk), tally(answers)
    assert free >= floor, f"rejected files left {free} bytes free, under the {floor}-byte floor"
    assert after.status == 201, after.body
    assert lost == set()
