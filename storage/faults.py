"""Test-only crash points: `fault_point("ingest.committed")` marks a step that a SIGKILL must be
able to interrupt without losing or half-writing evidence (tests/ingest/test_crash.py).

Inert unless `arm()` was called, which only the command line does, from
EXAMVAULT_FAULT_POINT, and only beside EXAMVAULT_TEST_FAULTS=1 (services/settings.py refuses
the one without the other). Armed with `NAME` or `NAME:N`, the process kills itself the Nth
time (default the first) it reaches that step.
"""

from __future__ import annotations

import logging
import os
import signal
import threading

logger = logging.getLogger(__name__)

# Every step a test may crash at, and where it is.
POINTS: dict[str, str] = {
    "ingest.staged": "the bytes are read and hashed (local store: a durable staging copy)",
    "ingest.blob_stored": "the blob is durable (and locked), no row yet",
    "ingest.committed": "the segment row and its ledger entry are committed, the arrival not "
    "yet removed",
    "quarantine.recorded": "a rejected file is kept and recorded, the arrival not yet removed",
    "s3.multipart_part": "the Nth part of a multipart upload was read and is going up",
    "s3.multipart_completed": "a multipart upload is complete, not yet verified nor locked",
    "upload.renamed": "an HTTP upload was renamed to .bin, not yet handed to the pipeline",
    "migration.applied": "the Nth migration of an upgrade ran and stamped its revision, the "
    "upgrade's transaction not yet committed",
}

_lock = threading.Lock()
_armed: str | None = None
_at_hit = 1
_hits = 0


def parse(spec: str) -> tuple[str, int]:
    """`NAME` or `NAME:N` -> (NAME, N); ValueError saying what is allowed."""
    name, _, count = spec.strip().partition(":")
    if name not in POINTS:
        raise ValueError(
            f"EXAMVAULT_FAULT_POINT={spec!r}: unknown step; known: {', '.join(sorted(POINTS))}"
        )
    if count and not (count.isdigit() and int(count) >= 1):
        raise ValueError(f"EXAMVAULT_FAULT_POINT={spec!r}: the count after ':' must be 1 or more")
    return name, int(count or 1)


def arm(spec: str | None) -> None:
    """Kill this process at the step `spec` names (None disarms)."""
    global _armed, _at_hit, _hits
    with _lock:
        if spec is None:
            _armed, _at_hit, _hits = None, 1, 0
            return
        _armed, _at_hit = parse(spec)
        _hits = 0
    logger.warning("fault injection armed: SIGKILL at %s (hit %d)", _armed, _at_hit)


def fault_point(name: str) -> None:
    if _armed is None or name != _armed:
        return
    global _hits
    with _lock:
        _hits += 1
        due = _hits == _at_hit
    if due:
        # The test reads this line to know the kill landed where it asked.
        logger.warning("fault point %s reached (hit %d): SIGKILL", name, _at_hit)
        for handler in logging.getLogger().handlers:
            handler.flush()
        os.kill(os.getpid(), signal.SIGKILL)
