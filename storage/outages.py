"""Which failures are outages of what examvault depends on, as opposed to bugs or bad input.

An outage (the object store or the database does not answer, the disk is full) is nobody's
fault in the request: the client is told to retry (503 + Retry-After), the worker keeps the
file and tries again, and the log gets one line, not a traceback.
"""

from __future__ import annotations

from dataclasses import dataclass

from storage.blobs import StoreUnavailable
from storage.db import DatabaseUnavailable
from storage.space import is_disk_full


@dataclass(frozen=True)
class Outage:
    code: str  # stable, for clients: store_unavailable | database_unavailable | disk_full
    message: str


def outage_of(exc: BaseException) -> Outage | None:
    """The outage behind `exc` (itself or what it was raised from), or None."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, StoreUnavailable):
            return Outage("store_unavailable", "the evidence store does not answer; retry later")
        if isinstance(current, DatabaseUnavailable):
            return Outage("database_unavailable", "the database does not answer; retry later")
        current = current.__cause__ or current.__context__
    if is_disk_full(exc):
        return Outage("disk_full", "the server's disk is full; retry later")
    return None
