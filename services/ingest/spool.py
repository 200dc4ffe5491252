"""The spool: where recordings wait to become evidence.

Two kinds of waiting file:
- `<spool>/<camera_code>/<start>[_...].<ext>`: dropped by camera hosts (written as `NAME.part`,
  renamed when complete).
- `<spool>/.incoming/<id>.bin` + `<id>.json`: an HTTP upload, complete and acknowledged-to-be;
  the sidecar holds what the request said (camera, name, start header, who pushed it). A
  `<id>.part` is an upload still arriving, or one whose client vanished (never acknowledged,
  so removable).

Only regular files inside the spool's own tree are taken: a symlink (to a file or a camera
folder elsewhere), a FIFO, a socket or a device is skipped, said once in the log, and never
read, moved or removed, so nothing outside the spool is ever touched.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import stat
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from services.ingest.pipeline import Arrival, NotClaimable, file_kind, open_regular_file

logger = logging.getLogger(__name__)

# An upload that stopped arriving this long ago has lost its client.
STALE_UPLOAD_SECONDS = 3600.0
# A completed upload is normally ingested by its own request; the sweep takes over only after
# this long, so that it does not race a request that is still working.
ORPHANED_UPLOAD_SECONDS = 60.0
# An upload's result record (services/ingest/uploads.py) answers its status URL this long.
UPLOAD_RESULT_SECONDS = 24 * 3600.0
# The upload endpoint writes a few hundred bytes; anything far larger is not its sidecar.
SIDECAR_MAX_BYTES = 64 * 1024
# Distinct skipped paths said in the log; past this a hostile tree is only counted.
SKIP_LOG_LIMIT = 1000

_OPEN_FOLDER = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_OPEN_PEEK = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


@dataclass(frozen=True)
class Candidate:
    path: Path
    # Monotonic-free wall time (seconds since epoch) after which the file may be taken.
    ready_at: float


class SkippedPaths:
    """Says why the spool skipped a path, once per path and reason, and for at most `limit`
    paths in all, so that a tree full of symlinks or FIFOs cannot flood the log."""

    def __init__(self, limit: int = SKIP_LOG_LIMIT) -> None:
        self.limit = limit
        self.unlogged = 0
        self._said: set[tuple[str, str]] = set()

    def note(self, path: Path | str, reason: str, *, level: int = logging.WARNING) -> None:
        said = (str(path), reason)
        if said in self._said:
            return
        if len(self._said) >= self.limit:
            if self.unlogged == 0:
                logger.warning(
                    "more than %d paths skipped in the spool; further ones are not logged",
                    self.limit,
                )
            self.unlogged += 1
            return
        self._said.add(said)
        logger.log(level, "skipping %s: %s", path, reason)


def spool_entry_problem(path: Path, spool_dir: Path) -> str | None:
    """Why `path` is not a regular file inside the spool's own tree (every folder on the way
    a real folder, not a symlink), or None when it is one or is gone."""
    try:
        parts = path.relative_to(spool_dir).parts
    except ValueError:
        return f"outside the spool {spool_dir}"
    current = spool_dir
    for index, part in enumerate(parts):
        current = current / part
        try:
            mode = os.lstat(current).st_mode
        except (FileNotFoundError, NotADirectoryError):
            return None
        if index == len(parts) - 1:
            if not stat.S_ISREG(mode):
                return f"{file_kind(mode)}, not a regular file"
        elif not stat.S_ISDIR(mode):
            return f"folder {part!r} is {file_kind(mode)}, not a folder of the spool"
    return None


def is_spool_recording(path: Path, spool_dir: Path) -> bool:
    """A final-named file directly inside a camera folder of the spool."""
    try:
        relative = path.relative_to(spool_dir)
    except ValueError:
        return False
    parts = relative.parts
    return (
        len(parts) == 2
        and not parts[0].startswith(".")
        and not parts[1].startswith(".")
        and not parts[1].endswith(".part")
    )


def readable_name(name: str) -> str:
    """A name from the file system as text the database and a JSON record can hold: bytes that
    are not UTF-8 (which Python keeps as lone surrogates) are written as `\\xNN`."""
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def spool_arrival(path: Path, spool_dir: Path) -> Arrival:
    camera_code = path.relative_to(spool_dir).parts[0]
    return Arrival(
        path=path,
        camera_code=readable_name(camera_code),
        file_name=readable_name(path.name),
        source="spool",
        received_at=_arrival_time(path),
    )


def incoming_arrival(data_path: Path, skipped: SkippedPaths | None = None) -> Arrival | None:
    """The arrival an HTTP upload's sidecar describes, or None when the sidecar is unreadable."""
    meta_path = data_path.with_suffix(".json")
    try:
        meta = json.loads(_read_sidecar(meta_path))
        return Arrival(
            path=data_path,
            camera_code=str(meta["camera"]),
            file_name=str(meta["file_name"]),
            source="http",
            received_at=datetime.fromisoformat(meta["received_at"]),
            declared_start=meta.get("declared_start"),
            meta_path=meta_path,
            uploader=str(meta["actor"]) if meta.get("actor") else None,
        )
    except (NotClaimable, OSError, ValueError, KeyError, TypeError) as exc:
        reason = f"its upload sidecar {meta_path.name} is unreadable: {exc}"
        if skipped is None:
            logger.error("skipping %s: %s", data_path, reason)
        else:
            skipped.note(data_path, reason, level=logging.ERROR)
        return None


def _read_sidecar(meta_path: Path) -> bytes:
    # Opened like a recording (regular file, no symlink, no blocking on a FIFO), and bounded.
    fd = open_regular_file(meta_path, meta_path.parent.parent)
    with os.fdopen(fd, "rb") as handle:
        data = handle.read(SIDECAR_MAX_BYTES + 1)
    if len(data) > SIDECAR_MAX_BYTES:
        raise ValueError(f"over {SIDECAR_MAX_BYTES} bytes")
    return data


def scan_spool(
    spool_dir: Path, settle_seconds: float, skipped: SkippedPaths | None = None
) -> Iterator[Candidate]:
    """Every waiting spool recording, each ready once it has stopped changing."""
    skipped = SkippedPaths() if skipped is None else skipped
    try:
        cameras = sorted(_entries(spool_dir), key=lambda entry: entry.name)
    except FileNotFoundError:
        return
    for camera in cameras:
        if camera.name.startswith("."):
            continue
        if not camera.is_dir(follow_symlinks=False):
            skipped.note(camera.path, f"{_kind(camera)}, not a camera folder")
            continue
        try:
            entries = sorted(_entries(camera.path), key=lambda entry: entry.name)
        except FileNotFoundError:
            continue
        for entry in entries:
            path = Path(entry.path)
            if not is_spool_recording(path, spool_dir):
                continue
            if not entry.is_file(follow_symlinks=False):
                skipped.note(path, f"{_kind(entry)}, not a regular file")
                continue
            yield settled(path, settle_seconds)


def _entries(folder: str | Path) -> list[os.DirEntry[str]]:
    with os.scandir(folder) as listing:
        return list(listing)


def _kind(entry: os.DirEntry[str]) -> str:
    try:
        return file_kind(entry.stat(follow_symlinks=False).st_mode)
    except FileNotFoundError:
        return "gone"


def settled(path: Path, settle_seconds: float) -> Candidate:
    try:
        modified = os.lstat(path).st_mtime
    except FileNotFoundError:
        modified = 0.0
    return Candidate(path, modified + settle_seconds)


def sweep_incoming(
    incoming_dir: Path, now: float | None = None, skipped: SkippedPaths | None = None
) -> Iterator[Candidate]:
    """Completed uploads whose request died; also removes what was never acknowledged."""
    skipped = SkippedPaths() if skipped is None else skipped
    now = time.time() if now is None else now
    # Through a descriptor of the folder itself: were `.incoming` a symlink, or swapped for
    # one mid-sweep, the removals below would land outside the spool.
    try:
        folder = os.open(incoming_dir, _OPEN_FOLDER)
    except FileNotFoundError:
        return
    except OSError as exc:
        skipped.note(incoming_dir, f"not a folder of the spool ({exc.strerror}); not swept")
        return
    try:
        yield from _sweep(incoming_dir, folder, now, skipped)
    finally:
        os.close(folder)


def _sweep(
    incoming_dir: Path, folder: int, now: float, skipped: SkippedPaths
) -> Iterator[Candidate]:
    with os.scandir(folder) as listing:
        names = sorted(entry.name for entry in listing)
    for name in names:
        path = incoming_dir / name
        try:
            status = os.stat(name, dir_fd=folder, follow_symlinks=False)
        except FileNotFoundError:
            continue
        if not stat.S_ISREG(status.st_mode):
            skipped.note(path, f"{file_kind(status.st_mode)}, not a regular file")
            continue
        age = now - status.st_mtime
        if path.suffix == ".bin":
            if age >= ORPHANED_UPLOAD_SECONDS:
                yield Candidate(path, now)
        elif path.suffix == ".part":
            if age >= STALE_UPLOAD_SECONDS and _unlocked(name, folder):
                logger.warning("removing upload %s: its client stopped sending", name)
                _remove(name, folder)
                _remove(path.with_suffix(".json").name, folder)
        elif path.suffix == ".result":
            if age >= UPLOAD_RESULT_SECONDS:
                _remove(name, folder)
        elif path.suffix == ".json":
            data_missing = not (
                _present(path.with_suffix(".bin").name, folder)
                or _present(path.with_suffix(".part").name, folder)
            )
            if data_missing and age >= STALE_UPLOAD_SECONDS:
                _remove(name, folder)


def _present(name: str, folder: int) -> bool:
    try:
        os.stat(name, dir_fd=folder, follow_symlinks=False)
    except FileNotFoundError:
        return False
    return True


def _remove(name: str, folder: int) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(name, dir_fd=folder)


def _unlocked(name: str, folder: int) -> bool:
    """True when no live request holds the upload (the writer keeps a lock while writing)."""
    try:
        fd = os.open(name, _OPEN_PEEK, dir_fd=folder)
    except OSError:
        return False
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return False
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False
    finally:
        os.close(fd)


def _arrival_time(path: Path) -> datetime:
    # When the file appeared in the spool is the best arrival time we have after a restart.
    try:
        return datetime.fromtimestamp(os.lstat(path).st_mtime, UTC)
    except FileNotFoundError:
        return datetime.now(UTC)
