"""Evidence exports (证据导出): a sitting's footage, manifest and ledger proofs as one signed ZIP.

`prepare_export` does everything that can fail cleanly before a byte is sent: access, the
rows, a stat of every blob, the `export.created` ledger entry, a fresh signed checkpoint and
the proofs, the manifest and its signature. `stream_export` then writes the ZIP as it reads
the blobs, in chunks, with no temporary copy; a segment whose bytes no longer hash to what the
manifest claims aborts the stream before that member is complete (docs/exports.md).
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import threading
import time
import uuid
import zipfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from services.access.scopes import Subject, may_watch_footage, visible_sitting
from services.coverage.reports import coverage_report
from services.coverage.spans import required_interval
from services.evidence.package import (
    CHECKPOINT,
    COSIGNATURES,
    ENTRIES,
    EXPORT_ACTION,
    FORMAT,
    FORMAT_VERSION,
    INGEST_ACTION,
    MANIFEST,
    PROOFS,
    PUBLIC_KEY,
    SEGMENTS_DIR,
    SIGNATURE,
    entry_line,
)
from services.ledger.checkpoints import (
    Checkpoint,
    LedgerBroken,
    inclusion_proofs_in,
    make_checkpoint,
)
from services.ledger.keys import CheckpointSigner
from services.liveness import owner_is_gone, process_owner
from services.settings import Settings
from services.timefmt import rfc3339, rfc3339_or_none
from services.witness.cosignatures import COSIGNATURE_HEADER, parse_witnesses
from services.witness.cosigning import cosign_now
from storage import ledger
from storage.blobs import BlobStore, BlobStoreError
from storage.db import Database
from storage.ledger import format_instant
from storage.models import (
    Camera,
    ExportStream,
    Finding,
    Institution,
    LedgerEntry,
    Room,
    Segment,
    Site,
    Sitting,
    Tombstone,
)

logger = logging.getLogger(__name__)

MAX_REASON_LENGTH = 500
DELIVERED_ACTION = "export.delivered"
INTERRUPTED_ACTION = "export.interrupted"
# How often a stream records its progress (bytes handed to the server) while it runs, and how
# long an export of another host may go without that before a start-up takes it for dead.
PROGRESS_SECONDS = 10.0
STALE_STREAM = timedelta(minutes=10)
# Bound on one SQL IN list; a sitting has at most a few hundred segments.
_IN_BATCH = 500
_UNSAFE_NAME = re.compile(r"[^A-Za-z0-9._+-]+")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


class ExportError(Exception):
    """An export that cannot be made; the message says why, in one sentence."""


class InvalidReason(ExportError):
    pass


class SittingNotVisible(ExportError):
    """No such sitting, or one the caller may not know of (answered alike)."""


class FootageNotAllowed(ExportError):
    pass


class EvidenceMissing(ExportError):
    """A non-purged segment's blob is gone or has another size: found before streaming."""


class StoreUnavailable(ExportError):
    """The blob store did not answer; nothing was streamed."""


class ExportAborted(ExportError):
    """The stream was cut: a segment's bytes did not match its recorded hash, or vanished."""


def check_reason(reason: str) -> str:
    cleaned = reason.strip()
    if not cleaned:
        raise InvalidReason("an export needs a reason (why the footage leaves the vault)")
    if len(cleaned) > MAX_REASON_LENGTH:
        raise InvalidReason(f"the reason is longer than {MAX_REASON_LENGTH} characters")
    # The reason goes into the ledger and a signed UTF-8 manifest: text that cannot be stored
    # or encoded there (NUL, lone surrogates, control characters) is refused, not mangled.
    if _CONTROL.search(cleaned) or not _encodable(cleaned):
        raise InvalidReason("the reason contains control characters or invalid Unicode")
    return cleaned


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


@dataclass(frozen=True)
class SegmentFile:
    """One segment to stream: where it goes in the ZIP and what its bytes must hash to."""

    segment_id: int
    path: str
    blob_key: str
    sha256: str
    size: int


@dataclass(frozen=True)
class PreparedExport:
    export_id: str
    sitting_code: str
    actor: str
    exported_at: datetime
    ledger_seq: int
    file_name: str
    # Small members written first, in this order: the manifest, its signature, the ledger files.
    head: tuple[tuple[str, bytes], ...]
    segments: tuple[SegmentFile, ...]

    @property
    def total_bytes(self) -> int:
        return sum(segment.size for segment in self.segments)


@dataclass(frozen=True)
class _Gathered:
    """Everything read in one snapshot before the ledger entry is written."""

    sitting: dict[str, Any]
    room: dict[str, Any]
    site: dict[str, Any]
    institution: dict[str, Any]
    cameras: list[dict[str, Any]]
    segments: list[dict[str, Any]]
    files: list[SegmentFile]
    ingest_entries: dict[int, dict[str, Any]]  # segment id -> its segment.ingested entry
    coverage: dict[str, Any]
    findings: list[dict[str, Any]]


def _entry_fields(entry: LedgerEntry) -> dict[str, Any]:
    return {
        "seq": entry.seq,
        "recorded_at": format_instant(entry.recorded_at),
        "actor": entry.actor,
        "action": entry.action,
        "subject_type": entry.subject_type,
        "subject_id": entry.subject_id,
        "details": entry.details,
        "prev_hash": entry.prev_hash,
        "entry_hash": entry.entry_hash,
    }


def _batches(values: Sequence[str]) -> Iterator[Sequence[str]]:
    for start in range(0, len(values), _IN_BATCH):
        yield values[start : start + _IN_BATCH]


def _safe_name(name: str) -> str:
    return _UNSAFE_NAME.sub("_", name).strip("._")


def _zip_path(camera: str, segment: Segment, taken: set[str]) -> str:
    """segments/<camera>/<original name>, or `<id>-<name>` when the original is unusable or
    already taken in that folder (two uploads may share a name when the start came in a
    header)."""
    folder = f"{SEGMENTS_DIR}/{_safe_name(camera) or 'camera'}"
    name = _safe_name(segment.original_name) or "segment"
    path = f"{folder}/{name}"
    # Prefixing the id again ends it: ids are unique, so the prefixes soon are too.
    while path in taken:
        name = f"{segment.id}-{name}"
        path = f"{folder}/{name}"
    taken.add(path)
    return path


def _gather(session: Session, sitting: Sitting, settings: Settings, now: datetime) -> _Gathered:
    zone = settings.zone
    room = session.get_one(Room, sitting.room_id)
    site = session.get_one(Site, room.site_id)
    institution = session.get_one(Institution, site.institution_id)
    cameras = session.scalars(
        select(Camera).where(Camera.room_id == room.id).order_by(Camera.code)
    ).all()
    camera_codes = {camera.id: camera.code for camera in cameras}
    required = required_interval(sitting, settings)
    # Segments are at most max_segment_seconds long: the lower bound lets the index serve.
    earliest = required.start - timedelta(seconds=settings.max_segment_seconds)
    segments = session.scalars(
        select(Segment)
        .where(
            Segment.camera_id.in_(list(camera_codes)),
            Segment.starts_at < required.end,
            Segment.starts_at > earliest,
            Segment.ends_at > required.start,
        )
        .order_by(Segment.starts_at, Segment.id)
    ).all()
    segments = sorted(segments, key=lambda s: (camera_codes[s.camera_id], s.starts_at, s.id))
    ids = [str(segment.id) for segment in segments]

    ingest_entries: dict[int, dict[str, Any]] = {}
    tombstones: dict[int, Tombstone] = {}
    for batch in _batches(ids):
        for entry in session.scalars(
            select(LedgerEntry)
            .where(
                LedgerEntry.subject_type == "segment",
                LedgerEntry.subject_id.in_(batch),
                LedgerEntry.action == INGEST_ACTION,
            )
            .order_by(LedgerEntry.seq)
        ):
            ingest_entries.setdefault(int(entry.subject_id), _entry_fields(entry))
        for tombstone in session.scalars(
            select(Tombstone).where(Tombstone.segment_id.in_([int(i) for i in batch]))
        ):
            tombstones[tombstone.segment_id] = tombstone

    taken: set[str] = set()
    listed: list[dict[str, Any]] = []
    files: list[SegmentFile] = []
    for segment in segments:
        camera = camera_codes[segment.camera_id]
        entry = ingest_entries.get(segment.id)
        item: dict[str, Any] = {
            "id": segment.id,
            "camera": camera,
            "status": "included" if segment.purged_at is None else "purged",
            "file": None,
            "sha256": segment.sha256,
            "size": segment.size_bytes,
            "starts_at": rfc3339(segment.starts_at, zone),
            "ends_at": rfc3339(segment.ends_at, zone),
            "duration_seconds": segment.duration_seconds,
            "declared_start": segment.declared_start,
            "original_name": segment.original_name,
            "container": segment.container,
            "video_codec": segment.video_codec,
            "clock_flags": list(segment.clock_flags or []),
            "expires_at": rfc3339(segment.expires_at, zone),
            "purged_at": rfc3339_or_none(segment.purged_at, zone),
            "ingest_ledger_seq": entry["seq"] if entry else None,
        }
        if segment.purged_at is None:
            item["file"] = _zip_path(camera, segment, taken)
            files.append(
                SegmentFile(
                    segment.id, item["file"], segment.blob_key, segment.sha256, segment.size_bytes
                )
            )
        else:
            tombstone = tombstones.get(segment.id)
            item["tombstone"] = (
                None
                if tombstone is None
                else {
                    "sha256": tombstone.sha256,
                    "size": tombstone.size_bytes,
                    "purged_at": rfc3339(tombstone.purged_at, zone),
                    "reason": tombstone.reason,
                }
            )
        listed.append(item)

    findings = [
        {
            "id": finding.id,
            "camera": code,
            "category": finding.category,
            "observed_from": rfc3339(finding.observed_from, zone),
            "observed_until": rfc3339_or_none(finding.observed_until, zone),
            "text": finding.text,
            "author": finding.author,
            "created_at": rfc3339(finding.created_at, zone),
            "updated_at": rfc3339(finding.updated_at, zone),
            "revision": finding.revision,
            "status": "withdrawn" if finding.withdrawn_at is not None else "active",
            "withdrawn_at": rfc3339_or_none(finding.withdrawn_at, zone),
        }
        for finding, code in session.execute(
            select(Finding, Camera.code)
            .join(Camera, Finding.camera_id == Camera.id)
            .where(Finding.sitting_id == sitting.id)
            .order_by(Finding.observed_from, Finding.id)
        )
    ]

    return _Gathered(
        sitting={
            "code": sitting.code,
            "kind": sitting.kind,
            "occupation": sitting.occupation,
            "level": sitting.level,
            "starts_at": rfc3339(sitting.starts_at, zone),
            "ends_at": rfc3339(sitting.ends_at, zone),
            "required_start": rfc3339(required.start, zone),
            "required_end": rfc3339(required.end, zone),
            "review_closed_at": rfc3339_or_none(sitting.review_closed_at, zone),
        },
        room={"code": room.code, "kind": room.kind},
        site={"code": site.code, "address": site.address},
        institution={
            "code": institution.code,
            "name": institution.name,
            "district": institution.district,
        },
        cameras=[
            {
                "code": camera.code,
                "position": camera.position,
                "active_from": rfc3339_or_none(camera.active_from, zone),
                "retired_at": rfc3339_or_none(camera.retired_at, zone),
            }
            for camera in cameras
        ],
        segments=listed,
        files=files,
        ingest_entries=ingest_entries,
        coverage=coverage_report(session, sitting, settings, now=now).as_json(zone),
        findings=findings,
    )


def _check_blobs(store: BlobStore, files: Iterable[SegmentFile]) -> str | None:
    """Why some blob cannot be served, or None: a stat per segment is cheap next to the
    footage itself, and failing here still lets the caller get a JSON error. A store that
    does not answer raises StoreUnavailable: that is an outage, not lost evidence."""
    for file in files:
        try:
            info = store.stat(file.blob_key)
        except BlobStoreError as exc:
            raise StoreUnavailable(f"the blob store cannot stat {file.blob_key}: {exc}") from exc
        if info is None:
            return f"segment {file.segment_id}: its bytes ({file.blob_key}) are missing"
        if info.size != file.size:
            return (
                f"segment {file.segment_id}: its blob has {info.size} bytes, "
                f"the ledger recorded {file.size}"
            )
    return None


def _proofs(db: Database, seqs: Iterable[int], size: int) -> list[dict[str, Any]]:
    """RFC 9162 inclusion paths of several entries in the tree of `size` entries, from the
    stored tree (its nodes below `size` never change, so a read after signing is the same)."""
    with db.read() as session:
        proofs = inclusion_proofs_in(session, seqs, size)
    return [
        {"seq": proof.seq, "leaf_index": proof.leaf_index, "leaf": proof.leaf, "proof": proof.proof}
        for proof in proofs
    ]


def _signed_checkpoint(
    db: Database, store: BlobStore, signer: CheckpointSigner, seqs: Iterable[int]
) -> tuple[Checkpoint, list[dict[str, Any]]]:
    """A fresh checkpoint of the whole ledger (stored, recorded, and refused over a rewrite,
    like every checkpoint) and the proofs of `seqs` in it."""
    checkpoint = make_checkpoint(db, store, signer).checkpoint
    return checkpoint, _proofs(db, seqs, checkpoint.size)


def _record_failure(db: Database, actor: str, sitting_code: str, details: dict[str, Any]) -> None:
    try:
        db.run_write(
            lambda session: ledger.append(
                session,
                actor=actor,
                action="export.failed",
                subject_type="sitting",
                subject_id=sitting_code,
                details=details,
            )
        )
    except Exception:
        # The failure itself is what matters to the caller; the log keeps this one.
        logger.exception("could not record the failed export of %s in the ledger", sitting_code)


def prepare_export(
    db: Database,
    store: BlobStore,
    settings: Settings,
    signer: CheckpointSigner,
    *,
    sitting_code: str,
    subject: Subject,
    reason: str,
    now: datetime | None = None,
) -> PreparedExport:
    """Everything but the video bytes; the `export.created` entry is committed on return."""
    reason = check_reason(reason)
    now = (now or datetime.now(UTC)).astimezone(UTC)
    zone = settings.zone
    if not _encodable(sitting_code) or "\x00" in sitting_code:
        # No sitting has such a code, and PostgreSQL would refuse the query outright.
        raise SittingNotVisible(f"no sitting {sitting_code!r}")
    with db.read() as session:
        sitting = visible_sitting(session, sitting_code, subject, now)
        if sitting is None:
            raise SittingNotVisible(f"no sitting {sitting_code!r}")
        if not may_watch_footage(subject):
            raise FootageNotAllowed(f"role {subject.role!r} may not export footage")
        gathered = _gather(session, sitting, settings, now)

    export_id = str(uuid.uuid4())
    included = [file.segment_id for file in gathered.files]
    missing = _check_blobs(store, gathered.files)
    if missing is not None:
        logger.error("export of %s refused: %s", sitting_code, missing)
        _record_failure(
            db, subject.actor, sitting_code, {"export_id": export_id, "problem": missing}
        )
        raise EvidenceMissing(missing)

    def record(session: Session) -> dict[str, Any]:
        entry = ledger.append(
            session,
            actor=subject.actor,
            action=EXPORT_ACTION,
            subject_type="sitting",
            subject_id=sitting_code,
            details={
                "export_id": export_id,
                "sitting": sitting_code,
                "reason": reason,
                "segments": included,
                "purged_segments": [s["id"] for s in gathered.segments if s["status"] == "purged"],
                "total_bytes": sum(file.size for file in gathered.files),
            },
            recorded_at=now,
        )
        # The stream's own record, in the same transaction: if this process dies while
        # streaming, the next start-up finds the export open and ledgers it as interrupted.
        session.add(
            ExportStream(
                export_id=export_id,
                sitting_code=sitting_code,
                actor=subject.actor,
                owner=process_owner(),
                started_at=now,
                heartbeat_at=now,
                bytes_sent=0,
                total_bytes=sum(file.size for file in gathered.files),
            )
        )
        return _entry_fields(entry)

    export_entry = db.run_write(record)
    entries = sorted(
        [*gathered.ingest_entries.values(), export_entry], key=lambda entry: entry["seq"]
    )
    try:
        checkpoint, proofs = _signed_checkpoint(
            db, store, signer, (entry["seq"] for entry in entries)
        )
    except (LedgerBroken, BlobStoreError) as exc:
        logger.error("export of %s refused: %s", sitting_code, exc)
        _record_failure(
            db, subject.actor, sitting_code, {"export_id": export_id, "problem": str(exc)}
        )
        if isinstance(exc, BlobStoreError):
            raise StoreUnavailable(f"the checkpoint could not be stored: {exc}") from exc
        raise

    ledger_files: list[tuple[str, bytes]] = [
        (ENTRIES, "".join(entry_line(entry) + "\n" for entry in entries).encode("utf-8")),
        (
            PROOFS,
            _pretty(
                {
                    "algorithm": "RFC 9162 inclusion proofs, leaf = entry_hash bytes",
                    "checkpoint_size": checkpoint.size,
                    "proofs": proofs,
                }
            ),
        ),
        (CHECKPOINT, checkpoint.to_bytes()),
        (PUBLIC_KEY, signer.public_key_pem.encode("ascii")),
    ]
    witnesses = parse_witnesses(settings.witnesses)
    if witnesses:
        # Asked once, each within its timeout: a witness that is down leaves the package
        # without its cosignature rather than holding the export back.
        cosignatures = cosign_now(db, witnesses, checkpoint, settings.witness_timeout_seconds)
        ledger_files.append(
            (
                COSIGNATURES,
                _pretty(
                    {
                        "format": COSIGNATURE_HEADER,
                        "checkpoint_size": checkpoint.size,
                        "cosignatures": [item.as_json() for item in cosignatures],
                    }
                ),
            )
        )
    manifest: dict[str, Any] = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "export": {
            "id": export_id,
            "exported_by": subject.actor,
            "exported_at": rfc3339(now, zone),
            "reason": reason,
            "ledger_seq": export_entry["seq"],
        },
        "sitting": gathered.sitting,
        "room": gathered.room,
        "site": gathered.site,
        "institution": gathered.institution,
        "cameras": gathered.cameras,
        "segments": gathered.segments,
        "coverage": gathered.coverage,
        "findings": gathered.findings,
        "ledger": {
            "entries": ENTRIES,
            "proofs": PROOFS,
            "public_key": PUBLIC_KEY,
            "checkpoint": {
                "file": CHECKPOINT,
                "size": checkpoint.size,
                "root": checkpoint.root,
                "timestamp": checkpoint.timestamp,
                "key_id": checkpoint.key_id,
            },
        },
        "signature": {
            "file": SIGNATURE,
            "algorithm": "Ed25519",
            "encoding": "raw 64 bytes",
            "signed": f"the exact bytes of {MANIFEST}",
            "key": PUBLIC_KEY,
            "key_id": signer.key_id,
            "note": "the same key signs the ledger checkpoints (GET /api/v1/ledger/key)",
        },
        "files": [
            {"path": name, "sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
            for name, data in ledger_files
        ],
    }
    if witnesses:
        manifest["ledger"]["cosignatures"] = COSIGNATURES
    manifest_bytes = _pretty(manifest)
    stamp = now.strftime("%Y%m%dT%H%M%SZ")
    return PreparedExport(
        export_id=export_id,
        sitting_code=sitting_code,
        actor=subject.actor,
        exported_at=now,
        ledger_seq=export_entry["seq"],
        file_name=f"examvault-{_safe_name(sitting_code) or 'sitting'}-{stamp}.zip",
        head=(
            (MANIFEST, manifest_bytes),
            (SIGNATURE, signer.sign(manifest_bytes)),
            *ledger_files,
        ),
        segments=tuple(gathered.files),
    )


def _pretty(value: Any) -> bytes:
    return (json.dumps(value, ensure_ascii=False, indent=2, sort_keys=True) + "\n").encode("utf-8")


class _Sink:
    """The unseekable file zipfile writes into: it keeps only what was written since the last
    `drain`, so memory stays at about one chunk whatever the package's size. zipfile sees no
    `tell`/`seek`, so it writes data descriptors after each member, as streaming needs."""

    def __init__(self) -> None:
        self._pieces: list[bytes] = []
        self._abandoned = False

    def write(self, data: bytes) -> int:
        if not self._abandoned:
            self._pieces.append(bytes(data))
        return len(data)

    def flush(self) -> None:
        pass

    def drain(self) -> bytes:
        data = b"".join(self._pieces)
        self._pieces.clear()
        return data

    def abandon(self) -> None:
        """After an abort nothing more may reach the client, not even the ZIP's directory
        that closing the archive would write."""
        self._abandoned = True
        self._pieces.clear()


def _verified_chunks(store: BlobStore, file: SegmentFile) -> Iterator[bytes]:
    """The blob's bytes, holding back the last chunk until the whole blob has hashed to the
    recorded sha256: a damaged segment never reaches the client complete."""
    digest = hashlib.sha256()
    size = 0
    pending: bytes | None = None
    for chunk in store.read(file.blob_key):
        size += len(chunk)
        if size > file.size:
            raise ExportAborted(
                f"segment {file.segment_id}: its blob is longer than the {file.size} bytes recorded"
            )
        digest.update(chunk)
        if pending is not None:
            yield pending
        pending = chunk
    if size != file.size or digest.hexdigest() != file.sha256:
        raise ExportAborted(
            f"segment {file.segment_id}: its bytes hash to {digest.hexdigest()} ({size} bytes), "
            f"the ledger recorded {file.sha256} ({file.size} bytes)"
        )
    if pending is not None:
        yield pending


def _zip_info(name: str, moment: datetime, size: int) -> zipfile.ZipInfo:
    # ZIP times have no zone; the manifest carries the exact instant.
    info = zipfile.ZipInfo(name, date_time=moment.timetuple()[:6])
    info.compress_type = zipfile.ZIP_STORED
    info.external_attr = 0o644 << 16
    # Known up front, so zipfile switches to ZIP64 for this member when it needs to.
    info.file_size = size
    return info


def stream_export(prepared: PreparedExport, db: Database, store: BlobStore) -> Iterator[bytes]:
    """The package's bytes as they are produced: the small members first, then each segment
    read from the blob store chunk by chunk and written as a stored (uncompressed) member."""
    sink = _Sink()
    moment = prepared.exported_at
    archive = zipfile.ZipFile(sink, mode="w", compression=zipfile.ZIP_STORED, allowZip64=True)
    for name, data in prepared.head:
        archive.writestr(_zip_info(name, moment, len(data)), data)
    yield sink.drain()
    for file in prepared.segments:
        try:
            with archive.open(_zip_info(file.path, moment, file.size), mode="w") as member:
                for chunk in _verified_chunks(store, file):
                    member.write(chunk)
                    yield sink.drain()
        except (ExportAborted, BlobStoreError, OSError) as exc:
            sink.abandon()
            _record_abort(db, prepared, file, exc)
            raise ExportAborted(str(exc)) from exc
        yield sink.drain()
    archive.close()
    yield sink.drain()
    logger.info(
        "export %s of %s streamed: %d segment(s), %d bytes of footage",
        prepared.export_id,
        prepared.sitting_code,
        len(prepared.segments),
        prepared.total_bytes,
    )


def _record_abort(
    db: Database, prepared: PreparedExport, file: SegmentFile, exc: Exception
) -> None:
    logger.error(
        "export %s of %s aborted at segment %d: %s",
        prepared.export_id,
        prepared.sitting_code,
        file.segment_id,
        exc,
    )
    try:
        db.run_write(
            lambda session: ledger.append(
                session,
                actor=prepared.actor,
                action="export.aborted",
                subject_type="segment",
                subject_id=file.segment_id,
                details={
                    "export_id": prepared.export_id,
                    "sitting": prepared.sitting_code,
                    "export_seq": prepared.ledger_seq,
                    "blob_key": file.blob_key,
                    "expected_sha256": file.sha256,
                    "expected_size": file.size,
                    "problem": str(exc),
                },
            )
        )
    except Exception:
        logger.exception("could not record the aborted export %s in the ledger", prepared.export_id)


class ExportDelivery:
    """One export's stream, and the ledger entry that says how it ended: `export.delivered`
    once the last byte was handed to the server, `export.interrupted` (with the bytes sent)
    when the client went away or the stream failed. Exactly one of the two, whichever thread
    notices first (`settle`)."""

    def __init__(self, prepared: PreparedExport, db: Database, store: BlobStore) -> None:
        self.prepared, self.db, self.store = prepared, db, store
        self.bytes_sent = 0
        self.completed = False
        self._settled = False
        self._lock = threading.Lock()

    def chunks(self) -> Iterator[bytes]:
        """The package's bytes. A chunk counts as sent once the server asks for the next one
        (it has taken the previous); after the last, the stream is complete."""
        last_progress = time.monotonic()
        for chunk in stream_export(self.prepared, self.db, self.store):
            if not chunk:
                continue
            yield chunk
            self.bytes_sent += len(chunk)
            if time.monotonic() - last_progress > PROGRESS_SECONDS:
                self._record_progress()
                last_progress = time.monotonic()
        self.completed = True

    def settle(self, cause: str | None = None) -> str:
        """Record how the stream ended, once; returns the action recorded (or already
        recorded). `cause` says why an incomplete stream ended."""
        with self._lock:
            if self._settled:
                return DELIVERED_ACTION if self.completed else INTERRUPTED_ACTION
            self._settled = True
        action = DELIVERED_ACTION if self.completed and cause is None else INTERRUPTED_ACTION
        details: dict[str, Any] = {
            "export_id": self.prepared.export_id,
            "sitting": self.prepared.sitting_code,
            "export_seq": self.prepared.ledger_seq,
            "bytes_sent": self.bytes_sent,
            "footage_bytes": self.prepared.total_bytes,
        }
        if action == INTERRUPTED_ACTION:
            details["cause"] = cause or "the client went away before the last byte"
            logger.warning(
                "export %s of %s interrupted after %d bytes: %s",
                self.prepared.export_id,
                self.prepared.sitting_code,
                self.bytes_sent,
                details["cause"],
            )
        try:
            self.db.run_write(
                lambda session: _record_outcome(
                    session, self.prepared.export_id, self.prepared.actor, action, details
                )
            )
        except Exception:
            logger.exception(
                "could not record %s of export %s in the ledger", action, self.prepared.export_id
            )
        return action

    def _record_progress(self) -> None:
        try:
            with self.db.write() as session:
                row = session.get(ExportStream, self.prepared.export_id)
                if row is not None and row.ended_at is None:
                    row.bytes_sent, row.heartbeat_at = self.bytes_sent, datetime.now(UTC)
        except Exception:
            # Progress is a hint for a later start-up; the stream itself must go on.
            logger.warning("could not record the progress of export %s", self.prepared.export_id)


def _record_outcome(
    session: Session, export_id: str, actor: str, action: str, details: dict[str, Any]
) -> None:
    """The outcome entry and the stream row's end, in one transaction; a stream already ended
    (by a concurrent start-up that took it for dead) gets no second outcome."""
    row = session.get(ExportStream, export_id, with_for_update=True)
    if row is not None:
        if row.ended_at is not None:
            return
        row.ended_at, row.outcome = datetime.now(UTC), action.removeprefix("export.")
        row.bytes_sent = details["bytes_sent"]
    ledger.append(
        session,
        actor=actor,
        action=action,
        subject_type="sitting",
        subject_id=details["sitting"],
        details=details,
    )


def close_interrupted_exports(db: Database, *, now: datetime | None = None) -> list[str]:
    """At start-up: every export whose stream was left open by a process that is gone (killed
    mid-stream) is ledgered as `export.interrupted`, with the bytes it had recorded as sent
    by then (at least that many went out). Returns their export ids."""
    now = now or datetime.now(UTC)
    with db.read() as session:
        open_streams = session.scalars(
            select(ExportStream).where(ExportStream.ended_at.is_(None))
        ).all()
    closed = []
    for stream in open_streams:
        if not owner_is_gone(stream.owner, stream.heartbeat_at, now=now, stale=STALE_STREAM):
            continue
        with db.read() as session:
            created = session.scalar(
                select(LedgerEntry.seq).where(
                    LedgerEntry.action == EXPORT_ACTION,
                    LedgerEntry.subject_type == "sitting",
                    LedgerEntry.subject_id == stream.sitting_code,
                    LedgerEntry.details.contains(stream.export_id),
                )
            )
        details = {
            "export_id": stream.export_id,
            "sitting": stream.sitting_code,
            "export_seq": created,
            "bytes_sent": stream.bytes_sent,
            "footage_bytes": stream.total_bytes,
            "cause": f"the server process ({stream.owner}) ended during the stream; found at "
            "a later start-up (bytes_sent is what it had recorded, at least that many went out)",
        }
        db.run_write(
            lambda session, s=stream, d=details: _record_outcome(
                session, s.export_id, s.actor, INTERRUPTED_ACTION, d
            )
        )
        logger.warning(
            "export %s of %s was interrupted with its process: ledgered",
            stream.export_id,
            stream.sitting_code,
        )
        closed.append(stream.export_id)
    return closed
