from __future__ import annotations

import hashlib
import os
import signal
import stat
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from storage.blobs import BlobStoreError, LocalBlobStore
from storage.stores import open_blob_store
from tests.processes import ROOT

LATER = datetime(2030, 1, 1, tzinfo=UTC)


def _source(tmp_path: Path, data: bytes) -> Path:
    path = tmp_path / "source.bin"
    path.write_bytes(data)
    return path


def test_put_hashes_while_copying_and_keys_by_content(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path / "objects")
    data = os.urandom(3 * 1024 * 1024 + 7)
    blob = store.put_file(
        _source(tmp_path, data), lambda sha: f"cam/{sha[:8]}.mp4", retain_until=LATER
    )
    assert blob.sha256 == hashlib.sha256(data).hexdigest()
    assert blob.key == f"cam/{blob.sha256[:8]}.mp4"
    assert b"".join(store.read(blob.key)) == data


def test_stored_files_are_read_only(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path / "objects")
    blob = store.put_file(_source(tmp_path, b"evidence"), lambda sha: "a/b.mp4", retain_until=LATER)
    mode = (tmp_path / "objects" / blob.key).stat().st_mode
    assert not mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH)


def test_same_bytes_twice_is_one_object(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path / "objects")
    source = _source(tmp_path, b"same bytes")
    first = store.put_file(source, lambda sha: f"k/{sha}", retain_until=LATER)
    second = store.put_file(source, lambda sha: f"k/{sha}", retain_until=LATER)
    assert first == second
    assert list(store.keys()) == [first.key]


def test_ranged_read_returns_exactly_the_slice(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path / "objects")
    data = bytes(range(256)) * 10000
    blob = store.put_file(_source(tmp_path, data), lambda sha: "r/x", retain_until=LATER)
    assert b"".join(store.read(blob.key, 1000, 2_000_000)) == data[1000:2_001_000]
    assert b"".join(store.read(blob.key, len(data) - 3)) == data[-3:]


@pytest.mark.parametrize("key", ["../escape", "/abs", "a//b", "a/./b", ""])
def test_keys_that_leave_the_root_are_refused(tmp_path: Path, key: str) -> None:
    store = LocalBlobStore(tmp_path / "objects")
    with pytest.raises(BlobStoreError):
        store.put_file(_source(tmp_path, b"x"), lambda sha: key, retain_until=LATER)
    assert list(store.keys()) == []


def test_recover_removes_partial_writes_only(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path / "objects")
    blob = store.put_file(_source(tmp_path, b"kept"), lambda sha: "k/kept", retain_until=LATER)
    (tmp_path / "objects" / ".tmp" / "dead.part").write_bytes(b"torn")
    assert store.recover() == 1
    assert list(store.keys()) == [blob.key]


def test_storage_url_schemes(tmp_path: Path) -> None:
    assert isinstance(open_blob_store(f"file://{tmp_path}/o"), LocalBlobStore)
    with pytest.raises(BlobStoreError, match="scheme"):
        open_blob_store("ftp://x")
    with pytest.raises(BlobStoreError, match="endpoint"):
        open_blob_store("s3://bucket")


def test_keys_lists_under_a_prefix_and_after_a_key(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path / "objects")
    for number, key in enumerate(
        ["cam/2026/a.mp4", "ledger/checkpoints/001.json", "ledger/checkpoints/002.json", "x.bin"]
    ):
        store.put_file(
            _source(tmp_path, f"{number}".encode()), lambda _s, k=key: k, retain_until=LATER
        )
    assert list(store.keys("ledger/checkpoints/")) == [
        "ledger/checkpoints/001.json",
        "ledger/checkpoints/002.json",
    ]
    assert list(store.keys("ledger/check")) == list(store.keys("ledger/checkpoints/"))
    assert list(store.keys("ledger/", start_after="ledger/checkpoints/001.json")) == [
        "ledger/checkpoints/002.json"
    ]
    assert list(store.keys("nothing/")) == []
    assert sorted(store.keys()) == [
        "cam/2026/a.mp4",
        "ledger/checkpoints/001.json",
        "ledger/checkpoints/002.json",
        "x.bin",
    ]


def _recover_in_another_process(root: Path) -> int:
    script = (
        "import sys\n"
        "from pathlib import Path\n"
        "from storage.blobs import LocalBlobStore\n"
        "print(LocalBlobStore(Path(sys.argv[1])).recover())\n"
    )
    run = subprocess.run(
        [sys.executable, "-c", script, str(root)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return int(run.stdout)


def test_recover_in_another_process_leaves_a_staging_file_in_use(tmp_path: Path) -> None:
    # `examvault worker` starting beside a `serve` that is staging an upload.
    store = LocalBlobStore(tmp_path / "objects")
    data = os.urandom(100_000)
    staged = store.stage(_source(tmp_path, data))
    try:
        assert _recover_in_another_process(store.root) == 0
        assert staged.source.exists()
        blob = store.commit(staged, "cam/kept.mp4", retain_until=LATER)
    finally:
        store.discard(staged)
    assert b"".join(store.read(blob.key)) == data


def test_recover_removes_the_staging_file_of_a_writer_killed_mid_write(tmp_path: Path) -> None:
    root = tmp_path / "objects"
    source = _source(tmp_path, os.urandom(100_000))
    script = (
        "import os, signal, sys\n"
        "from pathlib import Path\n"
        "from storage.blobs import LocalBlobStore\n"
        "LocalBlobStore(Path(sys.argv[1])).stage(Path(sys.argv[2]))\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    killed = subprocess.run(
        [sys.executable, "-c", script, str(root), str(source)], cwd=ROOT, timeout=60
    )
    assert killed.returncode == -signal.SIGKILL
    assert len(list((root / ".tmp").glob("*.part"))) == 1

    assert LocalBlobStore(root).recover() == 1
    assert list((root / ".tmp").iterdir()) == []
