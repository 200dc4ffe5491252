"""The probe: what a pushed segment is, how long it really lasts, and why a bad one is refused.

Every file is written in a temporary folder by services.demo.footage (PyAV); no binary
fixtures are committed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from services.demo import footage as synthetic
from services.ingest.probe import MediaProbe, PictureLimits, ProbeError, probe_recording
from tests.large_picture import write_large_picture

SECONDS = 6.0
FPS = 10
GOP_SECONDS = 2.0
ONE_FRAME = 1 / FPS
CREATED = datetime(2026, 11, 24, 1, 30, 15, tzinfo=UTC)

CONTAINER_NAMES = {
    ".mp4": "mov,mp4,m4a,3gp,3g2,mj2",
    ".mkv": "matroska,webm",
    ".ts": "mpegts",
    ".ps": "mpeg",
}

# Container x codec x audio. libavformat's MPEG-PS muxer carries H.265 too (stream type 0x24).
MATRIX = [
    pytest.param(suffix, codec, audio, id=f"{suffix[1:]}-{codec}-{'audio' if audio else 'mute'}")
    for suffix in CONTAINER_NAMES
    for codec in ("h264", "hevc")
    for audio in (False, True)
]

RecordingFactory = Callable[..., Path]


@pytest.fixture(scope="module")
def recording(tmp_path_factory: pytest.TempPathFactory) -> RecordingFactory:
    """``recording(".mkv", codec="hevc", audio=True, ...)``: a 6 s 10 fps file, made once."""
    folder = tmp_path_factory.mktemp("recordings")
    made: dict[tuple[str, tuple[tuple[str, Any], ...]], Path] = {}

    def make(suffix: str, **options: Any) -> Path:
        key = (suffix, tuple(sorted(options.items())))
        if key not in made:
            path = folder / f"r{len(made)}{suffix}"
            options.setdefault("seconds", SECONDS)
            options.setdefault("fps", FPS)
            options.setdefault("gop_seconds", GOP_SECONDS)
            made[key] = synthetic.write_recording(path, **options)
        return made[key]

    return make


@pytest.fixture(scope="module")
def probed(recording: RecordingFactory) -> Callable[..., MediaProbe]:
    return lambda suffix, **options: probe_recording(recording(suffix, **options))


@pytest.mark.parametrize(("suffix", "codec", "audio"), MATRIX)
def test_probe_names_container_and_codec(
    probed: Callable[..., MediaProbe], suffix: str, codec: str, audio: bool
) -> None:
    probe = probed(suffix, codec=codec, audio=audio)
    assert (probe.container, probe.video_codec) == (CONTAINER_NAMES[suffix], codec)


@pytest.mark.parametrize(("suffix", "codec", "audio"), MATRIX)
def test_probe_reads_frame_size(
    probed: Callable[..., MediaProbe], suffix: str, codec: str, audio: bool
) -> None:
    probe = probed(suffix, codec=codec, audio=audio)
    assert (probe.width, probe.height) == (320, 240)


@pytest.mark.parametrize(("suffix", "codec", "audio"), MATRIX)
def test_probe_measures_duration_within_one_frame(
    probed: Callable[..., MediaProbe], suffix: str, codec: str, audio: bool
) -> None:
    probe = probed(suffix, codec=codec, audio=audio)
    assert probe.duration_seconds == pytest.approx(SECONDS, abs=ONE_FRAME)


@pytest.mark.parametrize(("suffix", "codec", "audio"), MATRIX)
def test_probe_counts_one_keyframe_per_gop(
    probed: Callable[..., MediaProbe], suffix: str, codec: str, audio: bool
) -> None:
    probe = probed(suffix, codec=codec, audio=audio)
    assert probe.keyframe_count == SECONDS / GOP_SECONDS
    assert probe.packet_count == SECONDS * FPS


@pytest.mark.parametrize(("suffix", "codec", "audio"), MATRIX)
def test_probe_reports_whether_there_is_audio(
    probed: Callable[..., MediaProbe], suffix: str, codec: str, audio: bool
) -> None:
    assert probed(suffix, codec=codec, audio=audio).has_audio is audio


@pytest.mark.parametrize("codec", ["h264", "hevc"])
@pytest.mark.parametrize("audio", [False, True], ids=["mute", "audio"])
def test_probe_measures_fragmented_mp4(
    probed: Callable[..., MediaProbe], codec: str, audio: bool
) -> None:
    probe = probed(".mp4", codec=codec, audio=audio, fragmented=True)
    assert probe.container == CONTAINER_NAMES[".mp4"]
    assert probe.duration_seconds == pytest.approx(SECONDS, abs=ONE_FRAME)
    assert probe.keyframe_count == SECONDS / GOP_SECONDS


@pytest.mark.parametrize("suffix", list(CONTAINER_NAMES))
def test_probe_measures_duration_with_b_frames(
    probed: Callable[..., MediaProbe], suffix: str
) -> None:
    # x265's veryfast preset reorders frames in a B-pyramid; in MPEG-PS most of those small
    # frames carry no timestamp at all, so the probe has to fill them in.
    probe = probed(suffix, codec="hevc", preset="veryfast", fps=25, seconds=4.0)
    assert probe.duration_seconds == pytest.approx(4.0, abs=1 / 25)


def test_probe_reports_the_declared_frame_rate(probed: Callable[..., MediaProbe]) -> None:
    assert probed(".mkv", fps=25, seconds=2.0).frame_rate == pytest.approx(25.0)


@pytest.mark.parametrize("suffix", [".mp4", ".mkv"])
def test_probe_reads_container_creation_time_as_utc(
    probed: Callable[..., MediaProbe], suffix: str
) -> None:
    creation_time = probed(suffix, seconds=2.0, creation_time=CREATED).creation_time
    assert creation_time == CREATED
    assert creation_time is not None and creation_time.utcoffset() is not None


def test_probe_has_no_creation_time_for_mpeg_ts(probed: Callable[..., MediaProbe]) -> None:
    assert probed(".ts", seconds=2.0, creation_time=CREATED).creation_time is None


def test_probe_error_carries_code_and_reason() -> None:
    error = ProbeError("undecodable", "The video track is damaged.")
    assert (error.code, error.reason, str(error)) == (
        "undecodable",
        "The video track is damaged.",
        "The video track is damaged.",
    )


def _probe_error(path: Path, **options: Any) -> ProbeError:
    with pytest.raises(ProbeError) as caught:
        probe_recording(path, **options)
    return caught.value


BadInput = Callable[[Path, RecordingFactory], Path]


def _empty(folder: Path, _recording: RecordingFactory) -> Path:
    path = folder / "empty.mp4"
    path.write_bytes(b"")
    return path


def _random_bytes(folder: Path, _recording: RecordingFactory) -> Path:
    path = folder / "noise.mp4"
    path.write_bytes(os.urandom(64 * 1024))
    return path


def _text(folder: Path, _recording: RecordingFactory) -> Path:
    path = folder / "notes.mp4"
    path.write_text("这不是视频 / not a video\n" * 50, encoding="utf-8")
    return path


def _truncated_mp4(folder: Path, recording: RecordingFactory) -> Path:
    return synthetic.write_truncated_mp4(folder / "cut.mp4", recording(".mp4"))


def _fragmented_mp4_without_fragments(folder: Path, recording: RecordingFactory) -> Path:
    # A camera that died right after writing the header of a fragmented MP4.
    data = recording(".mp4", fragmented=True).read_bytes()
    path = folder / "header-only.mp4"
    path.write_bytes(data[: data.index(b"moof") - 4])
    return path


def _audio_only(folder: Path, _recording: RecordingFactory) -> Path:
    return synthetic.write_audio_only(folder / "voice.mp4", 2.0)


def _jpeg_as_mp4(folder: Path, _recording: RecordingFactory) -> Path:
    return synthetic.write_jpeg_as_video(folder / "snapshot.mp4")


def _single_frame(folder: Path, _recording: RecordingFactory) -> Path:
    return synthetic.write_recording(folder / "one-frame.mkv", seconds=1 / FPS, fps=FPS)


def _undecodable_h264(folder: Path, recording: RecordingFactory) -> Path:
    # FFmpeg's H.264 parser finds no IDR slice in the noise, so no packet is a keyframe.
    source = recording(".mkv", codec="h264", seconds=2.0)
    return synthetic.write_undecodable(folder / "broken-h264.mkv", source)


def _undecodable_hevc(folder: Path, recording: RecordingFactory) -> Path:
    # H.265 keeps the container's keyframe flags, so here the decoder itself rejects the noise.
    source = recording(".mkv", codec="hevc", seconds=2.0)
    return synthetic.write_undecodable(folder / "broken-hevc.mp4", source)


def _missing(folder: Path, _recording: RecordingFactory) -> Path:
    return folder / "gone.mp4"


BAD_INPUTS = [
    pytest.param(_empty, "empty_file", id="empty-file"),
    pytest.param(_random_bytes, "not_a_video", id="random-bytes"),
    pytest.param(_text, "not_a_video", id="text-file"),
    pytest.param(_truncated_mp4, "not_a_video", id="mp4-without-moov"),
    pytest.param(_fragmented_mp4_without_fragments, "zero_duration", id="fmp4-header-only"),
    pytest.param(_audio_only, "no_video_stream", id="audio-only"),
    pytest.param(_jpeg_as_mp4, "image_not_recording", id="jpeg-named-mp4"),
    pytest.param(_single_frame, "image_not_recording", id="single-frame"),
    pytest.param(_undecodable_h264, "undecodable", id="garbage-h264"),
    pytest.param(_undecodable_hevc, "undecodable", id="garbage-hevc"),
    pytest.param(_missing, "unreadable", id="missing-file"),
]


@pytest.mark.parametrize(("make_bad", "code"), BAD_INPUTS)
def test_bad_input_is_refused_with_its_code(
    tmp_path: Path, recording: RecordingFactory, make_bad: BadInput, code: str
) -> None:
    assert _probe_error(make_bad(tmp_path, recording)).code == code


@pytest.mark.parametrize(("make_bad", "code"), BAD_INPUTS)
def test_refusal_reason_is_one_sentence(
    tmp_path: Path, recording: RecordingFactory, make_bad: BadInput, code: str
) -> None:
    reason = _probe_error(make_bad(tmp_path, recording)).reason
    assert reason[0].isupper() and reason.endswith(".")
    assert ". " not in reason and "\n" not in reason


def test_mp4_cut_before_its_moov_box_says_the_index_is_missing(
    tmp_path: Path, recording: RecordingFactory
) -> None:
    assert "'moov'" in _probe_error(_truncated_mp4(tmp_path, recording)).reason


def test_random_bytes_named_mp4_are_not_blamed_on_a_missing_index(
    tmp_path: Path, recording: RecordingFactory
) -> None:
    assert "moov" not in _probe_error(_random_bytes(tmp_path, recording)).reason


def test_duration_above_the_limit_is_absurd(recording: RecordingFactory) -> None:
    error = _probe_error(recording(".mp4"), max_duration_seconds=SECONDS / 2)
    assert error.code == "absurd_duration"


# A child process that probes one file and reports what the probe cost it in peak memory.
_PROBE_IN_A_CHILD = """
import json, resource, sys
from pathlib import Path
from services.ingest.probe import ProbeError, probe_recording
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
try:
    probe_recording(Path(sys.argv[1]))
    code = None
except ProbeError as exc:
    code = exc.code
grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
print(json.dumps({"code": code, "grown_kib": grown}))
"""


@pytest.mark.parametrize("suffix", [".mp4", ".ps"])
def test_an_8192_square_picture_is_refused_before_anything_is_decoded(
    tmp_path: Path, suffix: str
) -> None:
    # MPEG-PS lists no stream before FFmpeg's stream-info pass, which decodes frames to find
    # them: the case a check after av.open would miss.
    bomb = write_large_picture(tmp_path / f"bomb{suffix}")
    assert bomb.stat().st_size < 1024**2
    child = subprocess.run(
        [sys.executable, "-c", _PROBE_IN_A_CHILD, str(bomb)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    result = json.loads(child.stdout)
    assert result["code"] == "too_large_picture"
    # One decoded 8192x8192 yuv420p picture alone is 96 MiB.
    assert result["grown_kib"] < 32 * 1024


def test_the_refusal_names_the_size_and_the_limit(tmp_path: Path) -> None:
    error = _probe_error(write_large_picture(tmp_path / "bomb.mp4"))
    assert error.code == "too_large_picture"
    assert "8192x8192" in error.reason and "4096x2160" in error.reason


def test_a_portrait_4k_picture_is_within_the_limit(tmp_path: Path) -> None:
    portrait = probe_recording(write_large_picture(tmp_path / "tall.mp4", width=2160, height=4096))
    assert (portrait.width, portrait.height) == (2160, 4096)


def test_one_pixel_over_the_long_side_is_refused(tmp_path: Path) -> None:
    wide = write_large_picture(tmp_path / "wide.mp4", width=4098, height=240)
    assert _probe_error(wide).code == "too_large_picture"


def test_a_pixel_rate_above_the_limit_is_refused(recording: RecordingFactory) -> None:
    limits = PictureLimits(max_pixel_rate=320 * 240 * FPS - 1)
    error = _probe_error(recording(".mp4"), limits=limits)
    assert error.code == "too_large_picture" and "frames/s" in error.reason
    assert probe_recording(recording(".mp4"), limits=PictureLimits(max_pixel_rate=320 * 240 * FPS))
