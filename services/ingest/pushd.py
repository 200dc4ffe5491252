"""The camera host's push daemon (`examvault push --watch DIR` or `--config FILE`).

It runs unattended for years beside the recorder: it picks up finished segments, uploads each
with its SHA-256, retries transient failures with backoff, and removes a local file only after
the server confirmed those very bytes (201 stored, 200 already stored). Everything it must
remember across a crash or a reboot is in a small SQLite file (`state`): the digest of each
waiting file, and which files the server already confirmed, so a confirmed file is removed
after a restart without being sent again.

Folder layouts (both as the server's spool names them):
- a watched folder without a camera: `DIR/<camera_code>/<file>`;
- a folder of one camera (`--camera`, or a `[[camera]]` entry of the config): `DIR/<file>`.
A file is finished when it no longer ends in `.part`/`.tmp` and has not changed for
`settle_seconds` (recorders that write in place and never rename). Beside the files of a camera:
`sent/` (confirmed files, with `after_send = "move"`) and `rejected/` (422: the file and the
server's reason as `NAME.reason.json`).
"""

from __future__ import annotations

import logging
import os
import shutil
import sqlite3
import threading
import time
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from services.ingest.push import (
    FileDigest,
    ProgressCallback,
    PushError,
    PushInterrupted,
    digest_file,
    report_status,
    retrying,
    still_the_confirmed_bytes,
    upload,
)
from services.ingest.quarantine import write_json_atomically
from services.registry import CODE as CAMERA_CODE

logger = logging.getLogger(__name__)

SENT_DIR = "sent"
REJECTED_DIR = "rejected"
_UNFINISHED_SUFFIXES = (".part", ".tmp", ".partial", ".crdownload")
# Refused for this file only (400 bad name, 403 camera not allowed, 413 too large): a fixed
# server or token may accept it later, so it is tried again now and then, not every scan.
REFUSED_RETRY_SECONDS = 3600.0
# How often the daemon tells the centre its backlog and last error (PUT /api/v1/hosts/report):
# the centre's machines page shows it; the server cannot see a host's disk otherwise.
REPORT_SECONDS = 60.0
_REPORT_TIMEOUT_SECONDS = 10.0
_DISK_WARNING_EVERY_SECONDS = 600.0


class ConfigError(Exception):
    """The daemon's configuration is unusable; one sentence for the technician."""


@dataclass(frozen=True)
class CameraFolder:
    path: Path
    camera: str | None = None  # None: one sub-folder per camera code


@dataclass
class DaemonConfig:
    server: str
    token: str
    folders: list[CameraFolder]
    state_path: Path
    status_path: Path | None = None
    after_send: Literal["delete", "move"] = "delete"
    settle_seconds: float = 10.0
    scan_seconds: float = 5.0
    timeout_seconds: float = 300.0
    initial_backoff_seconds: float = 1.0
    max_backoff_seconds: float = 300.0
    bytes_per_second: float | None = None
    min_free_bytes: int = 2 * 1024**3
    report_seconds: float = REPORT_SECONDS  # 0: never report to the centre
    once: bool = False


_CONFIG_KEYS = {
    "server", "token", "token_file", "state", "status_file", "after_send", "settle_seconds",
    "scan_seconds", "timeout_seconds", "max_backoff_seconds", "max_bytes_per_second",
    "min_free_bytes", "camera", "watch", "report_seconds",
}  # fmt: skip


def read_config_file(path: Path) -> dict[str, Any]:
    """The TOML config of a host with several cameras (see docs/operations.md)."""
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read the config file {path}: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"the config file {path} is not valid TOML: {exc}") from exc
    unknown = sorted(set(document) - _CONFIG_KEYS)
    if unknown:
        raise ConfigError(f"the config file {path} has unknown keys: {', '.join(unknown)}")
    base = path.parent
    folders: list[CameraFolder] = []
    for entry in document.get("camera", []):
        if not isinstance(entry, dict) or "code" not in entry or "dir" not in entry:
            raise ConfigError(f"each [[camera]] in {path} needs `code` and `dir`")
        folders.append(CameraFolder(base / entry["dir"], str(entry["code"])))
    for entry in document.get("watch", []):
        if not isinstance(entry, dict) or "dir" not in entry:
            raise ConfigError(f"each [[watch]] in {path} needs `dir`")
        folders.append(CameraFolder(base / entry["dir"], None))
    document["folders"] = folders
    for key in ("state", "status_file", "token_file"):
        if key in document:
            document[key] = base / document[key]
    return document


def read_token_file(path: Path) -> str:
    try:
        token = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError(f"cannot read the token file {path}: {exc.strerror}") from exc
    if not token:
        raise ConfigError(f"the token file {path} is empty")
    return token


def validate(config: DaemonConfig) -> None:
    if not config.folders:
        raise ConfigError("nothing to watch: give --watch DIR or [[camera]]/[[watch]] entries")
    for folder in config.folders:
        if not folder.path.is_dir():
            raise ConfigError(f"the folder {folder.path} does not exist")
        if folder.camera is not None and not CAMERA_CODE.match(folder.camera):
            raise ConfigError(f"{folder.camera!r} is not a camera code")
    if config.after_send not in ("delete", "move"):
        raise ConfigError("after_send must be `delete` or `move`")


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class PushState:
    """The daemon's memory across restarts: one row per waiting or held file, the answers
    counted, the last success and the last error."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.connection = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        # A row must be on disk before the file it speaks of is removed.
        self.connection.execute("PRAGMA journal_mode=WAL")
        self.connection.execute("PRAGMA synchronous=FULL")
        self.connection.executescript(
            """
            CREATE TABLE IF NOT EXISTS segment_file (
                path TEXT PRIMARY KEY,
                camera TEXT NOT NULL,
                size INTEGER NOT NULL,
                mtime_ns INTEGER NOT NULL,
                sha256 TEXT,
                state TEXT NOT NULL,
                attempts INTEGER NOT NULL DEFAULT 0,
                reason TEXT,
                updated_at TEXT NOT NULL
            );
            CREATE TABLE IF NOT EXISTS answer_count (
                answer TEXT PRIMARY KEY, total INTEGER NOT NULL
            );
            CREATE TABLE IF NOT EXISTS last_event (
                kind TEXT PRIMARY KEY, at TEXT NOT NULL, file TEXT, message TEXT
            );
            """
        )

    def close(self) -> None:
        self.connection.close()

    def row(self, path: Path) -> dict[str, Any] | None:
        cursor = self.connection.execute(
            "SELECT camera, size, mtime_ns, sha256, state, attempts, reason, updated_at"
            " FROM segment_file WHERE path = ?",
            (str(path),),
        )
        found = cursor.fetchone()
        if found is None:
            return None
        keys = ("camera", "size", "mtime_ns", "sha256", "state", "attempts", "reason", "at")
        return dict(zip(keys, found, strict=True))

    def put(
        self,
        path: Path,
        camera: str,
        digest: FileDigest,
        state: str,
        *,
        reason: str | None = None,
        attempts: int = 0,
    ) -> None:
        self.connection.execute(
            "INSERT OR REPLACE INTO segment_file"
            " (path, camera, size, mtime_ns, sha256, state, attempts, reason, updated_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (str(path), camera, digest.size, digest.mtime_ns, digest.sha256, state, attempts,
             reason, _now()),
        )  # fmt: skip

    def forget(self, path: Path) -> None:
        self.connection.execute("DELETE FROM segment_file WHERE path = ?", (str(path),))

    def forget_missing(self) -> None:
        """Rows of files gone from disk (removed, or moved by the technician)."""
        paths = [row[0] for row in self.connection.execute("SELECT path FROM segment_file")]
        for path in paths:
            if not os.path.lexists(path):
                self.forget(Path(path))

    def held(self) -> list[dict[str, Any]]:
        cursor = self.connection.execute(
            "SELECT path, state, reason, updated_at FROM segment_file"
            " WHERE state IN ('conflict', 'refused') ORDER BY path"
        )
        return [dict(zip(("file", "state", "reason", "at"), row, strict=True)) for row in cursor]

    def count(self, answer: str) -> None:
        self.connection.execute(
            "INSERT INTO answer_count (answer, total) VALUES (?, 1)"
            " ON CONFLICT (answer) DO UPDATE SET total = total + 1",
            (answer,),
        )

    def answers(self) -> dict[str, int]:
        return dict(self.connection.execute("SELECT answer, total FROM answer_count"))

    def event(self, kind: str, file: Path | None, message: str) -> None:
        self.connection.execute(
            "INSERT OR REPLACE INTO last_event (kind, at, file, message) VALUES (?, ?, ?, ?)",
            (kind, _now(), str(file) if file else None, message),
        )

    def events(self) -> dict[str, dict[str, Any]]:
        cursor = self.connection.execute("SELECT kind, at, file, message FROM last_event")
        return {kind: {"at": at, "file": file, "message": msg} for kind, at, file, msg in cursor}


@dataclass
class Waiting:
    path: Path
    camera: str
    size: int
    mtime: float


@dataclass
class _Status:
    backlog_files: int = 0
    backlog_bytes: int = 0
    unfinished_files: int = 0  # `.part` or still changing: the recorder is writing them
    in_flight: dict[str, Any] | None = None
    disk: dict[str, int] = field(default_factory=dict)
    disk_low: bool = False


def finished_segments(config: DaemonConfig, now: float) -> tuple[list[Waiting], int]:
    """The files ready to push, oldest first, and how many are not finished yet."""
    ready: list[Waiting] = []
    unfinished = 0
    for folder in config.folders:
        for camera, directory in _camera_dirs(folder):
            try:
                entries = list(os.scandir(directory))
            except OSError:
                logger.warning("cannot list %s", directory)
                continue
            for entry in entries:
                if entry.name.startswith(".") or not entry.is_file(follow_symlinks=False):
                    continue
                if entry.name.endswith(_UNFINISHED_SUFFIXES) or entry.name.endswith(".reason.json"):
                    unfinished += entry.name.endswith(_UNFINISHED_SUFFIXES)
                    continue
                info = entry.stat(follow_symlinks=False)
                if now - info.st_mtime < config.settle_seconds:
                    unfinished += 1
                    continue
                ready.append(Waiting(Path(entry.path), camera, info.st_size, info.st_mtime))
    ready.sort(key=lambda item: (item.mtime, str(item.path)))
    return ready, unfinished


def _camera_dirs(folder: CameraFolder) -> Iterator[tuple[str, Path]]:
    if folder.camera is not None:
        yield folder.camera, folder.path
        return
    try:
        children = sorted(os.scandir(folder.path), key=lambda entry: entry.name)
    except OSError:
        logger.warning("cannot list %s", folder.path)
        return
    for child in children:
        named_for_a_camera = CAMERA_CODE.match(child.name) and child.name not in (
            SENT_DIR,
            REJECTED_DIR,
        )
        if named_for_a_camera and child.is_dir(follow_symlinks=False):
            yield child.name, Path(child.path)


class PushDaemon:
    """Scan, push, confirm, remove; until `stop` is set (SIGTERM) or, with `once`, until every
    finished file was tried."""

    def __init__(
        self,
        config: DaemonConfig,
        *,
        stop: threading.Event | None = None,
        progress: Any = None,
    ) -> None:
        self.config = config
        self.stop = stop or threading.Event()
        self.state = PushState(config.state_path)
        self.status = _Status()
        self.progress = progress  # a rich Progress on a terminal, else None
        self._last_disk_warning = 0.0
        self._last_report = float("-inf")
        self._reporting = config.report_seconds > 0

    def run(self) -> int:
        """0 when stopped or idle after `once`; 1 when `once` left files unsent."""
        logger.info(
            "push daemon watching %s for %s",
            ", ".join(str(folder.path) for folder in self.config.folders),
            self.config.server,
        )
        try:
            while not self.stop.is_set():
                left = self.run_pass()
                if self.config.once:
                    return 1 if left else 0
                self.stop.wait(self.config.scan_seconds)
            logger.info("push daemon stopped; nothing unconfirmed was removed")
            return 0
        finally:
            self.write_status()
            self.state.close()

    def run_pass(self) -> int:
        """Push every finished file once through; how many stay unsent."""
        self.state.forget_missing()
        ready, unfinished = finished_segments(self.config, time.time())
        self.status.unfinished_files = unfinished
        self._guard_disk(ready)
        self._set_backlog(ready)
        left = 0
        for item in ready:
            if self.stop.is_set():
                break
            if not self._push_one(item):
                left += 1
            self._set_backlog(ready)
            self.write_status()
            self.report_if_due()
        self.write_status()
        self.report_if_due(force=self.config.once)
        return left

    def report_if_due(self, *, force: bool = False) -> None:
        """Tell the centre the backlog and the last success and error, at most every
        `report_seconds`. Best effort: a failed report is logged and tried at the next due
        point, never delays a push; a server without the route (404) is not asked again."""
        if not self._reporting:
            return
        if not force and time.monotonic() - self._last_report < self.config.report_seconds:
            return
        self._last_report = time.monotonic()
        events = self.state.events()
        success, error = events.get("success") or {}, events.get("error") or {}
        report = {
            "backlog_files": self.status.backlog_files,
            "backlog_bytes": self.status.backlog_bytes,
            "unfinished_files": self.status.unfinished_files,
            "last_success_at": success.get("at"),
            "last_error_at": error.get("at"),
            "last_error": error.get("message"),
            "disk_low": self.status.disk_low,
        }
        try:
            status = report_status(
                self.config.server, self.config.token, report, timeout=_REPORT_TIMEOUT_SECONDS
            )
        except PushError as exc:
            logger.info("status report not delivered (tried again later): %s", exc)
            return
        if status == 404:
            logger.info("the server takes no status reports (an older version); not reporting")
            self._reporting = False
        elif status >= 300:
            logger.warning("the server refused the status report: HTTP %d", status)

    def _set_backlog(self, ready: list[Waiting]) -> None:
        waiting = [item for item in ready if item.path.exists()]
        self.status.backlog_files = len(waiting)
        self.status.backlog_bytes = sum(item.size for item in waiting)

    def _push_one(self, item: Waiting) -> bool:
        """True when the file was confirmed and removed (or moved)."""
        row = self.state.row(item.path)
        try:
            digest = digest_file(item.path)
        except PushError as exc:
            logger.info("%s: %s; tried again later", item.path, exc)
            return False
        same_bytes = row is not None and (row["size"], row["mtime_ns"]) == (
            digest.size,
            digest.mtime_ns,
        )
        if same_bytes and row is not None:
            if row["state"] == "confirmed" and row["sha256"] == digest.sha256:
                # Confirmed before a crash or restart, not yet removed: no need to send again.
                return self._remove_confirmed(item, digest, int(row.get("attempts") or 0))
            if row["state"] == "conflict":
                return False  # kept and said why; once the file changes it gets a fresh try
            if row["state"] == "refused" and not _older_than(row["at"], REFUSED_RETRY_SECONDS):
                return False
        self.state.put(item.path, item.camera, digest, "waiting")
        attempts = 0

        def before_sleep(error: PushError, pause: float) -> None:
            self._record_error(item, error)
            logger.warning("%s: %s; trying again in %.1f s", item.path.name, error, pause)

        try:
            for attempt in retrying(
                attempts=None,
                stop=self.stop,
                initial_seconds=self.config.initial_backoff_seconds,
                max_seconds=self.config.max_backoff_seconds,
                before_sleep=before_sleep,
            ):
                with attempt:
                    attempts += 1
                    if attempts > 1:
                        digest = digest_file(item.path)  # it may have changed meanwhile
                    answer = self._upload(item, digest)
        except PushInterrupted:
            logger.info("%s: upload abandoned (stopping); the file is kept", item.path.name)
            return False
        except PushError as exc:
            return self._held(item, digest, exc, attempts)
        finally:
            self.status.in_flight = None
        status = str(answer["http_status"])
        self.state.count(status)
        # Recorded before anything is removed: a crash from here on removes, never resends.
        self.state.put(item.path, item.camera, digest, "confirmed", attempts=attempts)
        return self._remove_confirmed(item, digest, attempts, answer)

    def _upload(self, item: Waiting, digest: FileDigest) -> dict[str, Any]:
        self.status.in_flight = {"file": str(item.path), "size": digest.size, "since": _now()}
        self.write_status()
        advance: ProgressCallback | None = None
        task = None
        if self.progress is not None:
            task = self.progress.add_task(item.path.name, total=digest.size)

            def advance(sent: int) -> None:
                self.progress.advance(task, sent)

        try:
            return upload(
                item.path,
                digest,
                server=self.config.server,
                token=self.config.token,
                camera=item.camera,
                timeout=self.config.timeout_seconds,
                stop=self.stop,
                bytes_per_second=self.config.bytes_per_second,
                progress=advance,
            )
        except PushError as exc:
            if not isinstance(exc, PushInterrupted):
                self.state.count(exc.answer_key)
            raise
        finally:
            if task is not None:
                self.progress.remove_task(task)

    def _remove_confirmed(
        self, item: Waiting, digest: FileDigest, attempts: int, answer: dict[str, Any] | None = None
    ) -> bool:
        if not still_the_confirmed_bytes(item.path, digest.sha256):
            reason = (
                "the file changed after the server confirmed its SHA-256 "
                f"{digest.sha256}; kept, and sent again as it is now"
            )
            logger.error("%s: %s", item.path, reason)
            self.state.forget(item.path)  # the next pass hashes and sends the new bytes
            self.state.event("error", item.path, reason)
            return False
        if self.config.after_send == "move":
            target = _free_name(item.path.parent / SENT_DIR / item.path.name)
            target.parent.mkdir(exist_ok=True)
            os.replace(item.path, target)
        else:
            item.path.unlink()
        self.state.forget(item.path)
        how = f"HTTP {answer['http_status']}" if answer else "confirmed before a restart"
        message = f"{how}, sha256 {digest.sha256}, {digest.size} bytes, {attempts} attempt(s)"
        self.state.event("success", item.path, message)
        logger.info("sent %s/%s: %s", item.camera, item.path.name, message)
        return True

    def _held(self, item: Waiting, digest: FileDigest, error: PushError, attempts: int) -> bool:
        """A final answer other than a confirmation: the file is never removed."""
        self._record_error(item, error)
        if error.status == 422:
            target = _free_name(item.path.parent / REJECTED_DIR / item.path.name)
            target.parent.mkdir(exist_ok=True)
            write_json_atomically(
                target.with_name(target.name + ".reason.json"),
                {
                    "file": item.path.name,
                    "camera": item.camera,
                    "sha256": digest.sha256,
                    "status": 422,
                    "answer": error.problem,
                    "at": _now(),
                },
            )
            os.replace(item.path, target)
            self.state.forget(item.path)
            logger.error("%s rejected by the server, moved to %s: %s", item.path, target, error)
            return True
        if error.status == 409:
            state = "conflict"
            logger.error(
                "%s kept: the server already holds different bytes for this camera and start "
                "(%s); compare the two recordings, then rename or remove this one",
                item.path,
                error,
            )
        elif error.retryable:
            return False  # interrupted by a stop request between attempts
        else:
            state = "refused"
            logger.error(
                "%s kept: %s; tried again in %d s", item.path, error, REFUSED_RETRY_SECONDS
            )
        self.state.put(item.path, item.camera, digest, state, reason=str(error), attempts=attempts)
        return False

    def _record_error(self, item: Waiting, error: PushError) -> None:
        self.state.event("error", item.path, str(error))
        self.write_status()

    def _guard_disk(self, ready: list[Waiting]) -> None:
        """Low on space: warn, make room from `sent/` (confirmed copies) oldest first, and
        never remove an unsent file to make room."""
        low = False
        self.status.disk = {}
        for folder in self.config.folders:
            try:
                free = shutil.disk_usage(folder.path).free
            except OSError:
                continue
            self.status.disk[str(folder.path)] = free
            if free >= self.config.min_free_bytes:
                continue
            low = True
            freed = self._prune_sent(folder)
            free = shutil.disk_usage(folder.path).free
            if time.monotonic() - self._last_disk_warning >= _DISK_WARNING_EVERY_SECONDS:
                unsent = sum(item.size for item in ready if item.path.is_relative_to(folder.path))
                logger.warning(
                    "disk low at %s: %d bytes free (minimum %d); %d bytes of sent copies "
                    "removed, %d bytes unsent kept (never removed before the server confirms "
                    "them): free space for the recorder or restore the uplink",
                    folder.path,
                    free,
                    self.config.min_free_bytes,
                    freed,
                    unsent,
                )
                self._last_disk_warning = time.monotonic()
        self.status.disk_low = low

    def _prune_sent(self, folder: CameraFolder) -> int:
        sent = [
            path
            for _camera, directory in _camera_dirs(folder)
            for path in (directory / SENT_DIR).glob("*")
            if path.is_file()
        ]
        freed = 0
        for path in sorted(sent, key=lambda candidate: candidate.stat().st_mtime):
            if shutil.disk_usage(folder.path).free >= self.config.min_free_bytes:
                break
            freed += path.stat().st_size
            path.unlink()
        return freed

    def write_status(self) -> None:
        """The status file a monitoring agent reads (JSON, replaced atomically)."""
        if self.config.status_path is None:
            return
        events = self.state.events()
        document = {
            "updated_at": _now(),
            "pid": os.getpid(),
            "server": self.config.server,
            "backlog_files": self.status.backlog_files,
            "backlog_bytes": self.status.backlog_bytes,
            "unfinished_files": self.status.unfinished_files,
            "in_flight": self.status.in_flight,
            "last_success": events.get("success"),
            "last_error": events.get("error"),
            "answers": self.state.answers(),
            "held": self.state.held(),
            "disk_free_bytes": self.status.disk,
            "disk_low": self.status.disk_low,
        }
        try:
            self.config.status_path.parent.mkdir(parents=True, exist_ok=True)
            write_json_atomically(self.config.status_path, document)
        except OSError as exc:
            logger.warning("cannot write the status file %s: %s", self.config.status_path, exc)


def _older_than(at: str, seconds: float) -> bool:
    return (datetime.now(UTC) - datetime.fromisoformat(at)).total_seconds() >= seconds


def _free_name(target: Path) -> Path:
    """`target`, or `NAME.1.ext`, `NAME.2.ext`... when a file of that name is already there."""
    candidate = target
    number = 0
    while candidate.exists():
        number += 1
        candidate = target.with_name(f"{target.stem}.{number}{target.suffix}")
    return candidate
