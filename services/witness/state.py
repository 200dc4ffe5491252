"""A witness's only memory: per log key, the size and root of the last checkpoint it cosigned.

One small JSON file in the witness's data directory, replaced whole (write, fsync, rename, fsync
the directory) so a crash leaves the old state or the new, never a torn one. Every
read-check-write runs under a lock (a thread lock, and flock for a second process on the same
directory): two requests racing could otherwise each cosign a different root for one size.
"""

from __future__ import annotations

import fcntl
import json
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

STATE_FILE = "witness-state.json"
_LOCK_FILE = ".witness-state.lock"


class WitnessStateCorrupt(RuntimeError):
    """The state file is unreadable: cosigning without it could contradict an earlier answer."""


@dataclass(frozen=True)
class LatestCosigned:
    size: int
    root: str


class WitnessState:
    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.path = data_dir / STATE_FILE
        self._thread_lock = threading.Lock()
        data_dir.mkdir(parents=True, exist_ok=True)

    @contextmanager
    def locked(self) -> Iterator[dict[str, LatestCosigned]]:
        """The state, held exclusively until the block ends; `save` inside it to change it."""
        with self._thread_lock, (self.data_dir / _LOCK_FILE).open("a") as lock:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
            try:
                yield self._read()
            finally:
                fcntl.flock(lock.fileno(), fcntl.LOCK_UN)

    def latest(self) -> dict[str, LatestCosigned]:
        with self.locked() as logs:
            return logs

    def _read(self) -> dict[str, LatestCosigned]:
        try:
            document = json.loads(self.path.read_bytes())
        except FileNotFoundError:
            return {}
        except ValueError as exc:
            raise WitnessStateCorrupt(f"{self.path} is not JSON: {exc}") from exc
        try:
            return {
                key_id: LatestCosigned(int(item["size"]), str(item["root"]))
                for key_id, item in document["logs"].items()
            }
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise WitnessStateCorrupt(f"{self.path} is not a witness state: {exc!r}") from exc

    def save(self, logs: dict[str, LatestCosigned]) -> None:
        """Replace the state file; call only inside `locked()`."""
        document = {
            "logs": {key_id: {"size": x.size, "root": x.root} for key_id, x in logs.items()}
        }
        tmp = self.path.with_name(f".{STATE_FILE}.tmp")
        with tmp.open("wb") as writer:
            writer.write(json.dumps(document, sort_keys=True, indent=2).encode("utf-8"))
            writer.flush()
            os.fsync(writer.fileno())
        os.replace(tmp, self.path)
        directory = os.open(self.data_dir, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
