"""The camera-host client (`examvault push`): upload finished segments, and delete the local
copy only after the server confirmed it durable with the same SHA-256.

One upload is `push_file`; every way it can fail (an HTTP answer, a refused or reset
connection, a time-out, an unreadable answer) ends in one `PushError` that says whether trying
again can help and how long the server asked to wait. `retrying` is the shared policy of the
one-shot command and the daemon (services/ingest/pushd.py): exponential backoff with jitter,
never sooner than `Retry-After`.
"""

from __future__ import annotations

import email.utils
import hashlib
import http.client
import json
import os
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any
from urllib.parse import quote

from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    stop_any,
    wait_exponential_jitter,
)

from storage.blobs import CHUNK

# A server may ask for a long pause, but a typo'd Retry-After must not park a host for days.
RETRY_AFTER_CAP_SECONDS = 3600.0

ProgressCallback = Callable[[int], None]


class PushError(Exception):
    """The upload was not confirmed; the local file is kept.

    `status` is the HTTP status (None when no answer came), `code` the server's error code,
    `retryable` whether the same bytes may succeed later (network, 408, 429, 5xx, a checksum
    changed under us), `retry_after` the server's `Retry-After` in seconds.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
        retryable: bool = False,
        retry_after: float | None = None,
        problem: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.retryable = retryable
        self.retry_after = retry_after
        self.problem = problem or {}

    @property
    def answer_key(self) -> str:
        """How the answer is counted: the status, or `network` when none came."""
        return str(self.status) if self.status is not None else "network"


class PushInterrupted(PushError):
    """The daemon is stopping: the upload was abandoned, nothing is confirmed."""


@dataclass(frozen=True)
class FileDigest:
    sha256: str
    size: int
    mtime_ns: int


def digest_file(path: Path) -> FileDigest:
    """SHA-256 of the file, with the size and mtime it had: if either moved while hashing,
    the recorder is still writing and the digest is not trusted."""
    try:
        before = path.stat()
        digest = hashlib.sha256()
        with path.open("rb") as reader:
            while chunk := reader.read(CHUNK):
                digest.update(chunk)
        after = path.stat()
    except OSError as exc:
        raise PushError(f"cannot read the file: {exc.strerror}") from exc
    if (before.st_size, before.st_mtime_ns) != (after.st_size, after.st_mtime_ns):
        raise PushError("the file changed while it was hashed", retryable=True)
    return FileDigest(digest.hexdigest(), after.st_size, after.st_mtime_ns)


class _BodyReader:
    """The request body: the file, read in blocks so a stop request abandons the upload at
    once, paced when the site's uplink must not be saturated, and reporting progress."""

    def __init__(
        self,
        handle: IO[bytes],
        *,
        size: int,
        stop: threading.Event | None,
        bytes_per_second: float | None,
        progress: ProgressCallback | None,
    ) -> None:
        self._handle = handle
        # Exactly the bytes that were hashed: a recorder still appending must not push
        # bytes past Content-Length onto the connection.
        self._size = size
        self._stop = stop
        self._rate = bytes_per_second
        self._progress = progress
        self._sent = 0
        self._began = time.monotonic()

    def read(self, size: int = -1) -> bytes:
        if self._stop is not None and self._stop.is_set():
            raise PushInterrupted("stopping: upload abandoned, the file is kept")
        block = min(size if size > 0 else CHUNK, 64 * 1024)
        if self._rate:
            # Never get ahead of the allowed rate: wait until the bytes already sent are due.
            ahead = self._sent / self._rate - (time.monotonic() - self._began)
            if ahead > 0:
                if self._stop is not None and self._stop.wait(ahead):
                    raise PushInterrupted("stopping: upload abandoned, the file is kept")
                if self._stop is None:
                    time.sleep(ahead)
            block = min(block, max(1024, int(self._rate / 10)))
        data = self._handle.read(min(block, self._size - self._sent))
        self._sent += len(data)
        if self._progress is not None and data:
            self._progress(len(data))
        return data


def _retry_after(value: str | None) -> float | None:
    """`Retry-After` as seconds: delta-seconds or an HTTP date (RFC 9110 §10.2.3)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return min(float(value), RETRY_AFTER_CAP_SECONDS)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return min(max(0.0, when.timestamp() - time.time()), RETRY_AFTER_CAP_SECONDS)


def _network_error(exc: BaseException, timeout: float) -> PushError:
    reason: object = exc.reason if isinstance(exc, urllib.error.URLError) else exc
    if isinstance(reason, TimeoutError):
        text = f"no answer within {timeout:g} s"
    elif isinstance(reason, ConnectionRefusedError):
        text = "connection refused"
    elif isinstance(reason, ConnectionResetError):
        text = "connection reset by the server"
    elif isinstance(reason, http.client.RemoteDisconnected):
        text = "the server closed the connection without answering"
    elif isinstance(reason, http.client.HTTPException):
        text = f"broken answer ({type(reason).__name__})"
    elif isinstance(reason, OSError) and reason.strerror:
        text = reason.strerror.lower()
    else:
        text = str(reason) or type(reason).__name__
    return PushError(f"server unreachable: {text}", retryable=True)


def _http_error(exc: urllib.error.HTTPError) -> PushError:
    try:
        problem = json.loads(exc.read() or b"{}")
    except (ValueError, OSError, http.client.HTTPException):
        problem = {}
    if not isinstance(problem, dict):
        problem = {}
    code = problem.get("code")
    message = problem.get("message") or exc.reason
    status = exc.code
    # 400 checksum_mismatch: the bytes changed between hashing and sending; hash again.
    retryable = status in (401, 408, 429) or status >= 500 or code == "checksum_mismatch"
    return PushError(
        f"HTTP {status} {code or ''}: {message}".replace("  ", " "),
        status=status,
        code=code,
        retryable=retryable,
        retry_after=_retry_after(exc.headers.get("Retry-After") if exc.headers else None),
        problem=problem,
    )


def report_status(server: str, token: str, report: dict[str, Any], *, timeout: float) -> int:
    """PUT the daemon's status to the centre (/api/v1/hosts/report, docs/operations.md); the
    HTTP status it answered. Raises PushError when no answer came."""
    url = f"{server.rstrip('/')}/api/v1/hosts/report"
    body = json.dumps(report).encode("utf-8")
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    request = urllib.request.Request(url, data=body, headers=headers, method="PUT")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except (OSError, http.client.HTTPException) as exc:
        raise _network_error(exc, timeout) from exc


def upload(
    path: Path,
    digest: FileDigest,
    *,
    server: str,
    token: str,
    camera: str,
    start: str | None = None,
    timeout: float = 300.0,
    stop: threading.Event | None = None,
    bytes_per_second: float | None = None,
    progress: ProgressCallback | None = None,
    respond_async: bool = False,
) -> dict[str, Any]:
    """PUT the file once; the server's answer with `http_status`, only when it confirmed
    exactly `digest.sha256`. Raises PushError otherwise. A 202 (asked for with
    `respond_async`) or a 503 `queued` is followed to its status URL for the final answer."""
    headers = {
        "Authorization": f"Bearer {token}",
        "Content-Length": str(digest.size),
        "Content-Type": "application/octet-stream",
        "X-Content-SHA256": digest.sha256,
    }
    if start:
        headers["X-Recording-Start"] = start
    if respond_async:
        headers["Prefer"] = "respond-async"
    url = f"{server.rstrip('/')}/api/v1/ingest/{quote(camera, safe='')}/{quote(path.name, safe='')}"
    try:
        handle = path.open("rb")
    except OSError as exc:
        raise PushError(f"cannot read the file: {exc.strerror}") from exc
    try:
        with handle:
            body = _BodyReader(
                handle,
                size=digest.size,
                stop=stop,
                bytes_per_second=bytes_per_second,
                progress=progress,
            )
            request = urllib.request.Request(url, data=body, headers=headers, method="PUT")  # type: ignore[arg-type]
            with urllib.request.urlopen(request, timeout=timeout) as response:
                status = response.status
                raw = response.read()
    except urllib.error.HTTPError as exc:
        error = _http_error(exc)
        status_url = error.problem.get("status_url")
        if error.status != 503 or not error.problem.get("kept") or not status_url:
            raise error from exc
        # Arrived whole and queued, not stored in the server's wait: its status URL gives
        # the final answer, without sending the bytes again.
        status, raw = _final_answer(server, str(status_url), token, timeout=timeout, stop=stop)
    except PushError:
        raise
    except (OSError, http.client.HTTPException) as exc:
        # URLError, refused, reset, time-out, a connection closed mid-answer: all transient.
        raise _network_error(exc, timeout) from exc
    answer = _json_answer(status, raw)
    if status == 202 and answer.get("status_url"):
        status, raw = _final_answer(
            server, str(answer["status_url"]), token, timeout=timeout, stop=stop
        )
        answer = _json_answer(status, raw)
    if answer.get("sha256") != digest.sha256:
        raise PushError(
            f"server reported sha256 {answer.get('sha256')}, expected {digest.sha256}",
            status=status,
            retryable=True,
        )
    answer["http_status"] = status
    return answer


def _json_answer(status: int, raw: bytes) -> dict[str, Any]:
    try:
        answer = json.loads(raw or b"{}")
    except ValueError as exc:
        raise PushError(f"HTTP {status} with an unreadable answer", retryable=True) from exc
    if not isinstance(answer, dict):
        raise PushError(f"HTTP {status} with an unreadable answer", retryable=True)
    return answer


def _final_answer(
    server: str,
    status_url: str,
    token: str,
    *,
    timeout: float,
    stop: threading.Event | None,
) -> tuple[int, bytes]:
    """Ask the upload's status URL until it is no longer 202 (the queue's worker stored or
    refused it), for at most `timeout`: the final (status, body). Any error answer raises
    PushError as the PUT's would; a 404 (the server no longer knows the upload) is retryable,
    so the file is pushed again and answered 200 if it was stored."""
    url = urllib.parse.urljoin(server.rstrip("/") + "/", status_url.lstrip("/"))
    deadline = time.monotonic() + timeout
    while True:
        request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
        try:
            with urllib.request.urlopen(request, timeout=min(timeout, 60.0)) as response:
                status, raw = response.status, response.read()
                pause = _retry_after(response.headers.get("Retry-After")) or 1.0
        except urllib.error.HTTPError as exc:
            error = _http_error(exc)
            if error.status == 404:
                error.retryable = True
            raise error from exc
        except (OSError, http.client.HTTPException) as exc:
            raise _network_error(exc, timeout) from exc
        if status != 202:
            return status, raw
        pause = min(pause, 5.0)
        if time.monotonic() + pause > deadline:
            raise PushError(
                f"still queued on the server after {timeout:g} s; kept, tried again later",
                status=202,
                retryable=True,
            )
        if stop is not None:
            if stop.wait(pause):
                raise PushInterrupted("stopping: the answer was not awaited, the file is kept")
        else:
            time.sleep(pause)


def still_the_confirmed_bytes(path: Path, sha256: str) -> bool:
    """Hash the file again before it is deleted: a recorder that rewrote it after it was
    hashed must not lose the bytes the server never saw."""
    try:
        return digest_file(path).sha256 == sha256
    except PushError:
        return False


def retrying(
    *,
    attempts: int | None,
    stop: threading.Event,
    initial_seconds: float = 1.0,
    max_seconds: float = 300.0,
    before_sleep: Callable[[PushError, float], None] | None = None,
) -> Retrying:
    """Retry transient failures with exponential backoff and jitter, never sooner than the
    server's `Retry-After`; `attempts` None means until `stop` is set."""
    backoff = wait_exponential_jitter(
        initial=initial_seconds, max=max_seconds, jitter=initial_seconds
    )

    def wait(state: RetryCallState) -> float:
        error = state.outcome.exception() if state.outcome else None
        asked = error.retry_after if isinstance(error, PushError) and error.retry_after else 0.0
        return max(backoff(state), asked)

    def retryable(error: BaseException) -> bool:
        return isinstance(error, PushError) and error.retryable and not stop.is_set()

    def announce(state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome else None
        if before_sleep is not None and isinstance(error, PushError):
            before_sleep(error, state.upcoming_sleep)

    stops = [lambda _state: stop.is_set()]
    if attempts is not None:
        stops.append(stop_after_attempt(attempts))
    return Retrying(
        retry=retry_if_exception(retryable),
        wait=wait,
        stop=stop_any(*stops),
        sleep=stop.wait,  # a stop request ends the pause at once
        before_sleep=announce,
        reraise=True,
    )


def push_file(
    path: Path,
    *,
    server: str,
    token: str,
    camera: str,
    start: str | None = None,
    remove_when_confirmed: bool = False,
    timeout: float = 300.0,
    retries: int = 0,
    stop: threading.Event | None = None,
    before_sleep: Callable[[PushError, float], None] | None = None,
    respond_async: bool = False,
) -> dict[str, Any]:
    """Hash, upload and (optionally) delete one file; retried `retries` times when the
    failure is transient. Raises PushError when it was not confirmed."""
    stop = stop or threading.Event()
    for attempt in retrying(attempts=retries + 1, stop=stop, before_sleep=before_sleep):
        with attempt:
            digest = digest_file(path)
            answer = upload(
                path, digest, server=server, token=token, camera=camera, start=start,
                timeout=timeout, stop=stop, respond_async=respond_async,
            )  # fmt: skip
    if remove_when_confirmed:
        if not still_the_confirmed_bytes(path, answer["sha256"]):
            raise PushError("the file changed after the server confirmed it; kept")
        os.unlink(path)
        answer["removed_local_copy"] = True
    return answer
