"""Secrets kept in the data directory (the ledger signing key, the footage-link key): made once
on first use, never replaced, readable by the service's user only."""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Callable
from pathlib import Path

logger = logging.getLogger(__name__)


def read_or_create(path: Path, make: Callable[[], bytes]) -> bytes:
    """The file's bytes; if it does not exist, `make()` them and write the file first.

    Written whole under a temporary name (0600 from the start), then hard-linked into place:
    link fails when the name exists, so a racing process never replaces or sees a torn key."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{uuid.uuid4().hex}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as writer:
            writer.write(make())
            writer.flush()
            os.fsync(writer.fileno())
        try:
            os.link(tmp, path)
            logger.info("created %s", path)
        except FileExistsError:
            logger.info("another process created %s first; using it", path)
    finally:
        tmp.unlink(missing_ok=True)
    return path.read_bytes()
