"""Footage API speed: Range streaming against reading the file directly, and the time to the
first byte of playback for a short and a long range.

`python -m bench.api` (what `make bench` runs) builds, untimed, a data dir on the embedded
defaults (SQLite, local blob store, health checks off) and starts the real API in a separate
`uvicorn` process on 127.0.0.1, so server and client each have a core. Then, in the same run:

- Range streaming: `GET /api/v1/segments/{id}/content` with `Range: bytes=0-` (206, the whole
  ~90 MB recording) read by an httpx streaming client, against reading the same file directly
  in 1 MiB chunks. Both sides read from the page cache (the file was just written and read).
  Target: the API at 0.5 of the direct read's MB/s or better. For scale, the same file is also
  served by a bare Starlette `FileResponse` (no auth, no database, no ledger) in an identical
  uvicorn process, and both servers are read once more with a raw socket client, because the
  httpx client itself tops out near 1 GB/s on this kind of machine.
- Playback time to first byte: `GET /api/v1/cameras/{code}/playback` for 1 minute and for
  3 hours of the same camera (36 five-minute 320x240 segments), each starting mid-segment, from
  the request until the first body bytes arrive. Target: under 200 ms for both, and the long
  range no slower than the short one beyond noise (the stream starts before the range is read).

- Behind nginx (deploy/nginx/examvault.conf, Debian's nginx, plain HTTP so nginx uses
  sendfile as it does for any file): the same content GET through nginx to an API process with
  EXAMVAULT_FOOTAGE_OFFLOAD (scope check and ledger entry in Python, then X-Accel-Redirect:
  nginx sends the file), side by side with nginx serving the same file directly from a plain
  location, both read with the raw socket client. Target: 0.9 of nginx's own rate or better.

Every request writes its ledger entry before its first byte, as in production. Recordings are
encoded once and cached in bench/.cache/ (gitignored). Results go to bench/results/api.json
with the machine they came from.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import av
import httpx
from sqlalchemy import select

from bench.machine import cpu_model, filesystem_of
from services.access.tokens import create_token
from services.context import Services
from services.demo.footage import classroom_scene, write_recording
from services.ingest.pipeline import Arrival, Outcome
from services.registry import import_registry
from services.settings import load_settings
from storage.blobs import LocalBlobStore
from storage.models import Camera, Segment

BENCH_DIR = Path(__file__).resolve().parent
CACHE_DIR = BENCH_DIR / ".cache"
RESULTS_DIR = BENCH_DIR / "results"
CHUNK = 1024 * 1024
MB = 1_000_000
TARGET_RATIO = 0.5
TARGET_NGINX_RATIO = 0.9
TARGET_TTFB_MS = 200.0
RANGE_CAMERA = "BENCHAPI-S1-R1-F"
PLAYBACK_CAMERA = "BENCHAPI-S1-R1-B"
REGISTRY = {
    "institutions": [
        {
            "code": "BENCHAPI",
            "name": "Benchmark testing centre",
            "district": "Bench district",
            "sites": [
                {
                    "code": "BENCHAPI-S1",
                    "address": "1 Benchmark Road",
                    "rooms": [
                        {
                            "code": "BENCHAPI-S1-R1",
                            "kind": "theory",
                            "cameras": [
                                {"code": RANGE_CAMERA, "position": "front"},
                                {"code": PLAYBACK_CAMERA, "position": "back"},
                            ],
                        }
                    ],
                }
            ],
        }
    ]
}
# The long recording for Range streaming: 60 s of 1280x720 at 12 Mbit/s, about 90 MB.
BIG = {"seconds": 60, "fps": 25, "width": 1280, "height": 720, "bit_rate": 12_000_000}
# The playback day: five-minute low-resolution segments, back to back, a keyframe every 2 s.
SEGMENT_SECONDS = 300
SEGMENTS = 36
DISTINCT_SEGMENTS = 4
SMALL = {"seconds": SEGMENT_SECONDS, "fps": 10, "width": 320, "height": 240}


def cached(name: str, **spec: Any) -> Path:
    path = CACHE_DIR / name
    if path.exists():
        return path
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    # Encode under another name: an interrupted run must not leave a truncated file behind.
    partial = path.with_name(path.name + ".part")
    print(f"encoding {name} (cached for later runs)", file=sys.stderr, flush=True)
    seed = spec.pop("seed", 0)
    write_recording(
        partial,
        fmt="mp4",
        scene=classroom_scene(spec["width"], spec["height"], seed=seed),
        gop_seconds=2.0,
        **spec,
    )
    partial.rename(path)
    return path


def build_data_dir(data_dir: Path, first_start: datetime) -> dict[str, Any]:
    """Ingest the recordings through the real pipeline and make an admin token."""
    big = cached("api-range-1280x720-25fps-12000kbps-60s.mp4", **BIG)
    small = [
        cached(f"api-playback-320x240-10fps-300s-seed{seed}.mp4", seed=seed, **SMALL)
        for seed in range(DISTINCT_SEGMENTS)
    ]
    services = open_services(data_dir)
    try:
        services.db.run_write(
            lambda session: import_registry(session, json.dumps(REGISTRY), actor="bench")
        )
        spool = services.settings.resolved_spool_dir
        plan = [(RANGE_CAMERA, big, first_start)] + [
            (
                PLAYBACK_CAMERA,
                small[index % len(small)],
                first_start + timedelta(seconds=index * SEGMENT_SECONDS),
            )
            for index in range(SEGMENTS)
        ]
        for camera, source, start in plan:
            folder = spool / camera
            folder.mkdir(parents=True, exist_ok=True)
            target = folder / f"{start:%Y%m%dT%H%M%S}Z.mp4"
            shutil.copyfile(source, target)
            result = services.pipeline.ingest(
                Arrival(
                    path=target,
                    camera_code=camera,
                    file_name=target.name,
                    source="spool",
                    received_at=datetime.now(UTC),
                ),
                actor="bench",
            )
            if result.outcome is not Outcome.STORED:
                raise RuntimeError(f"{target.name}: {result.outcome} {result.code} {result.reason}")
        _, token = services.db.run_write(
            lambda session: create_token(session, role="admin", name="bench", actor="bench")
        )
        with services.db.read() as session:
            big_segment = session.scalars(
                select(Segment)
                .join(Camera, Segment.camera_id == Camera.id)
                .where(Camera.code == RANGE_CAMERA)
            ).one()
            path = services.store.local_path(big_segment.blob_key)
            assert path is not None
            return {
                "token": token,
                "segment": big_segment.id,
                "key": big_segment.blob_key,
                "size": big_segment.size_bytes,
                "path": path,
                "playback_bytes": sum(source.stat().st_size for _, source, _ in plan[1:]),
            }
    finally:
        services.close()


def open_services(data_dir: Path, *, offload: bool = False) -> Services:
    # Explicit Nones: EXAMVAULT_* in the environment must not turn this into another setup.
    settings = load_settings(
        data_dir=data_dir,
        database_url=None,
        storage_url=None,
        spool_dir=None,
        health_checks=False,
        footage_offload=offload,
    )
    services = Services.from_settings(settings)
    if not services.db.is_sqlite or not isinstance(services.store, LocalBlobStore):
        raise RuntimeError("the benchmark must run on the embedded SQLite + local blob store")
    return services


def serve_bare(path: Path, port: int) -> int:
    """The HTTP floor (run in its own process): the same file as a bare FileResponse."""
    import uvicorn
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import FileResponse
    from starlette.routing import Route

    async def file(_request: Request) -> FileResponse:
        return FileResponse(path)

    app = Starlette(routes=[Route("/file", file)])
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")
    return 0


def serve(data_dir: Path, port: int, *, offload: bool = False) -> int:
    """The server side (run in its own process): the API on the prepared data dir."""
    import uvicorn

    from services.api.app import create_app

    services = open_services(data_dir, offload=offload)
    try:
        uvicorn.run(create_app(services), host="127.0.0.1", port=port, log_level="warning")
    finally:
        services.close()
    return 0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def server_process(command: str, target: Path, health: str, *extra: str) -> Iterator[str]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "bench.api", command, str(target), "--port", str(port), *extra],
        cwd=BENCH_DIR.parent,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{base}{health}", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the API server did not come up")
            time.sleep(0.1)
        yield base
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


NGINX_FILE_LOCATION = "/bench-file/"


@contextmanager
def fronting_nginx(data_dir: Path, api_base: str, scratch: Path) -> Iterator[str]:
    """Debian's nginx with the deployed configuration in front of `api_base`, plus a plain
    location serving the objects directory directly (the side to compare with)."""
    from tests.nginx import nginx_missing, render_site, running_nginx, self_signed

    missing = nginx_missing()
    if missing:
        raise RuntimeError(f"{missing}: `make nginx` installs it")
    objects = (data_dir / "objects").resolve()
    prefix = Path(tempfile.mkdtemp(prefix="bench-nginx-", dir=scratch))
    port = free_port()
    site = render_site(
        upstreams=[api_base.removeprefix("http://")],
        objects_dir=objects,
        http_port=free_port(),
        https_port=port,
        tls=self_signed(prefix / "tls"),
        plain=True,
        extra_locations=(
            f"    location {NGINX_FILE_LOCATION} {{\n        alias {objects}/;\n    }}\n"
        ),
    )
    try:
        with running_nginx(prefix / "run", site, port, scheme="http") as base:
            yield base
    finally:
        shutil.rmtree(prefix, ignore_errors=True)


def nginx_version() -> str:
    from tests.nginx import NGINX

    found = subprocess.run([str(NGINX), "-v"], capture_output=True, text=True, check=False)
    return found.stderr.strip().removeprefix("nginx version: ")


def read_direct(path: Path) -> tuple[float, int]:
    started = time.perf_counter()
    size = 0
    with path.open("rb") as reader:
        while chunk := reader.read(CHUNK):
            size += len(chunk)
    return time.perf_counter() - started, size


def read_api(client: httpx.Client, url: str) -> tuple[float, int]:
    started = time.perf_counter()
    size = 0
    with client.stream("GET", url, headers={"Range": "bytes=0-"}) as response:
        if response.status_code != 206:
            raise RuntimeError(f"content answered {response.status_code}")
        for chunk in response.iter_raw(CHUNK):
            size += len(chunk)
    return time.perf_counter() - started, size


def read_raw(
    base: str, path: str, headers: dict[str, str], byte_range: str = "0-"
) -> tuple[float, int]:
    """The same GET with a bare socket client: no HTTP library between the bytes and us."""
    host, port = base.removeprefix("http://").split(":")
    lines = [
        f"GET {path} HTTP/1.1",
        f"Host: {host}",
        "Connection: close",
        f"Range: bytes={byte_range}",
    ]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    buffer = bytearray(CHUNK)
    started = time.perf_counter()
    total = 0
    head = b""
    with socket.create_connection((host, int(port))) as connection:
        connection.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("ascii"))
        while received := connection.recv_into(buffer):
            if len(head) < 4096:
                head += bytes(buffer[: min(received, 4096)])
            total += received
    seconds = time.perf_counter() - started
    return seconds, total - (head.index(b"\r\n\r\n") + 4)


def first_byte(client: httpx.Client, url: str, params: dict[str, str]) -> float:
    """Seconds from sending the request to holding the first body bytes."""
    started = time.perf_counter()
    with client.stream("GET", url, params=params) as response:
        if response.status_code != 200:
            raise RuntimeError(f"playback answered {response.status_code}: {response.read()!r}")
        for chunk in response.iter_raw():
            if chunk:
                return time.perf_counter() - started
    raise RuntimeError("playback sent no bytes")


def machine(scratch: Path) -> dict[str, Any]:
    return {
        "platform": platform.platform(),
        "cpu_model": cpu_model(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "av": av.__version__,
        "ffmpeg": str(av.ffmpeg_version_info),
        "httpx": httpx.__version__,
        "sqlite": sqlite3.sqlite_version,
        "scratch_filesystem": filesystem_of(scratch),
        "date_utc": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.api",
        description="Footage API: Range streaming vs a direct read; playback time to first byte.",
    )
    parser.add_argument("--rounds", type=int, default=5, help="Range rounds (default 5)")
    parser.add_argument("--requests", type=int, default=9, help="playback requests per range")
    parser.add_argument("--scratch", type=Path, help="where the data dir goes (default: tmp)")
    parser.add_argument("--output", type=Path, default=RESULTS_DIR / "api.json")
    sub = parser.add_subparsers(dest="command")
    server = sub.add_parser("serve", help="internal: run the API on a prepared data dir")
    server.add_argument("target", type=Path, help="the data dir")
    server.add_argument("--port", type=int, required=True)
    server.add_argument("--offload", action="store_true", help="EXAMVAULT_FOOTAGE_OFFLOAD")
    bare = sub.add_parser("bare", help="internal: serve one file with a bare FileResponse")
    bare.add_argument("target", type=Path, help="the file")
    bare.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.requests < 1:
        parser.error("--rounds and --requests must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.command == "serve":
        return serve(args.target, args.port, offload=args.offload)
    if args.command == "bare":
        return serve_bare(args.target, args.port)
    scratch = (args.scratch or Path(tempfile.gettempdir())).resolve()
    scratch.mkdir(parents=True, exist_ok=True)
    data_dir = Path(tempfile.mkdtemp(prefix="bench-api-", dir=scratch))
    # Whole seconds in the past, so nothing is flagged as coming from the future.
    first_start = datetime.now(UTC).replace(microsecond=0, second=0) - timedelta(days=1)
    try:
        world = build_data_dir(data_dir, first_start)
        return run(args, world, data_dir, first_start, scratch)
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)


def run(
    args: argparse.Namespace,
    world: dict[str, Any],
    data_dir: Path,
    first_start: datetime,
    scratch: Path,
) -> int:
    print(
        f"api: Range over a {world['size'] / MB:.1f} MB segment, {args.rounds} rounds; playback "
        f"TTFB over {SEGMENTS} x {SEGMENT_SECONDS} s segments, {args.requests} requests each",
        flush=True,
    )
    load_before = os.getloadavg()[0]
    headers = {"Authorization": f"Bearer {world['token']}"}
    sides = (
        "direct",
        "api",
        "bare",
        "api_raw_socket",
        "bare_raw_socket",
        "nginx_api_raw_socket",
        "nginx_file_raw_socket",
    )
    rates: dict[str, list[float]] = {side: [] for side in sides}
    ttfb: dict[str, list[float]] = {"1min": [], "3h": []}
    one_byte: dict[str, list[float]] = {"through_api": [], "file_directly": []}
    # Starts mid-segment, mid-GOP, so landing on a keyframe is part of the measure.
    start = first_start + timedelta(seconds=SEGMENT_SECONDS * 2 + 61.3)
    ranges = {
        "1min": {"start": start.isoformat(), "end": (start + timedelta(minutes=1)).isoformat()},
        "3h": {
            "start": (first_start + timedelta(seconds=61.3)).isoformat(),
            "end": (first_start + timedelta(hours=3)).isoformat(),
        },
    }
    with (
        server_process("serve", data_dir, "/healthz") as base,
        server_process("bare", world["path"], "/file") as bare_base,
        server_process("serve", data_dir, "/healthz", "--offload") as offload_base,
        fronting_nginx(data_dir, offload_base, scratch) as nginx_base,
        httpx.Client(headers=headers, timeout=60) as client,
    ):
        content_path = f"/api/v1/segments/{world['segment']}/content"
        content = f"{base}{content_path}"
        playback = f"{base}/api/v1/cameras/{PLAYBACK_CAMERA}/playback"
        readers = {
            "direct": lambda: read_direct(world["path"]),
            "api": lambda: read_api(client, content),
            "bare": lambda: read_api(client, f"{bare_base}/file"),
            "api_raw_socket": lambda: read_raw(base, content_path, headers),
            "bare_raw_socket": lambda: read_raw(bare_base, "/file", {}),
            "nginx_api_raw_socket": lambda: read_raw(nginx_base, content_path, headers),
            "nginx_file_raw_socket": lambda: read_raw(
                nginx_base, f"{NGINX_FILE_LOCATION}{world['key']}", {}
            ),
        }
        for reader in readers.values():  # warm the page cache and every code path, untimed
            reader()
        for _ in range(2):
            first_byte(client, playback, ranges["1min"])
        for index in range(args.rounds):
            # Rotate the order so that no side always runs first (or last) in a round.
            order = sides[index % len(sides) :] + sides[: index % len(sides)]
            for side in order:
                seconds, size = readers[side]()
                if size != world["size"]:
                    raise RuntimeError(f"{side} read {size} bytes, not {world['size']}")
                rates[side].append(size / MB / seconds)
            print(
                f"  round {index + 1}: "
                + ", ".join(f"{side} {rates[side][-1]:.1f}" for side in sides)
                + " MB/s",
                flush=True,
            )
        # The fixed cost of one read through the API (token, scope, ledger commit), which is
        # what separates the two nginx sides: a one-byte Range each way.
        for _ in range(args.requests):
            one_byte["through_api"].append(
                read_raw(nginx_base, content_path, headers, "0-0")[0] * 1000
            )
            one_byte["file_directly"].append(
                read_raw(nginx_base, f"{NGINX_FILE_LOCATION}{world['key']}", {}, "0-0")[0] * 1000
            )
        for index in range(args.requests):
            for name in ("1min", "3h") if index % 2 == 0 else ("3h", "1min"):
                ttfb[name].append(first_byte(client, playback, ranges[name]) * 1000)
        plans = {
            name: client.get(playback, params={**window, "format": "json"}).json()
            for name, window in ranges.items()
        }
    load_after = os.getloadavg()[0]

    median = {side: statistics.median(values) for side, values in rates.items()}
    ratio = median["api"] / median["direct"]
    nginx_ratio = median["nginx_api_raw_socket"] / median["nginx_file_raw_socket"]
    ttfb_median = {name: round(statistics.median(values), 1) for name, values in ttfb.items()}
    results = {
        "benchmark": "api",
        "machine": machine(scratch),
        "workload": {
            "range_segment_bytes": world["size"],
            "range_segment": "60 s 1280x720 H.264 25 fps 12 Mbit/s MP4",
            "playback_segments": SEGMENTS,
            "playback_segment": "300 s 320x240 H.264 10 fps MP4, keyframe every 2 s",
            "playback_bytes": world["playback_bytes"],
            "playback_ranges": {
                name: {
                    "pieces": len(plan["pieces"]),
                    "media_seconds": plan["media_seconds"],
                    "first_frame": plan["start"],
                }
                for name, plan in plans.items()
            },
        },
        "setup": {
            "database": "sqlite (embedded default)",
            "blob_store": "local (embedded default)",
            "server": "uvicorn in a separate process on 127.0.0.1 (1 worker)",
            "client": "httpx streaming, iter_raw 1 MiB",
            "direct": "open + read 1 MiB chunks of the stored file",
            "cache": "warm, both sides",
            "ledger": "one entry per request, written before the first byte",
            "rounds": args.rounds,
            "requests_per_range": args.requests,
            "load_average_1m": {"before": round(load_before, 2), "after": round(load_after, 2)},
        },
        "range": {
            "mb_per_s": {side: round(value, 1) for side, value in median.items()},
            "rounds_mb_per_s": {
                side: [round(v, 1) for v in values] for side, values in rates.items()
            },
            "ratio": round(ratio, 3),
            "target": TARGET_RATIO,
            "met": ratio >= TARGET_RATIO,
            "ratio_to_bare_file_response": round(median["api"] / median["bare"], 3),
            "ratio_to_bare_raw_socket": round(
                median["api_raw_socket"] / median["bare_raw_socket"], 3
            ),
            "what": {
                "direct": "open + read 1 MiB chunks of the stored file (page cache)",
                "api": "GET content, Range bytes=0-, httpx streaming client",
                "bare": "the same file from a bare Starlette FileResponse, httpx client",
                "api_raw_socket": "GET content read with a plain socket (recv_into 1 MiB)",
                "bare_raw_socket": "the bare FileResponse read with a plain socket",
                "nginx_api_raw_socket": "GET content through nginx to an API process with "
                "EXAMVAULT_FOOTAGE_OFFLOAD (X-Accel-Redirect), plain socket",
                "nginx_file_raw_socket": "the same file from a plain nginx location, plain socket",
            },
        },
        "nginx_fronted": {
            "config": "deploy/nginx/examvault.conf, main server on plain HTTP (sendfile)",
            "nginx": nginx_version(),
            "mb_per_s": {
                "through_api": round(median["nginx_api_raw_socket"], 1),
                "file_directly": round(median["nginx_file_raw_socket"], 1),
            },
            "ratio": round(nginx_ratio, 3),
            "one_byte_range_ms": {
                side: round(statistics.median(values), 2) for side, values in one_byte.items()
            },
            "target": TARGET_NGINX_RATIO,
            "met": nginx_ratio >= TARGET_NGINX_RATIO,
        },
        "playback_ttfb_ms": {
            "median": ttfb_median,
            "max": {name: round(max(values), 1) for name, values in ttfb.items()},
            "all": {name: [round(v, 1) for v in values] for name, values in ttfb.items()},
            "target": TARGET_TTFB_MS,
            "met": all(value < TARGET_TTFB_MS for value in ttfb_median.values()),
        },
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print("range MB/s: " + ", ".join(f"{side} {value:.1f}" for side, value in median.items()))
    print(
        f"ratio api/direct {ratio:.3f} (target >= {TARGET_RATIO}: "
        f"{'met' if results['range']['met'] else 'NOT met'}); api/bare FileResponse "
        f"{results['range']['ratio_to_bare_file_response']}, raw sockets "
        f"{results['range']['ratio_to_bare_raw_socket']}"
    )
    print(
        f"behind nginx: through the API {median['nginx_api_raw_socket']:.1f} MB/s, the file "
        f"directly {median['nginx_file_raw_socket']:.1f} MB/s, ratio {nginx_ratio:.3f} (target "
        f">= {TARGET_NGINX_RATIO}: {'met' if nginx_ratio >= TARGET_NGINX_RATIO else 'NOT met'})"
    )
    print(
        f"playback TTFB median: 1 min {ttfb_median['1min']} ms, 3 h {ttfb_median['3h']} ms "
        f"(target < {TARGET_TTFB_MS:g} ms: "
        f"{'met' if results['playback_ttfb_ms']['met'] else 'NOT met'})"
    )
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
