"""Rows: the registry, the evidence (segments, quarantine), the ledger and API tokens.

Every instant is stored as timezone-aware UTC; `UTCDateTime` makes SQLite (which keeps no
offset) hand back the same aware values PostgreSQL does.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    SmallInteger,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC in, aware UTC out, on every backend; naive values are refused, never guessed."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r} cannot be stored: give it a time zone")
        value = value.astimezone(UTC)
        # SQLite has no zone type; store naive UTC there so text comparisons order correctly.
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        # PostgreSQL sessions run in UTC (storage/db.py), so this is the usual case there.
        if value.tzinfo is UTC:
            return value
        return value.astimezone(UTC)

    def result_processor(self, dialect: Dialect, coltype: Any) -> Any:
        # A coverage report reads thousands of instants; on SQLite, parsing the stored text and
        # attaching UTC in one step halves the per-value cost of the generic two-step chain
        # (impl parser, then process_result_value). Same values either way.
        if dialect.name == "sqlite":
            return _utc_from_sqlite_text
        return super().result_processor(dialect, coltype)


def _utc_from_sqlite_text(value: str | datetime | None) -> datetime | None:
    if value is None:
        return None
    # What SQLAlchemy stores: naive UTC text, with or without microseconds. Parsing it with the
    # offset appended is several times cheaper than `replace(tzinfo=UTC)` afterwards.
    if isinstance(value, str) and len(value) in (19, 26):
        return datetime.fromisoformat(value + "+00:00")
    moment = datetime.fromisoformat(value) if isinstance(value, str) else value
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


class Base(DeclarativeBase):
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        datetime: UTCDateTime(),
        dict[str, Any]: JSON,
        list[str]: JSON,
    }


class Institution(Base):
    __tablename__ = "institutions"

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    district: Mapped[str] = mapped_column(String(100), index=True)
    filing_expires: Mapped[date | None] = mapped_column(Date)

    sites: Mapped[list[Site]] = relationship(back_populates="institution")


class Site(Base):
    __tablename__ = "sites"

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(64), unique=True)
    institution_id: Mapped[int] = mapped_column(ForeignKey("institutions.id"))
    address: Mapped[str] = mapped_column(String(300))

    institution: Mapped[Institution] = relationship(back_populates="sites")
    rooms: Mapped[list[Room]] = relationship(back_populates="site")


class Room(Base):
    __tablename__ = "rooms"

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(64), unique=True)
    site_id: Mapped[int] = mapped_column(ForeignKey("sites.id"))
    kind: Mapped[str] = mapped_column(String(16))  # theory | practical
    # Optional in the registry ("101 理论考场"); the day view shows it beside the code.
    name: Mapped[str | None] = mapped_column(String(200))

    site: Mapped[Site] = relationship(back_populates="rooms")
    cameras: Mapped[list[Camera]] = relationship(back_populates="room")


class Camera(Base):
    __tablename__ = "cameras"

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(64), unique=True)
    room_id: Mapped[int] = mapped_column(ForeignKey("rooms.id"))
    position: Mapped[str] = mapped_column(String(32))
    # Which sittings require this camera depends on when it was in service, so both ends are kept.
    active_from: Mapped[datetime | None]
    retired_at: Mapped[datetime | None]

    # The camera's usual Laplacian variance, learned from healthy samples (docs/coverage.md).
    sharpness_baseline: Mapped[float | None] = mapped_column(Float)

    room: Mapped[Room] = relationship(back_populates="cameras")


class Sitting(Base):
    __tablename__ = "sittings"

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(64), unique=True)
    room_id: Mapped[int] = mapped_column(ForeignKey("rooms.id"))
    kind: Mapped[str] = mapped_column(String(16))
    occupation: Mapped[str] = mapped_column(String(100))
    level: Mapped[str] = mapped_column(String(32))
    starts_at: Mapped[datetime]
    ends_at: Mapped[datetime]
    # The stored verdict (pending | complete | incomplete | missing), recomputed when footage
    # touching the sitting arrives or is rejected, when the sitting changes, and by the sweep.
    coverage_status: Mapped[str] = mapped_column(
        String(16), default="pending", server_default="pending"
    )
    coverage_checked_at: Mapped[datetime | None]
    # What the stored verdict saw, per required camera: position, missing seconds and the first
    # gaps (services/coverage/verdicts.py `gap_summary`); written with the verdict so a list
    # page never judges its sittings. None until the sitting is first judged after 0014.
    coverage_summary: Mapped[dict[str, Any] | None] = mapped_column(JSON(none_as_null=True))
    # Once the centre closes a sitting's review, its findings are final: no author may edit.
    review_closed_at: Mapped[datetime | None]
    review_closed_by: Mapped[str | None] = mapped_column(String(200))

    room: Mapped[Room] = relationship()

    __table_args__ = (
        Index("ix_sittings_room_time", "room_id", "starts_at", "ends_at"),
        Index("ix_sittings_status", "coverage_status", "ends_at"),
        Index("ix_sittings_starts", "starts_at", "id"),
        Index("ix_sittings_room_status", "room_id", "coverage_status"),
    )


class Segment(Base):
    """One pushed recording of one camera, stored byte for byte in the blob store."""

    __tablename__ = "segments"

    id: Mapped[int] = mapped_column(primary_key=True)
    camera_id: Mapped[int] = mapped_column(ForeignKey("cameras.id"))
    starts_at: Mapped[datetime]
    # starts_at + media duration measured from the packets, never from fps or file times.
    ends_at: Mapped[datetime]
    declared_start: Mapped[str] = mapped_column(String(64))
    duration_seconds: Mapped[float] = mapped_column(Float)
    sha256: Mapped[str] = mapped_column(String(64))
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    blob_key: Mapped[str] = mapped_column(String(400), unique=True)
    container: Mapped[str] = mapped_column(String(64))
    video_codec: Mapped[str] = mapped_column(String(32))
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    frame_rate: Mapped[float | None] = mapped_column(Float)
    keyframe_count: Mapped[int] = mapped_column(Integer)
    has_audio: Mapped[bool] = mapped_column(Boolean)
    clock_flags: Mapped[list[str]] = mapped_column(default=list)
    source: Mapped[str] = mapped_column(String(16))  # http | spool
    original_name: Mapped[str] = mapped_column(String(255))
    received_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    purged_at: Mapped[datetime | None]
    health_checked_at: Mapped[datetime | None]
    # A check that could not read the footage (the store was down) is tried again later, with
    # backoff: how many times it failed, when it is next due, and why it last failed.
    health_attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    health_retry_at: Mapped[datetime | None]
    health_error: Mapped[str | None] = mapped_column(Text)

    camera: Mapped[Camera] = relationship()

    __table_args__ = (
        UniqueConstraint("camera_id", "starts_at", name="uq_segments_camera_start"),
        Index("ix_segments_camera_time", "camera_id", "starts_at", "ends_at"),
        Index("ix_segments_sha256", "sha256"),
        Index("ix_segments_expiry", "expires_at"),
    )


class HealthSample(Base):
    """Raw picture metrics of one sampled keyframe; thresholds are applied at report time."""

    __tablename__ = "health_samples"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    segment_id: Mapped[int] = mapped_column(ForeignKey("segments.id"))
    camera_id: Mapped[int] = mapped_column(ForeignKey("cameras.id"))
    at: Mapped[datetime]
    mean_luma: Mapped[float] = mapped_column(Float)
    dark_share: Mapped[float] = mapped_column(Float)
    motion: Mapped[float | None] = mapped_column(Float)
    sharpness: Mapped[float] = mapped_column(Float)
    reference_similarity: Mapped[float | None] = mapped_column(Float)

    __table_args__ = (
        Index("ix_health_camera_time", "camera_id", "at"),
        Index("ix_health_segment", "segment_id"),
    )


class HealthFlag(Base):
    """An interval of useless picture (black, frozen, covered, scene_mismatch) within one
    segment, derived from its samples at check time so reports need not read every sample.
    Re-derived from the samples, without decoding, when thresholds change."""

    __tablename__ = "health_flags"

    id: Mapped[int] = mapped_column(primary_key=True)
    segment_id: Mapped[int] = mapped_column(ForeignKey("segments.id"))
    camera_id: Mapped[int] = mapped_column(ForeignKey("cameras.id"))
    starts_at: Mapped[datetime]
    ends_at: Mapped[datetime]
    kind: Mapped[str] = mapped_column(String(16))

    __table_args__ = (
        Index("ix_health_flags_camera_time", "camera_id", "starts_at"),
        Index("ix_health_flags_segment", "segment_id"),
    )


class ReferenceImage(Base):
    """What a camera (or, failing that, its room) should see; the newest one is in force."""

    __tablename__ = "reference_images"

    id: Mapped[int] = mapped_column(primary_key=True)
    camera_id: Mapped[int | None] = mapped_column(ForeignKey("cameras.id"))
    room_id: Mapped[int | None] = mapped_column(ForeignKey("rooms.id"))
    image: Mapped[bytes] = mapped_column(LargeBinary)
    media_type: Mapped[str] = mapped_column(String(32))
    sha256: Mapped[str] = mapped_column(String(64))
    source: Mapped[str] = mapped_column(String(200))  # "upload" or "segment 12 at <instant>"
    set_by: Mapped[str] = mapped_column(String(200))
    set_at: Mapped[datetime]


class QuarantineRecord(Base):
    """A file that is not usable evidence: its record (reason, SHA-256, size) is never deleted;
    its bytes are kept within the quarantine's budget and retention (services/ingest/quarantine)."""

    __tablename__ = "quarantine_records"

    id: Mapped[int] = mapped_column(primary_key=True)
    camera_code: Mapped[str | None] = mapped_column(String(64))
    declared_start: Mapped[str | None] = mapped_column(String(64))
    # The time the file claimed, when it could be read: coverage reports such holes as `rejected`.
    claimed_start: Mapped[datetime | None]
    claimed_end: Mapped[datetime | None]
    original_name: Mapped[str] = mapped_column(String(255))
    source: Mapped[str] = mapped_column(String(16))
    reason_code: Mapped[str] = mapped_column(String(64))
    reason: Mapped[str] = mapped_column(Text)
    sha256: Mapped[str] = mapped_column(String(64))
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    stored_path: Mapped[str] = mapped_column(String(500))
    received_at: Mapped[datetime]
    # Bytes of the file on disk now: all of them, its first bytes (the budget was full), or 0
    # (never kept, or removed after the quarantine retention). The record itself stays.
    kept_bytes: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    bytes_removed_at: Mapped[datetime | None]
    bytes_removed_reason: Mapped[str | None] = mapped_column(String(32))  # budget | retention

    __table_args__ = (
        Index("ix_quarantine_camera_time", "camera_code", "claimed_start"),
        Index("ix_quarantine_kept_received", "kept_bytes", "received_at"),
    )


class Hold(Base):
    """A legal hold (保全): blocks purge of what it covers until released (Article 29).

    Scope is one of: a sitting (its room's cameras over its required interval), a camera over
    [held_from, held_until), or one segment. A released hold stays, with who and when."""

    __tablename__ = "holds"

    id: Mapped[int] = mapped_column(primary_key=True)
    scope: Mapped[str] = mapped_column(String(16))  # sitting | camera | segment
    sitting_id: Mapped[int | None] = mapped_column(ForeignKey("sittings.id"))
    camera_id: Mapped[int | None] = mapped_column(ForeignKey("cameras.id"))
    segment_id: Mapped[int | None] = mapped_column(ForeignKey("segments.id"))
    held_from: Mapped[datetime | None]
    held_until: Mapped[datetime | None]
    reason: Mapped[str] = mapped_column(Text)
    case_reference: Mapped[str | None] = mapped_column(String(200))
    placed_by: Mapped[str] = mapped_column(String(200))
    placed_at: Mapped[datetime]
    released_by: Mapped[str | None] = mapped_column(String(200))
    released_at: Mapped[datetime | None]
    release_reason: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (Index("ix_holds_active", "released_at"),)


class HoldScopeRecord(Base):
    """One frozen part of what a hold covers: a segment, or a camera over [starts_at, ends_at).
    Written when the hold is placed (a sitting hold: one per camera of its room) and added to
    when a held sitting moves, never changed: the hold covers the union of its records."""

    __tablename__ = "hold_scopes"

    id: Mapped[int] = mapped_column(primary_key=True)
    hold_id: Mapped[int] = mapped_column(ForeignKey("holds.id"))
    segment_id: Mapped[int | None] = mapped_column(ForeignKey("segments.id"))
    camera_id: Mapped[int | None] = mapped_column(ForeignKey("cameras.id"))
    starts_at: Mapped[datetime | None]
    ends_at: Mapped[datetime | None]
    cause: Mapped[str] = mapped_column(String(16))  # placed | moved | backfilled
    added_at: Mapped[datetime]

    __table_args__ = (Index("ix_hold_scopes_hold", "hold_id"),)


class Finding(Base):
    """A supervisor's note (督导记录) on a sitting: at one camera, at an instant or over an
    interval, in a category. Only its author edits it, and only while the review is open;
    every version is in the ledger, so an edit never erases what was first written."""

    __tablename__ = "findings"

    id: Mapped[int] = mapped_column(primary_key=True)
    sitting_id: Mapped[int] = mapped_column(ForeignKey("sittings.id"))
    camera_id: Mapped[int] = mapped_column(ForeignKey("cameras.id"))
    # substitution | absent_assessor | camera_blocked | off_site | other
    category: Mapped[str] = mapped_column(String(32))
    observed_from: Mapped[datetime]
    # None for an instant; the end of the interval otherwise.
    observed_until: Mapped[datetime | None]
    text: Mapped[str] = mapped_column(Text)
    author_user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    author: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    revision: Mapped[int] = mapped_column(Integer, default=1)
    withdrawn_at: Mapped[datetime | None]

    __table_args__ = (Index("ix_findings_sitting", "sitting_id", "observed_from"),)


class PurgeRun(Base):
    """One execution of the retention purge; tombstones name the run that made them."""

    __tablename__ = "purge_runs"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    as_of: Mapped[datetime]
    started_at: Mapped[datetime]
    finished_at: Mapped[datetime | None]
    actor: Mapped[str] = mapped_column(String(200))
    planned: Mapped[int] = mapped_column(Integer)
    planned_bytes: Mapped[int] = mapped_column(BigInteger)
    purged: Mapped[int] = mapped_column(Integer, default=0)
    purged_bytes: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    # running, completed, stopped (the store failed), interrupted (asked to stop, or killed and
    # closed by a later run); a killed run is told apart from a live one by `owner`.
    status: Mapped[str] = mapped_column(String(16), default="running", server_default="completed")
    stop_reason: Mapped[str | None] = mapped_column(Text)
    owner: Mapped[str | None] = mapped_column(String(200))  # services/liveness.py
    heartbeat_at: Mapped[datetime | None]


class ExportStream(Base):
    """An export being streamed, or how its stream ended: lets a later start-up find an export
    whose process died mid-stream and ledger it as interrupted. Operational state, not
    evidence: the ledger entries (export.created, .delivered, .interrupted) are the record."""

    __tablename__ = "export_streams"

    export_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    sitting_code: Mapped[str] = mapped_column(String(200))
    actor: Mapped[str] = mapped_column(String(200))
    owner: Mapped[str] = mapped_column(String(200))
    started_at: Mapped[datetime]
    heartbeat_at: Mapped[datetime]
    bytes_sent: Mapped[int] = mapped_column(BigInteger)
    total_bytes: Mapped[int] = mapped_column(BigInteger)
    ended_at: Mapped[datetime | None]
    outcome: Mapped[str | None] = mapped_column(String(16))

    __table_args__ = (Index("ix_export_streams_open", "ended_at"),)


class Tombstone(Base):
    """What a purged segment was: kept for ever, like the segment row itself."""

    __tablename__ = "tombstones"

    id: Mapped[int] = mapped_column(primary_key=True)
    segment_id: Mapped[int] = mapped_column(ForeignKey("segments.id"), unique=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("purge_runs.id"))
    sha256: Mapped[str] = mapped_column(String(64))
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    blob_key: Mapped[str] = mapped_column(String(400))
    starts_at: Mapped[datetime]
    ends_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    purged_at: Mapped[datetime]
    reason: Mapped[str] = mapped_column(Text)
    # Set once the bytes are gone from the store; a tombstone without it is finished by the
    # next purge run (the row is committed before the blob is deleted).
    blob_deleted_at: Mapped[datetime | None]

    __table_args__ = (Index("ix_tombstones_pending", "blob_deleted_at"),)


class LedgerEntry(Base):
    """Append-only, hash-chained record of everything done to evidence (docs/ledger.md)."""

    __tablename__ = "ledger_entries"

    # Assigned as head + 1 by the appender, never by the database, so two writers that raced
    # collide on the primary key instead of forking the chain.
    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    recorded_at: Mapped[datetime]
    actor: Mapped[str] = mapped_column(String(200))
    action: Mapped[str] = mapped_column(String(64))
    subject_type: Mapped[str] = mapped_column(String(32))
    subject_id: Mapped[str] = mapped_column(String(200))
    # Canonical JSON text: exactly the bytes that were hashed.
    details: Mapped[str] = mapped_column(Text)
    prev_hash: Mapped[str] = mapped_column(String(64))
    entry_hash: Mapped[str] = mapped_column(String(64), unique=True)

    __table_args__ = (
        Index("ix_ledger_subject", "subject_type", "subject_id"),
        # The centre's search of who read which footage, newest first (migration 0013).
        Index("ix_ledger_actor_seq", "actor", "seq"),
        Index("ix_ledger_action_seq", "action", "seq"),
    )


class LedgerNode(Base):
    """One complete node of the ledger's Merkle tree, stored when its last leaf is appended
    (docs/ledger.md): level 0 holds each entry's leaf hash, the node at `level`, `position`
    covers leaves [position * 2^level, (position + 1) * 2^level). Append-only."""

    __tablename__ = "ledger_nodes"

    level: Mapped[int] = mapped_column(SmallInteger, primary_key=True, autoincrement=False)
    position: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    digest: Mapped[bytes] = mapped_column(LargeBinary(32))

    # Rows are found only by their key: on SQLite the key is the table (no second b-tree).
    __table_args__: ClassVar[dict[str, Any]] = {"sqlite_with_rowid": False}


class LedgerCheckpointRecord(Base):
    """A stored checkpoint's size and root, kept in the database as well as in the blob store,
    so deleting checkpoint files along with the ledger's tail is still seen. Append-only."""

    __tablename__ = "ledger_checkpoints"

    size: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    root: Mapped[str] = mapped_column(String(64))
    key_id: Mapped[str] = mapped_column(String(16))
    signed_at: Mapped[datetime]
    recorded_at: Mapped[datetime]


class LedgerCosignature(Base):
    """A witness's cosignature of a recorded checkpoint: the witness's key_id, when it signed
    (its own clock) and the signature, as it answered. One per checkpoint and witness."""

    __tablename__ = "ledger_cosignatures"

    checkpoint_size: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    witness_key_id: Mapped[str] = mapped_column(String(16), primary_key=True)
    checkpoint_root: Mapped[str] = mapped_column(String(64))
    timestamp: Mapped[int] = mapped_column(BigInteger)
    signature: Mapped[str] = mapped_column(String(128))
    recorded_at: Mapped[datetime]


class User(Base):
    """A person who logs in: the centre's admins, district officers, supervisors, institutions."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    role: Mapped[str] = mapped_column(String(32))
    district: Mapped[str | None] = mapped_column(String(100))
    institution_id: Mapped[int | None] = mapped_column(ForeignKey("institutions.id"))
    password_hash: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime]
    disabled_at: Mapped[datetime | None]


class Assignment(Base):
    """A supervisor's access to one sitting, or to an institution's sittings over a date range,
    valid only inside [valid_from, valid_until)."""

    __tablename__ = "assignments"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    sitting_id: Mapped[int | None] = mapped_column(ForeignKey("sittings.id"))
    institution_id: Mapped[int | None] = mapped_column(ForeignKey("institutions.id"))
    # For an institution assignment: the sittings starting in [covers_from, covers_until).
    covers_from: Mapped[datetime | None]
    covers_until: Mapped[datetime | None]
    valid_from: Mapped[datetime]
    valid_until: Mapped[datetime]
    granted_by: Mapped[str] = mapped_column(String(200))
    granted_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]

    __table_args__ = (Index("ix_assignments_user", "user_id", "valid_until"),)


class LoginAttempt(Base):
    """Log-in attempts for one user name in the current throttle window, shared by every API
    process; a success deletes the row and stale rows are pruned, so it holds only guessing."""

    __tablename__ = "login_attempts"

    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    attempts: Mapped[int] = mapped_column(Integer)
    window_started_at: Mapped[datetime]
    last_attempt_at: Mapped[datetime]

    __table_args__ = (Index("ix_login_attempts_last", "last_attempt_at"),)


class ApiToken(Base):
    """A machine's bearer token; only its SHA-256 is kept, so the database never holds a secret."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(32))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    cameras: Mapped[list[str]] = mapped_column(default=list)
    # Set for a person's login session; None for a machine's token.
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]


class HostReport(Base):
    """The latest status a camera host's push daemon reported with its own token: what waits
    to be pushed and how the last attempts went. Replaced at each report; not evidence."""

    __tablename__ = "host_reports"

    token_id: Mapped[int] = mapped_column(ForeignKey("api_tokens.id"), primary_key=True)
    reported_at: Mapped[datetime]
    backlog_files: Mapped[int] = mapped_column(Integer)
    backlog_bytes: Mapped[int] = mapped_column(BigInteger)
    unfinished_files: Mapped[int] = mapped_column(Integer)
    # As the daemon wrote them (its clock, RFC 3339): shown, never compared with ours.
    last_success_at: Mapped[str | None] = mapped_column(String(64))
    last_error_at: Mapped[str | None] = mapped_column(String(64))
    last_error: Mapped[str | None] = mapped_column(Text)
    disk_low: Mapped[bool] = mapped_column(Boolean)


class LedgerCheck(Base):
    """One recorded verification of the ledger: `full` (`examvault ledger verify`) or `recent`
    (the page's bounded check of the newest entries), over entries first_seq..last_seq."""

    __tablename__ = "ledger_checks"

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))  # full | recent
    actor: Mapped[str] = mapped_column(String(200))
    started_at: Mapped[datetime]
    finished_at: Mapped[datetime]
    first_seq: Mapped[int] = mapped_column(BigInteger)
    last_seq: Mapped[int] = mapped_column(BigInteger)
    ok: Mapped[bool] = mapped_column(Boolean)
    problem: Mapped[str | None] = mapped_column(Text)
