"""The `examvault` command: parses, calls services, prints. Exit codes: 0 success, 1 the check
or operation failed, 2 bad usage or bad input, 3 (verify-export only) the package is intact but
no trusted key was given to tie it to the centre; errors go to stderr in one sentence."""

from __future__ import annotations

import argparse
import gc
import json
import logging
import signal
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from services.settings import Settings, SettingsError, load_settings
from storage.blobs import BlobStoreError

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from services.context import Services
    from services.coverage.reports import CoverageReport
    from services.evidence.package import TrustedKey, WitnessQuorum
    from services.retention.purge import PurgePlan

logger = logging.getLogger("examvault")

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
# Not 0: a script that checks for success must not take an unknown signer for the centre.
EXIT_ORIGIN_NOT_VERIFIED = 3


class CommandError(Exception):
    def __init__(self, message: str, exit_code: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def _services(
    settings: Settings, *, migrate: bool = True, store_may_be_down: bool = False
) -> Services:
    # Imported here so `examvault --help` and bad usage answer without loading PyAV and OpenCV.
    from services.context import Services

    return Services.from_settings(settings, migrate=migrate, store_may_be_down=store_may_be_down)


def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    from services.api.app import create_app
    from services.api.server import run as run_server
    from services.evidence.exports import close_interrupted_exports
    from services.ingest.worker import IngestWorker
    from services.retention.purge import close_abandoned_runs

    # An unreachable store does not stop the server: it reports unready, keeps uploads in the
    # spool and stores them once the store answers again.
    services = _services(settings, store_may_be_down=True)
    # What a killed predecessor left open is closed as interrupted, in the ledger too.
    close_abandoned_runs(services.db)
    close_interrupted_exports(services.db)
    # Only when asked: demo footage and ledger entries in a production database (on S3 under a
    # three-year COMPLIANCE lock) could never be removed.
    if args.demo:
        from services.demo.seed import seed_demo_if_empty

        if not seed_demo_if_empty(services):
            logger.info("demo data not seeded: the database already holds a registry")
    if settings.uses_job_queue:
        # PostgreSQL: uploads become jobs that `examvault worker`s take; the spool, health,
        # sweeps, checkpoints and the purge are theirs too (docs/architecture.md).
        from services.jobs import JobQueue, queue_depths

        services.metrics.watch_queue(lambda: queue_depths(services))
        app = create_app(
            services, jobs=services.background_jobs(queued=True), job_queue=JobQueue(services)
        )
    else:
        worker = IngestWorker(services.pipeline)
        app = create_app(
            services, worker=worker, jobs=services.background_jobs(scheduled_purge=True)
        )
    # Everything imported and built so far lives as long as the process: freezing it keeps the
    # collector's full passes (35-47 ms each, measured by bench/coverage.py) from walking it
    # again and again in the middle of requests.
    gc.collect()
    gc.freeze()
    logger.info(
        "examvault serving on http://%s:%d (data in %s)",
        args.host,
        args.port,
        settings.data_dir.resolve(),
    )
    # uvicorn with header/body deadlines and a connection cap (docs/operations.md).
    run_server(app, settings, host=args.host, port=args.port)
    services.close()
    return EXIT_OK


def cmd_worker(args: argparse.Namespace, settings: Settings) -> int:
    from services.ingest.worker import IngestWorker

    services = _services(settings, store_may_be_down=True)
    if settings.uses_job_queue:
        from services.jobs import QUEUES, run_worker

        queues = [name.strip() for name in (args.queues or ",".join(QUEUES)).split(",")]
        unknown = sorted(set(queues) - set(QUEUES) - {""})
        if unknown or not any(queues):
            services.close()
            raise CommandError(
                f"--queues takes a comma-separated list of {', '.join(QUEUES)}, not {args.queues!r}"
            )
        concurrency = args.concurrency or settings.queue_concurrency
        logger.info("worker taking jobs from %s (%d at a time)", ", ".join(queues), concurrency)
        run_worker(
            services,
            queues=[name for name in queues if name],
            concurrency=concurrency,
            metrics_port=args.metrics_port,
        )
        services.close()
        return EXIT_OK
    if args.queues:
        logger.warning("--queues is for the PostgreSQL job queue; this worker does everything")
    jobs = [IngestWorker(services.pipeline), *services.background_jobs()]
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    for job in jobs:
        job.start()
    logger.info("ingest worker watching %s", settings.resolved_spool_dir)
    stop.wait()
    for job in reversed(jobs):
        job.stop()
    services.close()
    return EXIT_OK


def cmd_db_upgrade(_args: argparse.Namespace, settings: Settings) -> int:
    services = _services(settings, migrate=False)
    with _tree_progress() as progress:
        services.db.upgrade(progress=progress)
    print(f"database is at the newest schema ({settings.resolved_database_url.split('://')[0]})")
    services.close()
    return EXIT_OK


def cmd_storage_init(_args: argparse.Namespace, settings: Settings) -> int:
    from storage.stores import init_blob_store

    # The one command that may create the bucket: every other process refuses a missing one.
    store, created = init_blob_store(
        settings.resolved_storage_url,
        access_key=settings.s3_access_key,
        secret_key=settings.s3_secret_key,
    )
    if created:
        print(f"created {store.url} with Object Lock (COMPLIANCE evidence can go in)")
    else:
        print(f"{store.url} is ready (already set up)")
    return EXIT_OK


def _read_input(path: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise CommandError(f"{path}: no such file") from exc
    except UnicodeDecodeError as exc:
        raise CommandError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    except OSError as exc:
        raise CommandError(f"{path}: {exc.strerror}") from exc


def cmd_registry_import(args: argparse.Namespace, settings: Settings) -> int:
    from services.registry import RegistryError, import_registry

    text = _read_input(args.file)
    services = _services(settings)
    try:
        summary = services.db.run_write(
            lambda session: import_registry(session, text, actor="cli:registry-import")
        )
    except RegistryError as exc:
        raise CommandError(f"{args.file}: {exc}; nothing was imported") from exc
    finally:
        services.close()
    print(
        f"imported {summary.institutions} institution(s), {summary.sites} site(s), "
        f"{summary.rooms} room(s), {summary.cameras} camera(s)"
    )
    if summary.retired_cameras:
        print(f"retired camera(s) no longer listed: {', '.join(summary.retired_cameras)}")
    return EXIT_OK


def cmd_sittings_import(args: argparse.Namespace, settings: Settings) -> int:
    from services.coverage.schedule import ScheduleError, parse_csv

    text = _read_input(args.file)
    notes: list[str] = []
    try:
        rows = parse_csv(text, settings.zone, notes)
    except ScheduleError as exc:
        raise CommandError(f"{args.file}: {exc}; nothing was imported") from exc
    services = _services(settings)

    try:
        summary = services.db.run_write(
            lambda session: services.import_schedule(
                session,
                rows,
                actor="cli:sittings-import",
                zone_assumed=notes,
            )
        )
    except ScheduleError as exc:
        raise CommandError(f"{args.file}: {exc}; nothing was imported") from exc
    finally:
        services.close()
    print(
        f"{len(summary.created)} sitting(s) created, {len(summary.updated)} updated, "
        f"{len(summary.unchanged)} unchanged"
    )
    if summary.zone_assumed:
        print(
            f"note: no UTC offset given, read as {settings.timezone}: "
            + "; ".join(summary.zone_assumed)
        )
    return EXIT_OK


def cmd_coverage(args: argparse.Namespace, settings: Settings) -> int:
    from sqlalchemy import select

    from services.coverage.text import render_report
    from services.coverage.verdicts import refresh_verdict
    from storage.models import Sitting

    services = _services(settings)
    try:

        def work(session: Session) -> CoverageReport | None:
            sitting = session.scalar(select(Sitting).where(Sitting.code == args.code))
            if sitting is None:
                return None
            return refresh_verdict(
                session, sitting, settings, actor="cli:coverage", reason="report requested"
            )

        report = services.db.run_write(work)
    finally:
        services.close()
    if report is None:
        raise CommandError(f"no sitting {args.code!r}")
    if args.json:
        print(json.dumps(report.as_json(settings.zone), ensure_ascii=False, indent=2))
    else:
        print(render_report(report, settings.zone))
    return EXIT_OK


def cmd_health_reflag(args: argparse.Namespace, settings: Settings) -> int:
    services = _services(settings)
    try:
        count = services.health.rederive_flags(args.camera)
    finally:
        services.close()
    print(f"re-derived health flags of {count} segment(s) from their stored samples")
    return EXIT_OK


def cmd_health_resample(args: argparse.Namespace, settings: Settings) -> int:
    since = _instant_arg(args.since, "--since", settings)
    services = _services(settings)
    try:
        tried, unreadable = services.health.resample(
            camera_code=args.camera, since=since, every=args.all
        )
    finally:
        services.close()
    print(f"re-sampled {tried - unreadable} of {tried} segment(s)")
    if unreadable:
        print(
            f"examvault: the footage of {unreadable} segment(s) could not be read; "
            "they stay flagged check_failed and are retried automatically",
            file=sys.stderr,
        )
        return EXIT_FAILED
    return EXIT_OK


_EARLIEST_INSTANT = datetime(1970, 1, 1, tzinfo=UTC)
_LATEST_INSTANT = datetime(9000, 1, 1, tzinfo=UTC)


def _instant_arg(value: str | None, name: str, settings: Settings) -> datetime | None:
    """RFC 3339, or a bare date or naive time read in the configured zone."""
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError as exc:
        raise CommandError(f"{name} {value!r} is not a date or RFC 3339 instant") from exc
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=settings.zone)
    try:
        moment = moment.astimezone(UTC)
    except OverflowError:
        moment = None
    # As the API bounds its instants: near year 9999 the first day added to one overflows.
    if moment is None or not _EARLIEST_INSTANT <= moment <= _LATEST_INSTANT:
        raise CommandError(f"{name} {value!r} is outside 1970..9000")
    return moment


def cmd_hold_add(args: argparse.Namespace, settings: Settings) -> int:
    from services.retention.holds import HoldError, HoldRequest, place_hold

    request = HoldRequest(
        reason=args.reason,
        case_reference=args.case,
        sitting_code=args.sitting,
        camera_code=args.camera,
        held_from=_instant_arg(args.start, "--from", settings),
        held_until=_instant_arg(args.until, "--to", settings),
        segment_id=args.segment,
    )
    services = _services(settings)
    try:
        hold = services.db.run_write(
            lambda session: place_hold(
                session, services.store, settings, request, actor=f"cli:{args.actor}"
            )
        )
    except HoldError as exc:
        raise CommandError(str(exc)) from exc
    finally:
        services.close()
    print(f"hold {hold.id} placed ({hold.scope})")
    return EXIT_OK


def cmd_hold_release(args: argparse.Namespace, settings: Settings) -> int:
    from services.retention.holds import HoldError, release_hold

    services = _services(settings)
    try:
        hold = services.db.run_write(
            lambda session: release_hold(
                session,
                services.store,
                settings,
                args.hold_id,
                actor=f"cli:{args.actor}",
                reason=args.reason,
            )
        )
    except HoldError as exc:
        raise CommandError(str(exc)) from exc
    finally:
        services.close()
    print(f"hold {hold.id} released")
    return EXIT_OK


def cmd_hold_list(args: argparse.Namespace, settings: Settings) -> int:
    from sqlalchemy import select

    from services.timefmt import rfc3339_or_none
    from storage.models import Hold

    services = _services(settings)
    try:
        with services.db.read() as session:
            query = select(Hold).order_by(Hold.id)
            if not args.all:
                query = query.where(Hold.released_at.is_(None))
            holds = session.scalars(query).all()
    finally:
        services.close()
    zone = settings.zone
    rows = [
        {
            "id": hold.id,
            "scope": hold.scope,
            "sitting_id": hold.sitting_id,
            "camera_id": hold.camera_id,
            "segment_id": hold.segment_id,
            "from": rfc3339_or_none(hold.held_from, zone),
            "until": rfc3339_or_none(hold.held_until, zone),
            "reason": hold.reason,
            "case_reference": hold.case_reference,
            "placed_by": hold.placed_by,
            "placed_at": rfc3339_or_none(hold.placed_at, zone),
            "released_by": hold.released_by,
            "released_at": rfc3339_or_none(hold.released_at, zone),
        }
        for hold in holds
    ]
    if args.json:
        print(json.dumps(rows, ensure_ascii=False, indent=2))
    else:
        for row in rows:
            state = f"released {row['released_at']}" if row["released_at"] else "active"
            print(f"{row['id']:>5}  {row['scope']:<8} {state:<40} {row['reason']}")
        if not rows:
            print("no holds" if args.all else "no active holds")
    return EXIT_OK


def cmd_retention_purge(args: argparse.Namespace, settings: Settings) -> int:
    from services.retention.purge import COMPLETED, describe_result, execute_purge, plan_purge

    if args.as_of and args.execute:
        raise CommandError(
            "--as-of plans for another date and cannot be combined with "
            "--execute, which deletes only what has expired by now"
        )
    as_of = _instant_arg(args.as_of, "--as-of", settings) or datetime.now(UTC)
    services = _services(settings)
    try:
        if not args.execute:
            with services.db.read() as session:
                plan = plan_purge(session, settings, as_of)
            if args.json:
                print(json.dumps(plan.as_json(settings.zone), ensure_ascii=False, indent=2))
            else:
                print(_describe_plan(plan, settings))
            return EXIT_OK
        bar = _ProgressBar() if sys.stderr.isatty() else None
        # Ctrl-C or a TERM stops the run between two blobs, closed and summed up truthfully.
        stop = threading.Event()
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, lambda *_: stop.set())
        result = execute_purge(
            services.db,
            services.store,
            settings,
            actor="cli:retention-purge",
            progress=bar,
            stop=stop,
        )
        if bar is not None:
            bar.close()
    finally:
        services.close()
    summary = {
        "run": result.run_id,
        "status": result.status,
        "stop_reason": result.stop_reason,
        "planned": result.planned,
        "purged": result.purged,
        "bytes": result.bytes,
        "skipped": result.skipped,
        "finished_from_earlier_runs": result.finished_leftovers,
        "finished_bytes": result.finished_bytes,
        "blobs_left_for_next_run": result.blobs_left,
        "remaining": result.remaining,
        "closed_runs": result.closed_runs,
    }
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(describe_result(result))
    if result.status != COMPLETED:
        print(f"examvault: {result.stop_reason}", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


def _describe_plan(plan: PurgePlan, settings: Settings) -> str:
    data = plan.as_json(settings.zone)
    lines = [
        f"清理计划 purge plan as of {data['as_of']} (dry run: nothing is deleted; "
        "--execute deletes what has expired by now)",
        f"  rule: {data['rule']} ({settings.retention_years} years here)",
        f"  segments past expiry and not held: {data['segments']} ({data['bytes']} bytes)",
        f"  oldest expiry: {data['oldest_expiry'] or '-'}   newest expiry: "
        f"{data['newest_expiry'] or '-'}",
        f"  kept because of holds (保全): {data['skipped_held']}",
    ]
    for held in data["held"][:20]:
        lines.append(f"    segment {held['segment']} held by hold(s) {held['holds']}")
    for item in data["items"][:20]:
        lines.append(
            f"    segment {item['segment']}  expired {item['expires_at']}  "
            f"{item['size']} bytes  {item['key']}"
        )
    if len(data["items"]) > 20:
        lines.append(f"    ... and {len(data['items']) - 20} more (--json lists all)")
    return "\n".join(lines)


class _ProgressBar:
    def __init__(self) -> None:
        self.width = 40

    def __call__(self, done: int, total: int) -> None:
        filled = self.width * done // max(total, 1)
        sys.stderr.write(f"\r[{'#' * filled}{'.' * (self.width - filled)}] {done}/{total}")
        sys.stderr.flush()

    def close(self) -> None:
        sys.stderr.write("\n")


def cmd_retention_reconcile(args: argparse.Namespace, settings: Settings) -> int:
    from services.retention.purge import reconcile

    services = _services(settings)
    try:
        report = reconcile(services.db, services.store)
    finally:
        services.close()
    if args.json:
        print(json.dumps(report.as_json(), indent=2))
    else:
        print(f"blobs without rows: {len(report.blobs_without_rows)}")
        print(f"tombstoned segments whose blob still exists: {len(report.tombstoned_blob_present)}")
        print(f"segments past expiry whose blob is missing: {len(report.missing_after_expiry)}")
        print(
            f"segments UNDER RETENTION whose blob is MISSING: {len(report.missing_before_expiry)}"
        )
    if report.evidence_lost:
        print(
            f"EVIDENCE LOST: segment(s) {report.missing_before_expiry} are missing their "
            "bytes before expiry",
            file=sys.stderr,
        )
        return EXIT_FAILED
    return EXIT_OK


def cmd_quarantine_list(args: argparse.Namespace, settings: Settings) -> int:
    from sqlalchemy import select

    from services.timefmt import rfc3339_or_none
    from storage.models import QuarantineRecord

    services = _services(settings)
    try:
        with services.db.read() as session:
            records = session.scalars(
                select(QuarantineRecord).order_by(QuarantineRecord.id.desc()).limit(args.limit)
            ).all()
            used = services.quarantine.used_bytes(session)
    finally:
        services.close()
    zone = settings.zone
    rows = [
        {
            "id": record.id,
            "received_at": rfc3339_or_none(record.received_at, zone),
            "camera": record.camera_code,
            "code": record.reason_code,
            "original_name": record.original_name,
            "sha256": record.sha256,
            "size": record.size_bytes,
            "kept_bytes": record.kept_bytes,
            "bytes_removed_at": rfc3339_or_none(record.bytes_removed_at, zone),
            "bytes_removed_reason": record.bytes_removed_reason,
            "path": record.stored_path,
        }
        for record in records
    ]
    if args.json:
        print(
            json.dumps(
                {
                    "used_bytes": used,
                    "budget_bytes": settings.quarantine_budget_bytes,
                    "records": rows,
                },
                ensure_ascii=False,
                indent=2,
            )
        )
        return EXIT_OK
    for row in rows:
        kept = f"{row['kept_bytes']}/{row['size']} B"
        gone = f" (bytes removed: {row['bytes_removed_reason']})" if row["bytes_removed_at"] else ""
        print(
            f"{row['id']:>6}  {row['received_at']}  {row['code']:<18} {kept:<24} "
            f"{row['camera'] or '-'} {row['original_name']}{gone}"
        )
    print(f"quarantine holds {used} of its {settings.quarantine_budget_bytes}-byte budget")
    return EXIT_OK


def cmd_quarantine_prune(args: argparse.Namespace, settings: Settings) -> int:
    services = _services(settings)
    try:
        if args.execute:
            pruned = services.quarantine.prune(actor="cli")
            rows = [
                {"id": item.record_id, "path": item.path, "bytes": item.freed_bytes}
                for item in pruned
            ]
        else:
            with services.db.read() as session:
                due = services.quarantine.due_for_pruning(session, datetime.now(UTC))
                rows = [
                    {"id": row.id, "path": row.stored_path, "bytes": row.kept_bytes} for row in due
                ]
    finally:
        services.close()
    total = sum(row["bytes"] for row in rows)
    if args.json:
        print(json.dumps({"executed": args.execute, "files": rows, "bytes": total}, indent=2))
        return EXIT_OK
    verb = "removed" if args.execute else "would remove"
    for row in rows:
        print(f"{row['id']:>6}  {row['bytes']:>12} B  {row['path']}")
    print(
        f"{verb} the bytes of {len(rows)} quarantined files ({total} bytes) older than "
        f"{settings.quarantine_retention_days:g} days; their records stay"
        + ("" if args.execute else " (dry run: --execute to remove)")
    )
    return EXIT_OK


def cmd_user_create(args: argparse.Namespace, settings: Settings) -> int:
    import getpass

    from services.access.people import PeopleError, create_user

    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = getpass.getpass(f"password for {args.name}: ")
    services = _services(settings)
    try:
        user = services.db.run_write(
            lambda session: create_user(
                session,
                name=args.name,
                role=args.role,
                password=password,
                district=args.district,
                institution_code=args.institution,
                actor="cli:user-create",
            )
        )
    except PeopleError as exc:
        raise CommandError(str(exc)) from exc
    finally:
        services.close()
    print(f"user {user.name} created (role {user.role})")
    return EXIT_OK


def cmd_user_reset_password(args: argparse.Namespace, settings: Settings) -> int:
    import secrets

    from services.access.people import PeopleError, reset_password

    # Without --password-stdin a random one is made and printed once (a forgotten demo
    # password is the usual reason to be here, and a prompt would not fit a script).
    generated = not args.password_stdin
    password = secrets.token_urlsafe(12) if generated else sys.stdin.readline().rstrip("\n")
    services = _services(settings)
    try:
        user = services.db.run_write(
            lambda session: reset_password(
                session, args.name, password, actor="cli:user-reset-password"
            )
        )
    except PeopleError as exc:
        raise CommandError(str(exc)) from exc
    finally:
        services.close()
    print(f"password of {user.name} reset; their sessions have ended")
    if generated:
        print(f"new password (shown once): {password}")
    return EXIT_OK


def cmd_assign(args: argparse.Namespace, settings: Settings) -> int:
    from datetime import timedelta

    from services.access.people import PeopleError, assign

    valid_from = _instant_arg(args.start, "--from", settings) or datetime.now(UTC)
    valid_until = _instant_arg(args.until, "--until", settings) or valid_from + timedelta(days=30)
    services = _services(settings)
    try:
        made = services.db.run_write(
            lambda session: assign(
                session,
                user_name=args.name,
                sitting_code=args.sitting,
                institution_code=args.institution,
                covers_from=_instant_arg(args.covering_from, "--covering-from", settings),
                covers_until=_instant_arg(args.covering_until, "--covering-until", settings),
                valid_from=valid_from,
                valid_until=valid_until,
                actor="cli:assign",
            )
        )
    except PeopleError as exc:
        raise CommandError(str(exc)) from exc
    finally:
        services.close()
    zone = settings.zone
    print(
        f"assignment {made.id}: {args.name} may review "
        f"{args.sitting or args.institution} from {valid_from.astimezone(zone).isoformat()} "
        f"until {valid_until.astimezone(zone).isoformat()}"
    )
    return EXIT_OK


def cmd_token_create(args: argparse.Namespace, settings: Settings) -> int:
    from services.access.tokens import TokenError, create_token

    cameras = [code.strip() for code in (args.cameras or "").split(",") if code.strip()]
    expires_at = _instant_arg(args.expires, "--expires", settings)
    services = _services(settings)
    try:
        row, plaintext = services.db.run_write(
            lambda session: create_token(
                session,
                role=args.role,
                name=args.name or args.role,
                cameras=cameras,
                expires_at=expires_at,
                actor="cli:token-create",
            )
        )
    except TokenError as exc:
        raise CommandError(str(exc)) from exc
    finally:
        services.close()
    print(
        f"token {row.id} for {row.name} (role {row.role}"
        + (f", cameras {', '.join(row.cameras)}" if row.cameras else "")
        + (
            f", expires {row.expires_at.astimezone(settings.zone).isoformat()}"
            if row.expires_at
            else ""
        )
        + "); it is shown only once:"
    )
    print(plaintext)
    return EXIT_OK


def cmd_token_revoke(args: argparse.Namespace, settings: Settings) -> int:
    from services.access.tokens import TokenError, revoke_token

    services = _services(settings)
    try:
        row = services.db.run_write(
            lambda session: revoke_token(
                session, args.id, actor="cli:token-revoke", reason=args.reason
            )
        )
    except TokenError as exc:
        raise CommandError(str(exc)) from exc
    finally:
        services.close()
    print(f"token {row.id} ({row.name}, role {row.role}) revoked; its footage links end with it")
    return EXIT_OK


def cmd_user_disable(args: argparse.Namespace, settings: Settings) -> int:
    from services.access.people import PeopleError, disable_user

    services = _services(settings)
    try:
        user = services.db.run_write(
            lambda session: disable_user(
                session, args.name, actor="cli:user-disable", reason=args.reason
            )
        )
    except PeopleError as exc:
        raise CommandError(str(exc)) from exc
    finally:
        services.close()
    print(f"user {user.name} disabled; every session they held has ended")
    return EXIT_OK


def cmd_ledger_verify(_args: argparse.Namespace, settings: Settings) -> int:
    from services.ledger.checkpoints import verify_stored_checkpoints
    from services.ledger.keys import load_signer
    from services.ledger.status import record_full_check
    from services.witness.cosignatures import parse_witnesses
    from services.witness.cosigning import verify_stored_cosignatures
    from storage import ledger

    # Read only: verify never creates a key; without one, stored checkpoints cannot verify.
    try:
        signer = load_signer(settings.data_dir)
    except ValueError as exc:
        raise CommandError(f"the ledger signing key is unreadable: {exc}", EXIT_FAILED) from exc
    services = _services(settings)
    started = datetime.now(UTC)
    try:
        with services.db.read() as session:
            verdict = ledger.verify(session)
            # Checked whatever the chain says: a chain rewritten consistently from some entry
            # on passes the chain check, and only checkpoints signed before the rewrite see it.
            checkpoints = verify_stored_checkpoints(
                session, services.store, signer.public_key if signer else None
            )
            # The stored tree is what checkpoints and proofs are now read from: every node is
            # recomputed from the entries, so a node changed behind the triggers is named.
            nodes = ledger.verify_stored_tree(session)
            # The witnesses' word is only worth keeping if it still checks: each kept
            # cosignature against its stored checkpoint and the configured witness's key.
            cosignatures = verify_stored_cosignatures(
                session, services.store, parse_witnesses(settings.witnesses)
            )
        problems = [
            f"entry {verdict.mismatch.seq}: {verdict.mismatch.reason}" if verdict.mismatch else "",
            f"{checkpoints.mismatch.key}: {checkpoints.mismatch.reason}"
            if checkpoints.mismatch
            else "",
            f"{nodes.mismatch.name}: {nodes.mismatch.reason}" if nodes.mismatch else "",
            f"cosignature: {cosignatures.mismatch}" if cosignatures.mismatch is not None else "",
        ]
        # Kept for the centre's ledger page, which never runs this linear check itself.
        services.db.run_write(
            lambda session: record_full_check(
                session,
                actor="cli:ledger-verify",
                started_at=started,
                entries=verdict.entries,
                problem="; ".join(p for p in problems if p) or None,
            )
        )
    finally:
        services.close()
    if verdict.mismatch is not None:
        print(
            f"ledger does not verify: entry {verdict.mismatch.seq}: {verdict.mismatch.reason}",
            file=sys.stderr,
        )
    if checkpoints.mismatch is not None:
        print(
            f"ledger checkpoint does not verify: {checkpoints.mismatch.key}: "
            f"{checkpoints.mismatch.reason}",
            file=sys.stderr,
        )
    if nodes.mismatch is not None:
        print(
            f"ledger tree does not verify: {nodes.mismatch.name}: {nodes.mismatch.reason}",
            file=sys.stderr,
        )
    if cosignatures.mismatch is not None:
        print(f"ledger cosignature does not verify: {cosignatures.mismatch}", file=sys.stderr)
    if not (verdict.ok and checkpoints.ok and nodes.ok and cosignatures.ok):
        return EXIT_FAILED
    unknown = (
        f" ({cosignatures.unknown_witness} by witnesses not in EXAMVAULT_WITNESSES, not checked)"
        if cosignatures.unknown_witness
        else ""
    )
    print(
        f"ledger verifies: {verdict.entries} entries, head {verdict.head_hash}; "
        f"{checkpoints.checked} stored checkpoint(s) match, "
        f"{checkpoints.recorded} of them recorded in the database; "
        f"{nodes.nodes} stored tree nodes match; "
        f"{cosignatures.verified} witness cosignature(s) verify{unknown}"
    )
    return EXIT_OK


@contextmanager
def _tree_progress() -> Iterator[Callable[[int, int], None]]:
    """A progress bar on stderr for building the ledger's stored tree."""
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    columns = (
        TextColumn("ledger tree"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=Console(stderr=True)) as progress:
        task = progress.add_task("ledger tree", total=None)
        yield lambda done, total: progress.update(task, completed=done, total=total)


def cmd_ledger_build_tree(args: argparse.Namespace, settings: Settings) -> int:
    from storage import tree

    if args.batch < 1:
        raise CommandError("--batch must be at least 1")
    services = _services(settings, migrate=False)
    try:
        with _tree_progress() as progress:
            services.db.upgrade(progress=progress, tree_batch=args.batch)
        with services.db.read() as session:
            size = tree.stored_size(session)
    finally:
        services.close()
    print(f"the ledger's stored tree holds {size} entries")
    return EXIT_OK


def cmd_ledger_key(args: argparse.Namespace, settings: Settings) -> int:
    from services.ledger.keys import load_signer

    # Read only, like verify: publishing a key must never make a new one.
    try:
        signer = load_signer(settings.data_dir)
    except ValueError as exc:
        raise CommandError(f"the ledger signing key is unreadable: {exc}", EXIT_FAILED) from exc
    if signer is None:
        raise CommandError(
            f"no ledger signing key in {settings.data_dir} yet; `examvault serve` makes it on "
            "first use (the first checkpoint, export or GET /api/v1/ledger/key)",
            EXIT_FAILED,
        )
    if args.json:
        print(
            json.dumps(
                {
                    "algorithm": "Ed25519",
                    "fingerprint": signer.fingerprint,
                    "key_id": signer.key_id,
                    "public_key_pem": signer.public_key_pem,
                },
                indent=2,
            )
        )
        return EXIT_OK
    # The PEM comes last, so the whole output saved to a file is what `verify-export --key` reads.
    print(f"fingerprint (SHA-256 of the raw Ed25519 key): {signer.fingerprint}")
    print(f"key_id (the fingerprint's first 16 digits, as checkpoints name it): {signer.key_id}")
    print(signer.public_key_pem, end="")
    return EXIT_OK


def _witness_data_dir(args: argparse.Namespace) -> Path:
    if args.data_dir is None:
        raise CommandError("--data-dir is required: the witness's own key and state live there")
    return Path(args.data_dir)


def cmd_witness_serve(args: argparse.Namespace, _settings: Settings | None) -> int:
    import uvicorn
    from cryptography.exceptions import UnsupportedAlgorithm

    from services.ledger.keys import public_key_from_pem
    from services.witness.cosignatures import witness_key_text
    from services.witness.server import (
        Witness,
        create_witness_app,
        load_or_create_witness_signer,
        log_keys_by_id,
    )
    from services.witness.state import WitnessState, WitnessStateCorrupt

    data_dir = _witness_data_dir(args)
    log_keys = []
    for path in args.log_key:
        try:
            log_keys.append(public_key_from_pem(Path(path).read_bytes()))
        except OSError as exc:
            raise CommandError(f"{path}: {exc.strerror or exc}") from exc
        except (ValueError, UnsupportedAlgorithm) as exc:
            raise CommandError(f"{path}: not an Ed25519 public key in PEM ({exc})") from exc
    signer = load_or_create_witness_signer(data_dir)
    state = WitnessState(data_dir)
    try:
        state.latest()
    except WitnessStateCorrupt as exc:
        raise CommandError(str(exc), EXIT_FAILED) from exc
    witness = Witness(signer, state, log_keys_by_id(log_keys))
    logger.info(
        "witness %s (key %s) on http://%s:%d for log keys %s",
        signer.key_id,
        witness_key_text(signer.public_key),
        args.host,
        args.port,
        ", ".join(sorted(witness.log_keys)),
    )
    uvicorn.run(create_witness_app(witness), host=args.host, port=args.port, log_level="warning")
    return EXIT_OK


def cmd_witness_key(args: argparse.Namespace, _settings: Settings | None) -> int:
    from services.witness.cosignatures import witness_key_text
    from services.witness.server import load_or_create_witness_signer

    signer = load_or_create_witness_signer(_witness_data_dir(args))
    # One line: what the centre puts after the URL in EXAMVAULT_WITNESSES and a verifier
    # passes to `verify-export --witness-key`.
    print(witness_key_text(signer.public_key))
    return EXIT_OK


def _trusted_key(args: argparse.Namespace) -> TrustedKey | None:
    from cryptography.exceptions import UnsupportedAlgorithm

    from services.evidence.package import TrustedKey
    from services.ledger.keys import public_key_from_pem

    if args.key_fingerprint is not None:
        try:
            return TrustedKey.from_fingerprint(args.key_fingerprint)
        except ValueError as exc:
            raise CommandError(f"--key-fingerprint: {exc}") from exc
    if args.key is None:
        return None
    try:
        return TrustedKey.of(public_key_from_pem(Path(args.key).read_bytes()))
    except OSError as exc:
        raise CommandError(f"{args.key}: {exc.strerror or exc}") from exc
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise CommandError(f"{args.key}: not an Ed25519 public key in PEM ({exc})") from exc


def _witness_quorum(args: argparse.Namespace) -> WitnessQuorum | None:
    from services.evidence.package import WitnessQuorum
    from services.witness.cosignatures import witness_key_from_text

    if not args.witness_key:
        if args.witnesses_required is not None:
            raise CommandError("--witnesses-required needs at least one --witness-key")
        return None
    try:
        keys = tuple(witness_key_from_text(text) for text in args.witness_key)
        required = len(keys) if args.witnesses_required is None else args.witnesses_required
        return WitnessQuorum(keys, required)
    except ValueError as exc:
        raise CommandError(f"--witness-key: {exc}") from exc


def cmd_verify_export(args: argparse.Namespace, _settings: Settings | None) -> int:
    from services.evidence.package import (
        INTACT_ORIGIN_NOT_VERIFIED,
        VERIFIED,
        PackageUnreadable,
        verify_package,
    )

    trusted = _trusted_key(args)
    witnesses = _witness_quorum(args)
    try:
        verdict = verify_package(Path(args.file), trusted, witnesses)
    except PackageUnreadable as exc:
        raise CommandError(str(exc)) from exc
    exit_code = {VERIFIED: EXIT_OK, INTACT_ORIGIN_NOT_VERIFIED: EXIT_ORIGIN_NOT_VERIFIED}.get(
        verdict.outcome, EXIT_FAILED
    )
    if args.json:
        print(json.dumps(verdict.as_json(), ensure_ascii=False, indent=2))
        return exit_code
    for check in verdict.checks:
        print(check.line())
    # Always shown, so a person can compare it with the fingerprint the centre publishes.
    print(
        f"KEY  the package claims key fingerprint {verdict.key_fingerprint}"
        if verdict.key_fingerprint
        else "KEY  the package carries no usable public key"
    )
    total = len(verdict.checks)
    if verdict.outcome == VERIFIED:
        print(f"export verified: all {total} checks hold, signed with the trusted key")
    elif verdict.outcome == INTACT_ORIGIN_NOT_VERIFIED:
        print(
            f"export intact, origin not verified: all {total} checks hold, but anyone can sign "
            "a package with a key of their own; compare the fingerprint above with the "
            "centre's (`examvault ledger key`), or pass --key PEM_FILE or --key-fingerprint HEX"
        )
    else:
        print(f"export DOES NOT verify: {len(verdict.failed)} of {total} checks failed")
    return exit_code


def _push_token(args: argparse.Namespace, config: dict[str, object]) -> str:
    """The bearer token: --token-file, --token (visible in `ps`, so only for a quick manual
    push), EXAMVAULT_PUSH_TOKEN, then the config's `token_file` or `token`."""
    import os

    from services.ingest.pushd import read_token_file

    if args.token_file:
        return read_token_file(Path(args.token_file))
    if args.token:
        return str(args.token)
    if os.environ.get("EXAMVAULT_PUSH_TOKEN", "").strip():
        return os.environ["EXAMVAULT_PUSH_TOKEN"].strip()
    if isinstance(config.get("token_file"), Path):
        return read_token_file(config["token_file"])  # type: ignore[arg-type]
    if isinstance(config.get("token"), str) and config["token"]:
        return str(config["token"])
    raise CommandError(
        "no token: give --token-file FILE, set EXAMVAULT_PUSH_TOKEN, or put token_file in the "
        "config file"
    )


def cmd_push(args: argparse.Namespace, _settings: Settings | None) -> int:
    from services.ingest.pushd import ConfigError

    # main() lets SIGPIPE end the process quietly (for `| head`); for push, a server that dies
    # mid-upload would then kill the client silently on its next write, without a line or a
    # retry. Ignored, the write raises BrokenPipeError, which is an ordinary network failure.
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    try:
        if args.watch or args.config:
            if args.files:
                raise CommandError("give files to push once, or --watch/--config, not both")
            return _push_daemon(args)
        return _push_once(args)
    except ConfigError as exc:
        raise CommandError(str(exc)) from exc


def _push_once(args: argparse.Namespace) -> int:
    from services.ingest.push import PushError, push_file

    if not args.files:
        raise CommandError("nothing to push: name the files, or give --watch DIR or --config")
    if not args.server or not args.camera:
        raise CommandError("push FILE... needs --server and --camera")
    token = _push_token(args, {})

    def before_sleep(error: PushError, pause: float) -> None:
        print(f"{name}: {error}; trying again in {pause:.1f} s", file=sys.stderr)

    failures = 0
    for name in args.files:
        try:
            answer = push_file(
                Path(name),
                server=args.server,
                token=token,
                camera=args.camera,
                start=args.start,
                remove_when_confirmed=args.remove,
                timeout=args.timeout or 300.0,
                retries=args.retries,
                before_sleep=before_sleep,
            )
        except PushError as exc:
            # One line per file, and the rest of the batch is still tried.
            print(f"{name}: {exc}", file=sys.stderr)
            failures += 1
            continue
        print(json.dumps({"file": name, **answer}, ensure_ascii=False), flush=True)
    return EXIT_FAILED if failures else EXIT_OK


def _push_daemon(args: argparse.Namespace) -> int:
    from services.ingest.pushd import (
        REPORT_SECONDS,
        CameraFolder,
        DaemonConfig,
        PushDaemon,
        read_config_file,
        validate,
    )

    config: dict[str, object] = read_config_file(Path(args.config)) if args.config else {}
    folders: list[CameraFolder] = list(config.get("folders", []))  # type: ignore[call-overload]
    if args.watch:
        if args.camera and len(args.watch) > 1:
            raise CommandError("--camera names the camera of one --watch folder, not several")
        folders += [CameraFolder(Path(folder), args.camera) for folder in args.watch]
    server = args.server or config.get("server")
    if not isinstance(server, str) or not server:
        raise CommandError("no server: give --server URL or `server` in the config file")
    if not folders:
        raise CommandError("nothing to watch: give --watch DIR or [[camera]] entries")

    def setting(name: str, key: str, default: object) -> object:
        given = getattr(args, name)
        return given if given is not None else config.get(key, default)

    def number(name: str, key: str, default: float | None) -> float | None:
        value = setting(name, key, default)
        if value is None:
            return None
        if not isinstance(value, int | float | str):
            raise CommandError(f"{key} must be a number")
        try:
            return float(value)
        except ValueError as exc:
            raise CommandError(f"{key} must be a number, not {value!r}") from exc

    state = setting("state", "state", folders[0].path / ".examvault-push" / "state.sqlite3")
    status = setting("status_file", "status_file", None)
    max_backoff = number("max_backoff", "max_backoff_seconds", 300.0) or 300.0
    daemon_config = DaemonConfig(
        server=server,
        token=_push_token(args, config),
        folders=folders,
        state_path=Path(str(state)),
        status_path=Path(str(status)) if status else None,
        after_send=str(setting("after_send", "after_send", "delete")),  # type: ignore[arg-type]
        settle_seconds=number("settle_seconds", "settle_seconds", 10.0) or 0.0,
        scan_seconds=number("scan_seconds", "scan_seconds", 5.0) or 5.0,
        timeout_seconds=number("timeout", "timeout_seconds", 300.0) or 300.0,
        initial_backoff_seconds=min(1.0, max_backoff),
        max_backoff_seconds=max_backoff,
        bytes_per_second=number("max_bytes_per_second", "max_bytes_per_second", None),
        min_free_bytes=int(number("min_free_bytes", "min_free_bytes", 2 * 1024**3) or 0),
        # The config file only: how often the centre hears the backlog (0: never).
        report_seconds=float(config.get("report_seconds", REPORT_SECONDS)),  # type: ignore[arg-type]
        once=args.once,
    )
    validate(daemon_config)
    stop = threading.Event()

    def request_stop(signum: int, _frame: object) -> None:
        logger.info("signal %d: stopping after the current step", signum)
        stop.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    # A bar for a technician at a terminal; plain log lines under systemd or in a pipe.
    if sys.stderr.isatty():
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TextColumn,
            TransferSpeedColumn,
        )

        with Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            transient=True,
        ) as progress:
            from rich.logging import RichHandler

            # Log lines printed above the bar rather than through it.
            root = logging.getLogger()
            for handler in list(root.handlers):
                root.removeHandler(handler)
            root.addHandler(RichHandler(console=progress.console, show_path=False))
            return PushDaemon(daemon_config, stop=stop, progress=progress).run()
    return PushDaemon(daemon_config, stop=stop).run()


def _positive_int(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        number = 0
    if number < 1:
        raise argparse.ArgumentTypeError(f"{value!r} is not a whole number of at least 1")
    return number


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="examvault", description="考场录像证据服务")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="API, web page and ingest watcher in one process")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument(
        "--demo",
        action="store_true",
        help="seed demo data into an empty database (make run); never on a real deployment",
    )
    serve.set_defaults(handler=cmd_serve)

    worker = commands.add_parser(
        "worker",
        help="take jobs from the PostgreSQL queue (ingest, health, periodic), or, on SQLite, "
        "ingest the spool",
    )
    worker.add_argument(
        "--queues", help="comma-separated: ingest,health,periodic (default: all three)"
    )
    worker.add_argument(
        "--concurrency",
        type=_positive_int,
        help="jobs run at once (default EXAMVAULT_QUEUE_CONCURRENCY, 2)",
    )
    worker.add_argument(
        "--metrics-port",
        type=_positive_int,
        help="serve this worker's job counters at http://127.0.0.1:PORT/metrics",
    )
    worker.set_defaults(handler=cmd_worker)

    db = commands.add_parser("db", help="database schema").add_subparsers(
        dest="db_command", required=True, metavar="ACTION"
    )
    db.add_parser("upgrade", help="apply migrations").set_defaults(handler=cmd_db_upgrade)

    storage = commands.add_parser("storage", help="the evidence store").add_subparsers(
        dest="storage_command", required=True, metavar="ACTION"
    )
    storage.add_parser(
        "init", help="create the S3 bucket with Object Lock (once, at setup); idempotent"
    ).set_defaults(handler=cmd_storage_init)

    registry = commands.add_parser("registry", help="institutions, sites, rooms, cameras")
    registry_actions = registry.add_subparsers(
        dest="registry_command", required=True, metavar="ACTION"
    )
    registry_import = registry_actions.add_parser("import", help="import the registry JSON")
    registry_import.add_argument("file")
    registry_import.set_defaults(handler=cmd_registry_import)

    sittings = commands.add_parser("sittings", help="the schedule (场次)")
    sittings_actions = sittings.add_subparsers(
        dest="sittings_command", required=True, metavar="ACTION"
    )
    sittings_import = sittings_actions.add_parser("import", help="import the schedule CSV")
    sittings_import.add_argument("file")
    sittings_import.set_defaults(handler=cmd_sittings_import)

    coverage = commands.add_parser("coverage", help="a sitting's coverage report")
    coverage.add_argument("code", help="sitting code")
    coverage.add_argument("--json", action="store_true", help="machine-readable")
    coverage.set_defaults(handler=cmd_coverage)

    health = commands.add_parser("health", help="picture health checks")
    health_actions = health.add_subparsers(dest="health_command", required=True, metavar="ACTION")
    reflag = health_actions.add_parser(
        "reflag", help="apply the current thresholds to stored samples again (no decoding)"
    )
    reflag.add_argument("--camera", help="only this camera")
    reflag.set_defaults(handler=cmd_health_reflag)
    resample = health_actions.add_parser(
        "resample",
        help="check again (decoding) segments whose check could not read the footage",
    )
    resample.add_argument("--camera", help="only this camera")
    resample.add_argument("--since", help="only footage ending after this date or instant")
    resample.add_argument(
        "--all", action="store_true", help="every matching segment, not only failed checks"
    )
    resample.set_defaults(handler=cmd_health_resample)

    hold = commands.add_parser("hold", help="legal holds (保全)")
    hold_actions = hold.add_subparsers(dest="hold_command", required=True, metavar="ACTION")
    hold_add = hold_actions.add_parser("add", help="place a hold")
    hold_add.add_argument("--sitting", help="sitting code")
    hold_add.add_argument("--camera", help="camera code (with --from and --to)")
    hold_add.add_argument("--from", dest="start", help="RFC 3339 (or local date-time)")
    hold_add.add_argument("--to", dest="until", help="RFC 3339 (or local date-time)")
    hold_add.add_argument("--segment", type=int, help="segment id")
    hold_add.add_argument("--reason", required=True)
    hold_add.add_argument("--case", help="case reference")
    hold_add.add_argument("--actor", default="admin", help="who places it (for the ledger)")
    hold_add.set_defaults(handler=cmd_hold_add)
    hold_release = hold_actions.add_parser("release", help="release a hold")
    hold_release.add_argument("hold_id", type=int)
    hold_release.add_argument("--reason", default="case closed")
    hold_release.add_argument("--actor", default="admin")
    hold_release.set_defaults(handler=cmd_hold_release)
    hold_list = hold_actions.add_parser("list", help="active holds (--all: with released)")
    hold_list.add_argument("--all", action="store_true")
    hold_list.add_argument("--json", action="store_true")
    hold_list.set_defaults(handler=cmd_hold_list)

    retention = commands.add_parser("retention", help="the three-year retention")
    retention_actions = retention.add_subparsers(
        dest="retention_command", required=True, metavar="ACTION"
    )
    purge = retention_actions.add_parser("purge", help="plan (default) or --execute the purge")
    purge.add_argument("--as-of", help="plan for this date or instant (not with --execute)")
    purge.add_argument("--execute", action="store_true", help="delete what the plan lists")
    purge.add_argument("--json", action="store_true")
    purge.set_defaults(handler=cmd_retention_purge)
    reconcile_parser = retention_actions.add_parser(
        "reconcile", help="compare the blob store with the database"
    )
    reconcile_parser.add_argument("--json", action="store_true")
    reconcile_parser.set_defaults(handler=cmd_retention_reconcile)

    quarantine = commands.add_parser("quarantine", help="rejected files and their reasons")
    quarantine_actions = quarantine.add_subparsers(
        dest="quarantine_command", required=True, metavar="ACTION"
    )
    quarantine_list = quarantine_actions.add_parser("list", help="newest records first")
    quarantine_list.add_argument("--limit", type=int, default=50)
    quarantine_list.add_argument("--json", action="store_true")
    quarantine_list.set_defaults(handler=cmd_quarantine_list)
    quarantine_prune = quarantine_actions.add_parser(
        "prune", help="plan (default) or --execute removing bytes past the quarantine retention"
    )
    quarantine_prune.add_argument("--execute", action="store_true")
    quarantine_prune.add_argument("--json", action="store_true")
    quarantine_prune.set_defaults(handler=cmd_quarantine_prune)

    user = commands.add_parser("user", help="people who log in")
    user_actions = user.add_subparsers(dest="user_command", required=True, metavar="ACTION")
    user_create = user_actions.add_parser("create", help="create a user")
    user_create.add_argument("name")
    user_create.add_argument(
        "--role", required=True, help="admin | district_officer | supervisor | institution"
    )
    user_create.add_argument("--district", help="for district officers")
    user_create.add_argument("--institution", help="institution code, for institution users")
    user_create.add_argument(
        "--password-stdin", action="store_true", help="read the password from standard input"
    )
    user_create.set_defaults(handler=cmd_user_create)
    user_reset = user_actions.add_parser(
        "reset-password", help="set a new password (printed once if generated), end sessions"
    )
    user_reset.add_argument("name")
    user_reset.add_argument(
        "--password-stdin", action="store_true", help="read the new password from standard input"
    )
    user_reset.set_defaults(handler=cmd_user_reset_password)
    user_disable = user_actions.add_parser("disable", help="lock a person out, end sessions")
    user_disable.add_argument("name")
    user_disable.add_argument("--reason", required=True)
    user_disable.set_defaults(handler=cmd_user_disable)

    assign_parser = commands.add_parser("assign", help="assign a supervisor")
    assign_parser.add_argument("name", help="supervisor's user name")
    assign_parser.add_argument("--sitting", help="sitting code")
    assign_parser.add_argument("--institution", help="institution code (with --covering-*)")
    assign_parser.add_argument("--covering-from", help="sittings starting from this date")
    assign_parser.add_argument("--covering-until", help="... and before this date")
    assign_parser.add_argument("--from", dest="start", help="access starts (default now)")
    assign_parser.add_argument("--until", help="access ends (default 30 days later)")
    assign_parser.set_defaults(handler=cmd_assign)

    token = commands.add_parser("token", help="API tokens for machines")
    token_actions = token.add_subparsers(dest="token_command", required=True, metavar="ACTION")
    token_create = token_actions.add_parser("create", help="create a token, printed once")
    token_create.add_argument("--role", required=True)
    token_create.add_argument("--cameras", help="CODE[,CODE...] for camera_host tokens")
    token_create.add_argument("--name")
    token_create.add_argument(
        "--expires", help="RFC 3339 instant, or a date in the service's zone (default: never)"
    )
    token_create.set_defaults(handler=cmd_token_create)
    token_revoke = token_actions.add_parser("revoke", help="end a token (and its links) now")
    token_revoke.add_argument("id", type=int, help="the token id printed at creation")
    token_revoke.add_argument("--reason", required=True)
    token_revoke.set_defaults(handler=cmd_token_revoke)

    ledger = commands.add_parser("ledger", help="the tamper-evident ledger")
    ledger_actions = ledger.add_subparsers(dest="ledger_command", required=True, metavar="ACTION")
    ledger_actions.add_parser(
        "verify", help="recompute the chain, the checkpoints and the stored tree"
    ).set_defaults(handler=cmd_ledger_verify)
    build_tree = ledger_actions.add_parser(
        "build-tree",
        help="add the entries the stored Merkle tree lacks (db upgrade does it too); resumable",
    )
    build_tree.add_argument(
        "--batch", type=int, default=20_000, help="entries per committed transaction"
    )
    build_tree.set_defaults(handler=cmd_ledger_build_tree)
    ledger_key = ledger_actions.add_parser(
        "key", help="the public signing key and its fingerprint, for the centre to publish"
    )
    ledger_key.add_argument("--json", action="store_true", help="machine-readable")
    ledger_key.set_defaults(handler=cmd_ledger_key)

    verify_export = commands.add_parser(
        "verify-export",
        help="check an evidence package offline (exit 0 only when verified with a trusted key)",
        epilog="exit status: 0 verified (every check holds and the package is signed with the "
        "trusted key); 1 a check failed, or it is signed with another key, or the package is "
        "cut short or damaged, or a member is over its size bound; 2 the file is no ZIP or "
        "has no manifest.json, or the key or fingerprint given is unreadable; 3 intact, origin "
        "not verified (every check holds, but no trusted key was given).",
    )
    verify_export.add_argument("file", help="the exported ZIP")
    trusted = verify_export.add_mutually_exclusive_group()
    trusted.add_argument(
        "--key",
        metavar="PEM_FILE",
        help="the centre's public key as PEM (`examvault ledger key`, or public_key_pem of "
        "GET /api/v1/ledger/key)",
    )
    trusted.add_argument(
        "--key-fingerprint",
        metavar="HEX",
        help="the centre's published key fingerprint: SHA-256 of the raw key, 64 hex digits",
    )
    verify_export.add_argument("--json", action="store_true", help="machine-readable")
    verify_export.set_defaults(handler=cmd_verify_export, offline=True)
    verify_export.add_argument(
        "--witness-key",
        action="append",
        default=[],
        metavar="KEY",
        help="a witness's public key (`examvault witness key`); repeat for each witness known",
    )
    verify_export.add_argument(
        "--witnesses-required",
        type=int,
        metavar="K",
        help="how many of the --witness-key witnesses must have cosigned (default: all)",
    )

    witness = commands.add_parser(
        "witness", help="run a witness that cosigns another centre's ledger checkpoints"
    )
    witness_actions = witness.add_subparsers(
        dest="witness_command", required=True, metavar="ACTION"
    )
    witness_serve = witness_actions.add_parser(
        "serve", help="answer POST /add-checkpoint (docs/ledger.md)"
    )
    witness_serve.add_argument("--data-dir", help="the witness's own key and state")
    witness_serve.add_argument("--host", default="127.0.0.1")
    witness_serve.add_argument("--port", type=int, default=8090)
    witness_serve.add_argument(
        "--log-key",
        action="append",
        required=True,
        metavar="PEM_FILE",
        help="a centre's public key (`examvault ledger key`) whose checkpoints it cosigns",
    )
    witness_serve.set_defaults(handler=cmd_witness_serve, offline=True)
    witness_key = witness_actions.add_parser(
        "key", help="print the witness's public key (made on first use)"
    )
    witness_key.add_argument("--data-dir", help="the witness's own key and state")
    witness_key.set_defaults(handler=cmd_witness_key, offline=True)

    push = commands.add_parser(
        "push",
        help="camera-host client: upload segment files once, or watch folders (daemon)",
        description="Upload FILE... once, or with --watch/--config run as the camera host's "
        "daemon. The token comes from --token-file, EXAMVAULT_PUSH_TOKEN or the config file "
        "(--token shows in `ps`).",
    )
    push.add_argument("--server", help="e.g. https://examvault.example.cn")
    push.add_argument("--token", help="bearer token (visible in `ps`; prefer --token-file)")
    push.add_argument("--token-file", metavar="FILE", help="file holding the bearer token")
    push.add_argument("--camera", help="camera code of the files, or of the one --watch folder")
    push.add_argument("--start", help="RFC 3339 start, when the file name does not carry it")
    push.add_argument(
        "--remove",
        action="store_true",
        help="delete each local file once the server confirmed its SHA-256",
    )
    push.add_argument("--timeout", type=float, help="seconds to wait for an answer (300)")
    push.add_argument(
        "--retries", type=int, default=2, help="retries of a transient failure, one-shot only"
    )
    daemon = push.add_argument_group("daemon")
    daemon.add_argument(
        "--watch",
        action="append",
        metavar="DIR",
        help="folder of finished segments: DIR/<camera_code>/<file>, or DIR/<file> with "
        "--camera; repeatable",
    )
    daemon.add_argument("--config", metavar="FILE", help="TOML config for several cameras")
    daemon.add_argument("--state", metavar="FILE", help="local state database (SQLite)")
    daemon.add_argument("--status-file", metavar="FILE", help="JSON status for monitoring")
    daemon.add_argument(
        "--after-send",
        choices=["delete", "move"],
        help="what to do with a confirmed file: delete it (default) or move it to sent/",
    )
    daemon.add_argument("--settle-seconds", type=float, help="unchanged this long = finished (10)")
    daemon.add_argument("--scan-seconds", type=float, help="pause between scans (5)")
    daemon.add_argument("--max-backoff", type=float, help="longest pause between retries (300)")
    daemon.add_argument(
        "--max-bytes-per-second", type=float, help="pace uploads to spare the site's uplink"
    )
    daemon.add_argument(
        "--min-free-bytes", type=int, help="warn and prune sent/ below this (2 GiB)"
    )
    daemon.add_argument(
        "--once", action="store_true", help="one pass over the finished files, then exit"
    )
    push.add_argument("files", nargs="*")
    push.set_defaults(handler=cmd_push, offline=True)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    # `examvault ... | head` should end quietly, as other command-line tools do.
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    # Migration chatter is noise at INFO on every command.
    logging.getLogger("alembic").setLevel(logging.WARNING)
    # procrastinate says every job's start and end at INFO: thousands of lines a day.
    if not args.verbose:
        logging.getLogger("procrastinate").setLevel(logging.WARNING)
    handler: Callable[[argparse.Namespace, Settings | None], int] = args.handler
    try:
        # Offline checks (a package in hand) must work on any machine, whatever its EXAMVAULT_*.
        settings = None if getattr(args, "offline", False) else load_settings()
        if settings is not None and settings.fault_point:
            from storage.faults import arm

            arm(settings.fault_point)
        return handler(args, settings)
    except SettingsError as exc:
        print(f"examvault: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except CommandError as exc:
        print(f"examvault: {exc}", file=sys.stderr)
        return exc.exit_code
    except BlobStoreError as exc:
        # A missing bucket, a bucket without Object Lock, an unreachable store: one sentence.
        print(f"examvault: {exc}", file=sys.stderr)
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
