"""The camera-host client (`examvault push`): upload finished segments, and delete the local
copy only after the server confirmed it durable with the same SHA-256."""

from __future__ import annotations

import hashlib
import json
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import quote

from storage.blobs import CHUNK


class PushError(Exception):
    """The upload was not confirmed; the local file is kept."""


def push_file(
    path: Path,
    *,
    server: str,
    token: str,
    camera: str,
    start: str | None = None,
    remove_when_confirmed: bool = False,
    timeout: float = 300.0,
) -> dict[str, Any]:
    digest = hashlib.sha256()
    try:
        size = path.stat().st_size
        with path.open("rb") as reader:
            while chunk := reader.read(CHUNK):
                digest.update(chunk)
    except OSError as exc:
        raise PushError(f"cannot read the file: {exc.strerror}") from exc
    sha256 = digest.hexdigest()
    headers = {
        "Authorization": f"Bearer {token}",
        "Content-Length": str(size),
        "Content-Type": "application/octet-stream",
        "X-Content-SHA256": sha256,
    }
    if start:
        headers["X-Recording-Start"] = start
    url = f"{server.rstrip('/')}/api/v1/ingest/{quote(camera, safe='')}/{quote(path.name, safe='')}"
    with path.open("rb") as body:
        request = urllib.request.Request(url, data=body, headers=headers, method="PUT")
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                answer: dict[str, Any] = json.loads(response.read() or b"{}")
        except urllib.error.HTTPError as exc:
            try:
                problem = json.loads(exc.read() or b"{}")
            except ValueError:
                problem = {}
            message = problem.get("message") or exc.reason
            raise PushError(f"HTTP {exc.code} {problem.get('code', '')}: {message}") from exc
        except urllib.error.URLError as exc:
            raise PushError(f"server unreachable: {exc.reason}") from exc
    if answer.get("sha256") != sha256:
        raise PushError(f"server reported sha256 {answer.get('sha256')}, expected {sha256}")
    if remove_when_confirmed:
        path.unlink()
        answer["removed_local_copy"] = True
    return answer
