"""BlobReader: a stored object as a seekable file read by ranges, block by block; what a
demuxer needs of S3 without downloading the whole object first."""

from __future__ import annotations

import io
import random
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import av

from storage.blobs import CHUNK, BlobReader, LocalBlobStore
from tests.conftest import VideoFactory


class CountingStore(LocalBlobStore):
    """The local store, counting the bytes asked of `read`: a stand-in for S3's range GETs
    (the S3 store itself is exercised through playback in tests/api/test_footage_endpoints)."""

    fetched = 0

    def read(self, key: str, start: int = 0, length: int | None = None) -> Iterator[bytes]:
        self.fetched += length or 0
        return super().read(key, start, length)


def _stored(tmp_path: Path, data: bytes) -> tuple[CountingStore, str]:
    store = CountingStore(tmp_path / "objects")
    source = tmp_path / "source.bin"
    source.write_bytes(data)
    stored = store.put_file(
        source, lambda sha: f"cam/{sha}.bin", retain_until=datetime(2030, 1, 1, tzinfo=UTC)
    )
    return store, stored.key


def test_random_seeks_and_reads_return_exactly_the_bytes(tmp_path: Path) -> None:
    data = random.Random(7).randbytes(3 * CHUNK + 12345)
    store, key = _stored(tmp_path, data)
    rng = random.Random(11)
    with BlobReader(store, key, len(data), block=CHUNK // 2, blocks=2) as reader:
        for _ in range(200):
            start = rng.randrange(len(data) + 10)
            size = rng.randrange(1, 200_000)
            reader.seek(start)
            assert reader.read(size) == data[start : start + size]
        assert reader.seek(-5, io.SEEK_END) == len(data) - 5
        assert reader.read() == data[-5:]


def test_only_the_blocks_asked_for_are_fetched(tmp_path: Path) -> None:
    data = bytes(range(256)) * (40 * CHUNK // 256)
    store, key = _stored(tmp_path, data)
    with BlobReader(store, key, len(data), block=CHUNK) as reader:
        reader.seek(-100, io.SEEK_END)
        reader.read(100)
        reader.seek(0)
        reader.read(100)
        reader.read(100)  # the same block again: served from the cache
    assert store.fetched == 2 * CHUNK


def test_a_demuxer_reads_a_recording_through_it(tmp_path: Path, make_video: VideoFactory) -> None:
    video = make_video("clip.mp4", seconds=3)
    data = video.read_bytes()
    store, key = _stored(tmp_path, data)
    with (
        BlobReader(store, key, len(data), block=64 * 1024) as reader,
        av.open(reader) as container,
    ):
        packets = [p for p in container.demux(container.streams.video[0]) if p.size]
    with av.open(str(video)) as direct:
        expected = [p for p in direct.demux(direct.streams.video[0]) if p.size]
    assert [bytes(p) for p in packets] == [bytes(p) for p in expected]
