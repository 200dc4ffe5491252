"""Disk space: how much is free where examvault writes, and what running out looks like.

A full disk is an outage of the machine, not a fault of the file being written: the write is
answered "retry later" (services/api/errors.py) and readiness says so, never "bad file".
"""

from __future__ import annotations

import errno
import shutil
import sqlite3
from pathlib import Path

# ENOSPC: the filesystem is full; EDQUOT: this user's quota is.
_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})


class DiskFull(OSError):
    """A write failed because the filesystem (or the database's) is full. An OSError with
    ENOSPC, so code that already handles OSError still does."""

    def __init__(self, message: str) -> None:
        super().__init__(errno.ENOSPC, message)

    def __str__(self) -> str:
        return str(self.strerror)


def is_disk_full(exc: BaseException) -> bool:
    """True when `exc`, or an exception it was raised from, says the disk is full: an OSError
    with ENOSPC/EDQUOT, or SQLite's "database or disk is full"."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno in _FULL_ERRNOS:
            return True
        if (
            isinstance(current, sqlite3.Error)
            and getattr(current, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL
        ):
            return True
        current = current.__cause__ or current.__context__
    return False


def free_bytes(path: Path) -> int | None:
    """Bytes free to an unprivileged writer on the filesystem holding `path` (or its nearest
    existing parent: the spool may not exist yet); None when nothing on the way exists."""
    for candidate in (path, *path.parents):
        try:
            return shutil.disk_usage(candidate).free
        except FileNotFoundError:
            continue
        except OSError:
            return None
    return None
