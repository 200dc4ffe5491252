"""Mutation fuzzing of the probe from valid seeds (issue 11, the suite): whatever a file's bytes,
the probe answers a sane MediaProbe or a ProbeError with a known code, within a bounded time,
and never anything else.

`EXAMVAULT_FUZZ_EXAMPLES` sets how many mutated files are tried (default 40, what `make test`
runs); `make fuzz` runs thousands. A failure prints the seed and mutations that reproduce it.
"""

from __future__ import annotations

import os
import time
from functools import cache
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.demo.footage import classroom_scene, write_recording
from services.ingest.probe import PROBE_ERROR_CODES, MediaProbe, ProbeError, probe_recording

EXAMPLES = int(os.environ.get("EXAMVAULT_FUZZ_EXAMPLES", "40"))
MAX_SECONDS = 12 * 3600
# One probe of a few-hundred-KB seed takes well under a second; a mutation must not make it
# take minutes.
PROBE_SECONDS_BOUND = 20.0
SEEDS = ("seed.mp4", "seed-fragmented.mp4", "seed.mkv", "seed.ts", "seed.ps")


@cache
def _seed(name: str, folder: str) -> bytes:
    path = Path(folder) / name
    write_recording(
        path,
        seconds=3,
        fps=10,
        gop_seconds=1.0,
        scene=classroom_scene(160, 120, seed=5),
        width=160,
        height=120,
        audio=name.endswith((".mkv", ".ts")),
        fragmented="fragmented" in name,
    )
    return path.read_bytes()


@st.composite
def mutations(draw: st.DrawFn) -> list[tuple[str, float, int, bytes]]:
    """Up to four edits, each (kind, where as a share of the file, how many bytes, new bytes)."""
    edit = st.tuples(
        st.sampled_from(["flip", "overwrite", "truncate", "insert", "delete", "duplicate"]),
        st.floats(min_value=0.0, max_value=1.0, allow_nan=False),
        st.integers(min_value=1, max_value=4096),
        st.binary(min_size=1, max_size=64),
    )
    return draw(st.lists(edit, min_size=1, max_size=4))


def mutate(data: bytes, edits: list[tuple[str, float, int, bytes]]) -> bytes:
    buffer = bytearray(data)
    for kind, share, count, payload in edits:
        at = min(int(share * len(buffer)), max(len(buffer) - 1, 0))
        if kind == "flip":
            for index in range(at, min(at + count, len(buffer))):
                buffer[index] ^= 0xFF
        elif kind == "overwrite":
            block = (payload * (count // len(payload) + 1))[:count]
            buffer[at : at + len(block)] = block
        elif kind == "truncate":
            del buffer[at:]
        elif kind == "insert":
            buffer[at:at] = payload * max(1, count // len(payload))
        elif kind == "delete":
            del buffer[at : at + count]
        else:  # duplicate a stretch in place
            buffer[at:at] = buffer[at : at + count]
    return bytes(buffer)


@pytest.fixture(scope="module")
def seed_folder(tmp_path_factory: pytest.TempPathFactory) -> str:
    return str(tmp_path_factory.mktemp("fuzz-seeds"))


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    derandomize=EXAMPLES <= 40,  # the bounded run in `make test` tries the same cases each time
)
@given(seed=st.sampled_from(SEEDS), edits=mutations())
def test_the_probe_answers_a_sane_probe_or_a_known_reason_for_any_mutation(
    seed_folder: str, tmp_path_factory: pytest.TempPathFactory, seed: str, edits: list
) -> None:
    data = mutate(_seed(seed, seed_folder), edits)
    path = tmp_path_factory.mktemp("fuzz") / f"mutant{Path(seed).suffix}"
    path.write_bytes(data)

    started = time.monotonic()
    try:
        probe = probe_recording(path, max_duration_seconds=MAX_SECONDS)
    except ProbeError as exc:
        assert exc.code in PROBE_ERROR_CODES
        assert exc.reason and exc.reason.endswith(".")
    else:
        assert isinstance(probe, MediaProbe)
        assert 0 < probe.duration_seconds <= MAX_SECONDS
        assert probe.packet_count >= 2 and probe.keyframe_count >= 1
        assert 0 < probe.width <= 4096 and 0 < probe.height <= 4096
        assert all(0 <= a < b <= probe.duration_seconds + 1e-6 for a, b in probe.damaged)
        assert 0 <= probe.trailing_bytes <= len(data)
    finally:
        path.unlink()
    assert time.monotonic() - started < PROBE_SECONDS_BOUND
