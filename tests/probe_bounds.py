"""Measure what probing one file costs: wall time and peak memory, in a forked child each.

`python -m tests.probe_bounds` imports PyAV and the probe once, then for each path read from
stdin (one a line) forks a child that probes it and reports, as one JSON line on stdout, the
outcome (`stored` or the ProbeError code), the seconds it took and how far the child's peak
resident memory rose above what it inherited (`ru_maxrss` starts at the parent's size on
fork). A child that outlives the time limit is killed and reported as `hang`; one that dies
otherwise as `crash`. Memory allocated by FFmpeg in C is counted, which tracemalloc would miss.
"""

from __future__ import annotations

import json
import os
import resource
import select
import signal
import sys
import time
from pathlib import Path

from services.ingest.probe import ProbeError, probe_recording


def _child(path: Path, report: int) -> None:
    inherited = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.monotonic()
    try:
        probe = probe_recording(path)
        outcome = "damaged" if getattr(probe, "damaged", ()) else "stored"
    except ProbeError as exc:
        outcome = exc.code
    seconds = time.monotonic() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    result = {"outcome": outcome, "seconds": seconds, "peak_mib": (peak - inherited) / 1024}
    os.write(report, json.dumps(result).encode())


def measure(path: Path, limit_seconds: float) -> dict[str, object]:
    read_end, write_end = os.pipe()
    started = time.monotonic()
    pid = os.fork()
    if pid == 0:  # the child
        os.close(read_end)
        try:
            _child(path, write_end)
        finally:
            os._exit(0)
    os.close(write_end)
    try:
        ready, _, _ = select.select([read_end], [], [], limit_seconds)
        if not ready:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            return {"outcome": "hang", "seconds": time.monotonic() - started, "peak_mib": 0.0}
        data = b""
        while chunk := os.read(read_end, 65536):
            data += chunk
        _, status = os.waitpid(pid, 0)
    finally:
        os.close(read_end)
    if not data:
        return {"outcome": f"crash (status {status})", "seconds": 0.0, "peak_mib": 0.0}
    return json.loads(data)


def main() -> int:
    limit = float(sys.argv[1]) if len(sys.argv) > 1 else 60.0
    for line in sys.stdin:
        path = Path(line.rstrip("\n"))
        result = measure(path, limit)
        print(json.dumps({"path": str(path), **result}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
