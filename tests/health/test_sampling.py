"""Video health: keyframe sampling with PyAV/OpenCV and the pure judgement of the samples.

The recordings are made with PyAV like a camera host's: 320x240, 10 fps, one keyframe per second
(so samples are 1 s apart), 24 s, each with one known bad stretch.
"""

from __future__ import annotations

import random
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.demo.footage import (
    Scene,
    black_scene,
    classroom_scene,
    flat_scene,
    frozen_scene,
    spliced,
    write_recording,
)
from services.health import sampling as health
from services.health.sampling import (
    HealthInterval,
    HealthSample,
    HealthThresholds,
    TimedSample,
    encode_jpeg,
    frame_at,
    health_intervals,
    prepare_reference,
    sample_segment,
    sample_segment_within,
    sharpness_baseline,
)

WIDTH, HEIGHT, FPS, SECONDS = 320, 240, 10, 24
START = datetime(2026, 11, 24, 1, 0, tzinfo=UTC)
ONE_SAMPLE = timedelta(seconds=1)
BAD_FROM, BAD_UNTIL = 8.0, 16.0
SWITCH_AT = 12.0


def _empty_still_room(noise_amplitude: int) -> Scene:
    """Nobody moves and the clock is stopped: only the sensor noise changes between frames."""
    room = classroom_scene(WIDTH, HEIGHT, noise_amplitude=noise_amplitude)
    return lambda frame_index, _t: room(frame_index, 0.0)


def _workshop_scene() -> Scene:
    """Another place: windows, workbenches and a cabinet, with live sensor noise."""
    picture = np.empty((HEIGHT, WIDTH, 3), dtype=np.uint8)
    horizon = HEIGHT // 2
    picture[:horizon] = (170, 190, 200)
    picture[horizon:] = (80, 95, 105)
    for x in range(WIDTH // 10, WIDTH, WIDTH // 4):
        cv2.rectangle(
            picture,
            (x, HEIGHT // 10),
            (x + WIDTH // 8, horizon - HEIGHT // 12),
            (230, 220, 200),
            -1,
        )
    for row in range(3):
        y = horizon + (row + 1) * HEIGHT // 9
        left = WIDTH // 12 + row * WIDTH // 10
        cv2.rectangle(
            picture, (left, y), (left + WIDTH * 5 // 12, y + HEIGHT // 16), (50, 60, 70), -1
        )
    cv2.rectangle(
        picture,
        (WIDTH * 3 // 4, horizon - HEIGHT // 6),
        (WIDTH - WIDTH // 20, HEIGHT - HEIGHT // 10),
        (40, 90, 40),
        -1,
    )
    base = picture.astype(np.int16)

    def render(frame_index: int, _t: float) -> np.ndarray:
        noise = np.random.default_rng(10_000 + frame_index).integers(
            -3, 4, size=base.shape, dtype=np.int16
        )
        return np.clip(base + noise, 0, 255).astype(np.uint8)

    return render


def _scenes() -> dict[str, Scene]:
    room = classroom_scene(WIDTH, HEIGHT)
    rest = float("inf")
    return {
        "normal": room,
        # The faintest noise the synthetic sensor makes (+-1 level): the hardest live case.
        "static": _empty_still_room(1),
        "black": spliced((BAD_FROM, room), (BAD_UNTIL, black_scene(WIDTH, HEIGHT)), (rest, room)),
        # The hung encoder repeats the picture it had when the stretch began.
        "frozen": spliced(
            (BAD_FROM, room),
            (BAD_UNTIL, frozen_scene(room(int(BAD_FROM * FPS), BAD_FROM))),
            (rest, room),
        ),
        "covered": spliced((BAD_FROM, room), (BAD_UNTIL, flat_scene(WIDTH, HEIGHT)), (rest, room)),
        "switch": spliced((SWITCH_AT, room), (rest, _workshop_scene())),
    }


@pytest.fixture(scope="module")
def recordings(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("health")
    return {
        name: write_recording(
            folder / f"{name}.mp4",
            seconds=SECONDS,
            fps=FPS,
            width=WIDTH,
            height=HEIGHT,
            scene=scene,
            gop_seconds=1.0,
        )
        for name, scene in _scenes().items()
    }


@pytest.fixture(scope="module")
def reference(recordings: dict[str, Path]) -> np.ndarray:
    # As an admin would set it: "use the frame at 3 s of this camera", stored as a JPEG.
    return prepare_reference(encode_jpeg(frame_at(recordings["normal"], 3.0)))


@pytest.fixture(scope="module")
def samples(recordings: dict[str, Path], reference: np.ndarray) -> dict[str, list[TimedSample]]:
    return {
        name: _on_wall_clock(sample_segment(path, reference=reference))
        for name, path in recordings.items()
    }


def _on_wall_clock(segment_samples: list[HealthSample]) -> list[TimedSample]:
    return [
        TimedSample(
            at=START + timedelta(seconds=sample.offset_seconds),
            mean_luma=sample.mean_luma,
            dark_share=sample.dark_share,
            motion=sample.motion,
            sharpness=sample.sharpness,
            reference_similarity=sample.reference_similarity,
        )
        for sample in segment_samples
    ]


def _judge(
    timed: list[TimedSample], thresholds: HealthThresholds = HealthThresholds()
) -> list[HealthInterval]:
    return health_intervals(
        timed,
        baseline_sharpness=sharpness_baseline(timed, thresholds=thresholds),
        thresholds=thresholds,
    )


def test_samples_are_the_keyframes_timed_from_the_first_pts(
    samples: dict[str, list[TimedSample]],
) -> None:
    offsets = [(sample.at - START).total_seconds() for sample in samples["normal"]]
    assert offsets == pytest.approx([float(second) for second in range(SECONDS)])
    assert samples["normal"][0].motion is None
    assert all(sample.motion is not None for sample in samples["normal"][1:])


@pytest.mark.parametrize("suffix", [".mp4", ".mkv", ".ts", ".ps"])
def test_every_container_is_sampled_on_its_packet_timestamps(tmp_path: Path, suffix: str) -> None:
    # MPEG-PS (GB/T 28181 exports) leaves most packets, keyframes included, without timestamps.
    room = classroom_scene(WIDTH, HEIGHT)
    scene = spliced((4.0, room), (6.0, black_scene(WIDTH, HEIGHT)), (float("inf"), room))
    path = write_recording(
        tmp_path / f"camera{suffix}", seconds=10, fps=FPS, scene=scene, gop_seconds=1.0
    )

    segment_samples = sample_segment(path)

    offsets = [sample.offset_seconds for sample in segment_samples]
    assert offsets == pytest.approx([float(second) for second in range(10)])
    dark = [sample.offset_seconds for sample in segment_samples if sample.mean_luma < 20]
    assert dark == pytest.approx([4.0, 5.0])
    assert frame_at(path, 5.95).mean() < 20
    assert frame_at(path, 6.0).mean() > 100


def test_normal_recording_has_no_health_intervals(samples: dict[str, list[TimedSample]]) -> None:
    assert _judge(samples["normal"]) == []


def test_still_but_live_room_is_not_frozen(samples: dict[str, list[TimedSample]]) -> None:
    # Nothing moves, yet the sensor noise makes every keyframe differ: the camera is alive.
    assert _judge(samples["static"]) == []


@pytest.mark.parametrize(
    ("name", "kind", "start", "end"),
    [
        ("black", "black", BAD_FROM, BAD_UNTIL),
        ("frozen", "frozen", BAD_FROM, BAD_UNTIL),
        ("covered", "covered", BAD_FROM, BAD_UNTIL),
        ("switch", "scene_mismatch", SWITCH_AT, float(SECONDS)),
    ],
)
def test_reports_the_bad_stretch_and_nothing_else(
    samples: dict[str, list[TimedSample]], name: str, kind: str, start: float, end: float
) -> None:
    intervals = _judge(samples[name])

    assert [interval.kind for interval in intervals] == [kind]
    assert abs(intervals[0].start - (START + timedelta(seconds=start))) <= ONE_SAMPLE
    assert abs(intervals[0].end - (START + timedelta(seconds=end))) <= ONE_SAMPLE


def test_thresholds_are_applied_without_decoding_again(
    samples: dict[str, list[TimedSample]], monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_decoding(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("health_intervals must not open a video")

    monkeypatch.setattr(health.av, "open", no_decoding)
    black = samples["black"]
    assert [interval.kind for interval in _judge(black)] == ["black"]
    # With "black" retuned out of reach, the same dark, featureless samples read as covered.
    unreachable_black = replace(HealthThresholds(), black_max_luma=-1.0)
    assert [interval.kind for interval in _judge(black, unreachable_black)] == ["covered"]

    never_frozen = replace(HealthThresholds(), frozen_max_motion=-1.0)
    assert _judge(samples["frozen"], never_frozen) == []


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(min_value=0, max_value=2**32 - 1))
def test_input_order_does_not_matter(samples: dict[str, list[TimedSample]], seed: int) -> None:
    # Two cameras' worth of kinds in one list: black, frozen and scene mismatch.
    timed = [
        *samples["black"],
        *[replace(s, at=s.at + timedelta(minutes=1)) for s in samples["frozen"]],
        *[replace(s, at=s.at + timedelta(minutes=2)) for s in samples["switch"]],
    ]
    expected = _judge(timed)
    shuffled = list(timed)
    random.Random(seed).shuffle(shuffled)

    assert _judge(shuffled) == expected
    assert [interval.kind for interval in expected] == ["black", "frozen", "scene_mismatch"]


def _sample(second: float, **metrics: float | None) -> TimedSample:
    healthy: dict[str, float | None] = {
        "mean_luma": 130.0,
        "dark_share": 0.0,
        "motion": 3.0,
        "sharpness": 1600.0,
        "reference_similarity": 0.95,
    }
    healthy.update(metrics)
    return TimedSample(at=START + timedelta(seconds=second), **healthy)  # type: ignore[arg-type]


def test_a_black_sample_is_only_black() -> None:
    # Dark, featureless, still and unlike the reference: every check fires, one kind is reported.
    dark = {"mean_luma": 4.0, "dark_share": 1.0, "motion": 0.0, "sharpness": 2.0}
    timed = [
        _sample(0),
        _sample(1, **dark, reference_similarity=0.0),
        _sample(2, **dark, reference_similarity=0.0),
        _sample(3),
    ]
    assert health_intervals(timed, baseline_sharpness=1600.0) == [
        HealthInterval(START + timedelta(seconds=1), START + timedelta(seconds=3), "black")
    ]


def test_samples_further_apart_than_max_step_are_not_merged() -> None:
    timed = [
        _sample(0, reference_similarity=0.1),
        _sample(1, reference_similarity=0.1),
        _sample(30, reference_similarity=0.1),
    ]
    intervals = health_intervals(timed, baseline_sharpness=None, max_step=timedelta(seconds=10))
    # The sample before the hole and the last one each stand for one typical step (1 s).
    assert intervals == [
        HealthInterval(START, START + timedelta(seconds=2), "scene_mismatch"),
        HealthInterval(
            START + timedelta(seconds=30), START + timedelta(seconds=31), "scene_mismatch"
        ),
    ]


def test_a_freeze_starts_at_the_first_repeated_picture() -> None:
    # Keyframe 2 shows the picture that 3 and 4 repeat, the first repeat still differs a bit.
    timed = [_sample(0), _sample(1), _sample(2), _sample(3, motion=0.9), _sample(4, motion=0.0)]
    timed.append(_sample(5))
    assert health_intervals(timed, baseline_sharpness=1600.0) == [
        HealthInterval(START + timedelta(seconds=2), START + timedelta(seconds=5), "frozen")
    ]


def test_naive_instants_are_refused() -> None:
    naive = replace(_sample(0), at=datetime(2026, 11, 24, 9, 0))
    with pytest.raises(ValueError, match="timezone-aware"):
        health_intervals([naive], baseline_sharpness=None)


def test_sharpness_baseline_ignores_black_and_featureless_samples() -> None:
    timed = [_sample(second, sharpness=1000.0 + second) for second in range(5)]
    timed += [
        _sample(10 + second, mean_luma=3.0, dark_share=1.0, sharpness=1.0) for second in range(9)
    ]
    timed += [_sample(30 + second, sharpness=0.5) for second in range(9)]
    assert sharpness_baseline(timed) == 1002.0
    assert sharpness_baseline(timed[:4]) is None


@pytest.mark.parametrize(
    "not_an_image",
    [b"", b"not an image at all", bytes(range(256)) * 8, b"\x89PNG\r\n\x1a\n" + b"\x00" * 64],
)
def test_prepare_reference_refuses_what_is_not_an_image(not_an_image: bytes) -> None:
    with pytest.raises(ValueError, match="reference image"):
        prepare_reference(not_an_image)


def test_prepare_reference_refuses_arrays_that_are_not_pictures() -> None:
    with pytest.raises(ValueError, match="8-bit"):
        prepare_reference(np.zeros((240, 320, 3), dtype=np.float32))


def test_prepare_reference_gives_the_sampled_geometry() -> None:
    ok, png = cv2.imencode(".png", classroom_scene(WIDTH, HEIGHT)(0, 0.0))
    assert ok
    prepared = prepare_reference(png.tobytes())
    assert prepared.shape == (120, 160)
    assert prepared.dtype == np.uint8


def test_frame_at_returns_the_picture_shown_at_that_instant(recordings: dict[str, Path]) -> None:
    black = recordings["black"]
    # The last frame before the black stretch is at 7.9 s; the first black one at 8.0 s.
    assert frame_at(black, 7.9).mean() > 100
    assert frame_at(black, 8.0).mean() < 20
    assert frame_at(black, 12.34).mean() < 20
    assert frame_at(black, 16.0).mean() > 100
    assert frame_at(black, 23.95).shape == (HEIGHT, WIDTH, 3)


@pytest.mark.parametrize("offset", [-0.5, 24.5, float("nan")])
def test_frame_at_refuses_instants_outside_the_recording(
    recordings: dict[str, Path], offset: float
) -> None:
    with pytest.raises(ValueError):
        frame_at(recordings["normal"], offset)


def test_encode_jpeg_round_trips() -> None:
    picture = classroom_scene(WIDTH, HEIGHT)(0, 0.0)
    decoded = cv2.imdecode(np.frombuffer(encode_jpeg(picture), np.uint8), cv2.IMREAD_COLOR)
    assert decoded.shape == picture.shape
    assert float(np.abs(decoded.astype(int) - picture.astype(int)).mean()) < 6


@pytest.fixture(scope="module")
def all_keyframes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """12 s of 1280x720 at 25 frames/s, every frame a keyframe: 300 keyframes, seconds of decode."""
    return write_recording(
        tmp_path_factory.mktemp("keyframes") / "all-keyframes.mp4",
        seconds=12,
        fps=25,
        width=1280,
        height=720,
        gop_seconds=1 / 25,
    )


def test_the_budget_stops_an_all_keyframe_clip_and_says_where(all_keyframes: Path) -> None:
    budget = 0.25
    began = time.monotonic()
    sampling = sample_segment_within(all_keyframes, budget_seconds=budget)
    elapsed = time.monotonic() - began
    # The budget is checked before each keyframe: one 720p keyframe decodes in milliseconds.
    assert elapsed < budget + 0.75
    assert sampling.cut_short_at is not None and 0 < sampling.cut_short_at < 12
    assert 0 < len(sampling.samples) < 300
    assert max(sample.offset_seconds for sample in sampling.samples) < sampling.cut_short_at


def test_a_clip_within_its_budget_is_sampled_completely(tmp_path: Path) -> None:
    clip = write_recording(tmp_path / "short.mp4", seconds=4, fps=10, gop_seconds=1.0)
    sampling = sample_segment_within(clip, budget_seconds=60)
    assert sampling.cut_short_at is None and len(sampling.samples) == 4
    assert sampling.samples == sample_segment(clip)


def test_the_budget_must_be_positive(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="budget_seconds"):
        sample_segment_within(tmp_path / "unused.mp4", budget_seconds=0)
