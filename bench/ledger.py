"""Ledger cost against its length: the stored Merkle tree (issue 12) against the linear tree.

`python -m bench.ledger` grows one ledger per database, untimed and in bulk, through 10^4,
10^5, 10^6 and 10^7 entries (a valid hash chain, and the stored tree's nodes written with
them, as appends write them). At each size it times, in the same run:

- `append_500`: one transaction appending 500 entries through `storage.ledger.append_many`
  (the chain and the tree's nodes), committed;
- `checkpoint`: `make_checkpoint` right after that batch: tree checks, signing, the locked
  checkpoint file and its database record (so it also reads the 500 entries it newly covers);
- `inclusion_proof` / `consistency_proof`: `inclusion_proof_for` and `consistency_proof_for`
  for a random entry / a random old size against the whole ledger, each in a fresh session;
- `linear_checkpoint`: what a checkpoint cost before the tree was stored (every leaf read and
  hashed, then signed, stored and recorded), up to `--linear-max` entries.

Each timing is the median of its rounds, in milliseconds. Targets: every operation at the
largest size within 2x of its cost at 10^4, and a checkpoint under 20 ms at 10^7. The grown
ledgers are cached in bench/.cache/ledger/ (SQLite file; a PostgreSQL schema), so a second run
only adds what is missing; the sizes measured are the ledger's actual lengths, reported as
such. Results go to bench/results/ledger.json with the machine they came from.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import sqlite3
import statistics
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, func, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from bench.machine import cpu_model, filesystem_of
from services.ledger.checkpoints import (
    CheckpointSigner,
    consistency_proof_for,
    inclusion_proof_for,
    latest_recorded_checkpoint,
    latest_stored_checkpoint,
    ledger_leaves,
    linear_root,
    make_checkpoint,
    record_checkpoint,
    sign_checkpoint,
    store_checkpoint,
)
from services.ledger.keys import load_or_create_signer
from storage import ledger, merkle, tree
from storage.blobs import BlobStore, LocalBlobStore
from storage.db import Database
from storage.models import LedgerEntry, LedgerNode

BENCH_DIR = Path(__file__).resolve().parent
RESULTS_DIR = BENCH_DIR / "results"
CACHE_DIR = BENCH_DIR / ".cache" / "ledger"
SIZES = (10_000, 100_000, 1_000_000, 10_000_000)
BATCH = 500
CHUNK = 50_000
ROUNDS = 7
PROOFS = 25
LINEAR_MAX = 1_000_000
TARGET_FLAT_RATIO = 2.0
TARGET_CHECKPOINT_MS = 20.0
PG_SCHEMA = "bench_ledger"
_BASE_TIME = datetime(2026, 1, 1, tzinfo=UTC)


def log(message: str, *args: object) -> None:
    print(f"[{datetime.now(UTC):%H:%M:%S}] " + message % args, file=sys.stderr, flush=True)


def _pg_url(base: str) -> str:
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{PG_SCHEMA}"'))
    admin.dispose()
    url = make_url(base).update_query_dict({"options": f"-csearch_path={PG_SCHEMA}"})
    return url.render_as_string(hide_password=False)


def _head(session: Session) -> tuple[int, str, datetime]:
    row = session.execute(
        select(LedgerEntry.seq, LedgerEntry.entry_hash, LedgerEntry.recorded_at)
        .order_by(LedgerEntry.seq.desc())
        .limit(1)
    ).first()
    if row is None:
        return 0, ledger.GENESIS_HASH, _BASE_TIME
    return row.seq, row.entry_hash, row.recorded_at


def _entry_rows(first: int, count: int, prev: str, after: datetime) -> list[dict[str, Any]]:
    rows = []
    for seq in range(first, first + count):
        fields = {
            "seq": seq,
            "recorded_at": max(after, _BASE_TIME + timedelta(microseconds=seq)),
            "actor": "bench",
            "action": "bench.event",
            "subject_type": "bench",
            "subject_id": str(seq),
            "details": ledger.canonical_json({"n": seq}),
            "prev_hash": prev,
        }
        prev = ledger.entry_hash(**fields)
        rows.append({**fields, "entry_hash": prev})
    return rows


def _copy(
    session: Session, table: str, columns: tuple[str, ...], rows: list[tuple[Any, ...]]
) -> None:
    """PostgreSQL COPY through the session's own connection (same transaction)."""
    raw = session.connection().connection.dbapi_connection
    assert raw is not None
    with (
        raw.cursor() as cursor,
        cursor.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy,
    ):
        for row in rows:
            copy.write_row(row)


def _bulk_chunk(session: Session, count: int) -> int:
    """Append `count` entries and their tree nodes the fast way, untimed; returns the size."""
    ledger.lock_head(session)
    seq, prev, after = _head(session)
    rows = _entry_rows(seq + 1, count, prev, after)
    if session.get_bind().dialect.name == "postgresql":
        columns = (*ledger.ENTRY_COLUMNS,)
        _copy(session, "ledger_entries", columns, [tuple(r[c] for c in columns) for r in rows])
        peaks_at = merkle.perfect_subtrees(0, seq)
        peaks = tree.read_nodes(session, peaks_at)
        accumulator = merkle.MerkleAccumulator(seq, [peaks[key] for key in peaks_at])
        nodes = [
            node for row in rows for node in accumulator.append(bytes.fromhex(row["entry_hash"]))
        ]
        _copy(session, "ledger_nodes", ("level", "position", "digest"), nodes)
    else:
        # The DB-API directly: SQLAlchemy's per-value processing would dominate at 10^7 rows.
        # recorded_at as SQLAlchemy's SQLite DateTime writes it (naive UTC, microseconds).
        raw = session.connection().connection.dbapi_connection
        assert raw is not None
        columns = ledger.ENTRY_COLUMNS
        raw.executemany(
            f"INSERT INTO ledger_entries ({', '.join(columns)}) "
            f"VALUES ({', '.join('?' for _ in columns)})",
            [
                tuple(
                    row[c].astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
                    if c == "recorded_at"
                    else row[c]
                    for c in columns
                )
                for row in rows
            ],
        )
        peaks_at = merkle.perfect_subtrees(0, seq)
        peaks = tree.read_nodes(session, peaks_at)
        accumulator = merkle.MerkleAccumulator(seq, [peaks[key] for key in peaks_at])
        raw.executemany(
            "INSERT INTO ledger_nodes (level, position, digest) VALUES (?, ?, ?)",
            [node for row in rows for node in accumulator.append(bytes.fromhex(row["entry_hash"]))],
        )
    return seq + count


def grow(db: Database, target: int) -> float:
    """Bring the ledger to at least `target` entries; returns the seconds it took."""
    started = time.perf_counter()
    while True:
        with db.read() as session:
            size = tree.stored_size(session)
        if size >= target:
            return time.perf_counter() - started
        count = min(CHUNK, target - size)

        def chunk(session: Session, count: int = count) -> int:
            if db.is_sqlite:
                # The unique entry_hash index takes random inserts: let them hit memory.
                session.execute(text("PRAGMA cache_size = -1000000"))
            return _bulk_chunk(session, count)

        size = db.run_write(chunk)
        if size % 1_000_000 < CHUNK:
            log("  %s entries", f"{size:,}")


def _events(count: int) -> list[ledger.Event]:
    return [
        ledger.Event("bench", "bench.timed", "bench", n, {"n": n, "text": "台账"})
        for n in range(count)
    ]


def _ms(work: Callable[[], object]) -> float:
    started = time.perf_counter()
    work()
    return (time.perf_counter() - started) * 1000


def linear_checkpoint(db: Database, store: BlobStore, signer: CheckpointSigner) -> int:
    """The checkpoint as it was made before the tree was stored: read every leaf, recompute
    the root checking the latest checkpoints are its prefixes, sign, store, record."""
    stored = latest_stored_checkpoint(store)
    with db.read() as session:
        recorded = latest_recorded_checkpoint(session)
        leaves = ledger_leaves(session)
    claims = []
    if recorded is not None:
        claims.append(("recorded", recorded.size, recorded.root))
    if stored is not None:
        claims.append(("stored", stored.size, stored.root))
    checkpoint = sign_checkpoint(signer, len(leaves), linear_root(leaves, claims))
    store_checkpoint(store, checkpoint, datetime.now(UTC) + timedelta(days=1))
    db.run_write(lambda session: record_checkpoint(session, checkpoint))
    return checkpoint.size


def _summary(rounds: list[float]) -> dict[str, Any]:
    return {
        "median_ms": round(statistics.median(rounds), 3),
        "rounds_ms": [round(value, 3) for value in rounds],
    }


def measure(
    db: Database, store: BlobStore, signer: CheckpointSigner, *, linear: bool, rng: random.Random
) -> dict[str, Any]:
    appends: list[float] = []
    checkpoints: list[float] = []
    inclusions: list[float] = []
    consistencies: list[float] = []
    for _ in range(ROUNDS):
        events = _events(BATCH)

        def append(events: list[ledger.Event] = events) -> None:
            db.run_write(lambda session: ledger.append_many(session, events))

        appends.append(_ms(append))
        checkpoints.append(_ms(lambda: make_checkpoint(db, store, signer)))
        with db.read() as session:
            size = tree.stored_size(session)
        for _ in range(PROOFS // ROUNDS + 1):
            seq, old = rng.randint(1, size), rng.randint(1, size)

            def inclusion(seq: int = seq) -> None:
                with db.read() as session:
                    inclusion_proof_for(session, seq)

            def consistency(old: int = old) -> None:
                with db.read() as session:
                    consistency_proof_for(session, old)

            inclusions.append(_ms(inclusion))
            consistencies.append(_ms(consistency))
    result = {
        "append_500": _summary(appends),
        "checkpoint": _summary(checkpoints),
        "inclusion_proof": _summary(inclusions),
        "consistency_proof": _summary(consistencies),
    }
    if linear:
        with db.read() as session:
            size = tree.stored_size(session)
        repeats = 3 if size <= 200_000 else 1
        linear_rounds = []
        for _ in range(repeats):
            # One new entry first, so each linear checkpoint signs a size of its own.
            db.run_write(lambda s: ledger.append_many(s, _events(1)))
            linear_rounds.append(_ms(lambda: linear_checkpoint(db, store, signer)))
        result["linear_checkpoint"] = _summary(linear_rounds)
    return result


def _open(kind: str, postgres_url: str | None) -> tuple[Database, Path]:
    home = CACHE_DIR / kind
    home.mkdir(parents=True, exist_ok=True)
    if kind == "sqlite":
        url = f"sqlite:///{home / 'ledger.sqlite3'}"
    else:
        assert postgres_url is not None
        url = _pg_url(postgres_url)
    db = Database(url)
    db.upgrade()
    return db, home


def _sizes_of(db: Database) -> dict[str, int]:
    with db.read() as session:
        return {
            "entries": session.scalar(select(func.max(LedgerEntry.seq))) or 0,
            "stored_tree_nodes": session.scalar(select(func.count()).select_from(LedgerNode)) or 0,
        }


def drop_cache(postgres_url: str | None) -> None:
    """Start from empty ledgers: the sizes only grow, so a smaller run needs a fresh cache."""
    (CACHE_DIR / "sqlite" / "ledger.sqlite3").unlink(missing_ok=True)
    for suffix in ("-wal", "-shm"):
        (CACHE_DIR / "sqlite" / f"ledger.sqlite3{suffix}").unlink(missing_ok=True)
    for kind in ("sqlite", "postgresql"):
        for key_file in (CACHE_DIR / kind).glob("ledger-signing-key.pem"):
            key_file.unlink()
        objects = CACHE_DIR / kind / "objects"
        if objects.exists():
            for path in sorted(objects.rglob("*"), reverse=True):
                if path.is_dir():
                    path.rmdir()
                else:
                    path.chmod(0o644)
                    path.unlink()
    if postgres_url:
        admin = create_engine(postgres_url, isolation_level="AUTOCOMMIT")
        with admin.connect() as connection:
            connection.execute(text(f'DROP SCHEMA IF EXISTS "{PG_SCHEMA}" CASCADE'))
        admin.dispose()


def run(
    kinds: list[str],
    sizes: list[int],
    postgres_url: str | None,
    linear_max: int,
    report: dict[str, Any],
    save: Callable[[], None],
) -> None:
    """Size by size, each database in turn, saving after every measurement: a run cut short
    still leaves every size it finished on both databases."""
    opened = {kind: _open(kind, postgres_url) for kind in kinds}
    rng = random.Random(9162)
    try:
        for target in sizes:
            for kind, (db, home) in opened.items():
                store = LocalBlobStore(home / "objects")
                signer = load_or_create_signer(home)
                log("%s: growing the ledger to %s entries (untimed)", kind, f"{target:,}")
                build_seconds = grow(db, target)
                # The first checkpoint after a bulk build reads every entry it newly covers:
                # not one of the timed operations, reported for what it is.
                first = _ms(
                    lambda db=db, store=store, signer=signer: make_checkpoint(db, store, signer)
                )
                log("%s: measuring at %s entries", kind, f"{target:,}")
                timings = measure(db, store, signer, linear=target <= linear_max, rng=rng)
                row = {
                    "target_entries": target,
                    **_sizes_of(db),
                    "bulk_build_seconds": round(build_seconds, 1),
                    "first_checkpoint_after_build_ms": round(first, 1),
                    "load_average_1m": round(os.getloadavg()[0], 2),
                    "operations": timings,
                }
                results = report["databases"].setdefault(kind, {"sizes": []})
                results["sizes"].append(row)
                results["verdict"] = _verdict(results["sizes"])
                save()
                medians = {name: value["median_ms"] for name, value in timings.items()}
                log("%s at %s: %s", kind, f"{target:,}", json.dumps(medians))
    finally:
        for db, _home in opened.values():
            db.dispose()


def _verdict(results: list[dict[str, Any]]) -> dict[str, Any]:
    if not results:
        return {}
    smallest, largest = results[0], results[-1]
    ratios = {
        name: round(
            largest["operations"][name]["median_ms"] / smallest["operations"][name]["median_ms"],
            2,
        )
        for name in ("append_500", "checkpoint", "inclusion_proof", "consistency_proof")
    }
    checkpoint_ms = largest["operations"]["checkpoint"]["median_ms"]
    return {
        "compared": f"{largest['entries']:,} entries vs {smallest['entries']:,}",
        "ratio_largest_to_smallest": ratios,
        "flat_within_2x": {name: ratio <= TARGET_FLAT_RATIO for name, ratio in ratios.items()},
        "checkpoint_ms_at_largest": checkpoint_ms,
        "checkpoint_under_20_ms_at_largest": checkpoint_ms < TARGET_CHECKPOINT_MS,
    }


def machine(scratch: Path) -> dict[str, Any]:
    return {
        "platform": platform.platform(),
        "cpu_model": cpu_model(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "scratch_filesystem": filesystem_of(scratch),
        "date_utc": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.ledger", description=__doc__)
    parser.add_argument("--sizes", default=",".join(str(size) for size in SIZES))
    parser.add_argument("--databases", default="sqlite,postgresql")
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get(
            "EXAMVAULT_BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
        ),
    )
    parser.add_argument("--linear-max", type=int, default=LINEAR_MAX)
    parser.add_argument("--output", type=Path, default=RESULTS_DIR / "ledger.json")
    parser.add_argument("--fresh", action="store_true", help="drop the cached ledgers first")
    parser.add_argument(
        "--grow-only",
        action="store_true",
        help="only grow the cached ledgers to the largest size (untimed; e.g. one process per "
        "database beside a run), measure nothing",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    sizes = sorted(int(size) for size in args.sizes.split(","))
    if args.fresh:
        drop_cache(args.postgres_url if "postgresql" in args.databases else None)
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    if args.grow_only:
        for kind in args.databases.split(","):
            db, _home = _open(kind, args.postgres_url)
            log("%s: grown to %s in %.0f s", kind, f"{sizes[-1]:,}", grow(db, sizes[-1]))
            db.dispose()
        return 0
    load_before = os.getloadavg()[0]
    report: dict[str, Any] = {
        "benchmark": "ledger",
        "machine": machine(CACHE_DIR),
        "workload": {
            "sizes": sizes,
            "append_batch": BATCH,
            "rounds": ROUNDS,
            "proofs_per_size": (PROOFS // ROUNDS + 1) * ROUNDS,
            "linear_checkpoint_up_to": args.linear_max,
        },
        "setup": {
            "sqlite": "embedded default (WAL, synchronous=FULL), file on the scratch filesystem",
            "postgresql": "local server, schema of its own; bulk rows by COPY",
            "blob_store": "local (checkpoint files, fsynced)",
            "creation": "untimed: entries with a valid chain and their tree nodes in chunks of "
            f"{CHUNK:,}, one transaction each, growing one ledger per database through the sizes",
            "statistic": "median of the rounds, milliseconds; the ledger grows by the timed "
            "appends, so each size is the actual length reported",
        },
        "targets": {
            "flat": f"each operation at the largest size within {TARGET_FLAT_RATIO}x "
            "of its cost at the smallest",
            "checkpoint_ms": TARGET_CHECKPOINT_MS,
        },
        "databases": {},
    }

    def save() -> None:
        report["setup"]["load_average_1m"] = {
            "before": round(load_before, 2),
            "now": round(os.getloadavg()[0], 2),
        }
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")

    run(args.databases.split(","), sizes, args.postgres_url, args.linear_max, report, save)
    save()
    print(json.dumps({k: v["verdict"] for k, v in report["databases"].items()}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
