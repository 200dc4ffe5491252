"""Is the process that started a piece of work (a purge run, an export stream) still alive?

A SIGKILLed process cannot record that it died, so the work it owned stays "running" in the
database until someone else decides it is over. The owner is recorded as
`host:pid:start` (`start` is the process's start time in clock ticks since boot, from
/proc): on the same host a process that is gone, or a new one that reused the pid (a
container restarted as pid 1), is recognised at once; from another host only a heartbeat older
than `stale` tells.
"""

from __future__ import annotations

import os
import socket
from datetime import datetime, timedelta
from functools import cache


def _start_ticks(pid: int) -> str | None:
    """The process's start time since boot, or None when there is no such process."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as handle:
            stat = handle.read()
    except FileNotFoundError:
        return None
    except OSError:
        stat = ""
    # The command name (field 2) may hold spaces and parentheses: fields follow the last ')'.
    fields = stat.rpartition(")")[2].split()
    if len(fields) > 19:
        return fields[19]
    # No /proc: whether the pid exists at all is the best we can do.
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass
    return "?"


@cache
def process_owner() -> str:
    """This process, as recorded on the work it owns."""
    return f"{socket.gethostname()}:{os.getpid()}:{_start_ticks(os.getpid()) or '?'}"


def owner_is_gone(
    owner: str | None, heartbeat_at: datetime | None, *, now: datetime, stale: timedelta
) -> bool:
    """Whether the work's owner has certainly (same host) or probably (heartbeat older than
    `stale`) ended. An unknown owner (rows from before owners were recorded) is gone."""
    if not owner:
        return True
    if owner == process_owner():
        return False
    host, _, rest = owner.partition(":")
    pid, _, start = rest.partition(":")
    if host == socket.gethostname() and pid.isdigit():
        ticks = _start_ticks(int(pid))
        return ticks is None or (ticks != start and "?" not in (ticks, start))
    return heartbeat_at is None or heartbeat_at < now - stale
