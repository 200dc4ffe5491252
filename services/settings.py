"""Operator settings: EXAMVAULT_* environment variables (a `.env` file may hold them)."""

from __future__ import annotations

import os
from functools import cached_property
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import ValidationInfo, field_validator, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from storage.faults import parse as parse_fault_point

# Article 14 of the city regulation: exam-room video is kept no less than three years.
MINIMUM_RETENTION_YEARS = 3


class SettingsError(ValueError):
    """A setting that the service refuses to start with; the message names the variable."""


# Settings that are secrets may name a file instead (EXAMVAULT_S3_SECRET_KEY_FILE=
# /run/secrets/s3_secret_key), as compose secrets and systemd credentials deliver them: a value in
# the environment shows in `ps e`, /proc and crash reports.
SECRET_FIELDS = ("database_url", "s3_access_key", "s3_secret_key", "metrics_token")
SECRET_FILE_VARIABLES = tuple(f"EXAMVAULT_{name.upper()}_FILE" for name in SECRET_FIELDS)


class _SecretFiles(PydanticBaseSettingsSource):
    """EXAMVAULT_<NAME>_FILE for the secret settings: the file's content, stripped."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        found: dict[str, Any] = {}
        for name, variable in zip(SECRET_FIELDS, SECRET_FILE_VARIABLES, strict=True):
            path = os.environ.get(variable, "").strip()
            if not path:
                continue
            try:
                found[name] = Path(path).read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise SettingsError(f"{variable}={path!r} cannot be read: {exc}") from exc
        return found


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="EXAMVAULT_", env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    data_dir: Path = Path("./var")
    database_url: str | None = None
    storage_url: str | None = None
    s3_access_key: str | None = None
    s3_secret_key: str | None = None
    spool_dir: Path | None = None
    timezone: str = "Asia/Shanghai"
    retention_years: int = 3
    gap_tolerance_seconds: float = 1.0
    upload_grace_hours: float = 24.0
    # The required interval is [start - pre, end + post] (SPEC.md "Coverage rule").
    coverage_pre_margin_seconds: float = 0.0
    coverage_post_margin_seconds: float = 0.0
    # How often serve re-judges pending sittings whose grace period may have ended.
    verdict_sweep_seconds: float = 300.0

    # Ingest limits and clock sanity.
    max_upload_bytes: int = 8 * 1024**3
    max_segment_seconds: float = 12 * 3600
    # Exam cameras are at most 4K: a larger picture (either orientation) or pixel rate is
    # refused from its header before any decode, which bounds each decode's memory and CPU.
    max_picture_long_side: int = 4096
    max_picture_short_side: int = 2160
    max_pixel_rate: float = 4096 * 2160 * 60
    clock_ahead_tolerance_seconds: float = 120.0
    spool_rescan_seconds: float = 30.0
    # A final-named spool file is taken only once it has not changed for this long, because a
    # host that skips the `.part` convention may still be writing it.
    spool_settle_seconds: float = 2.0
    # Test-only (tests/ingest/test_crash.py): SIGKILL at a named ingest step (storage/faults.py),
    # refused unless EXAMVAULT_TEST_FAULTS=1 says this is a test.
    test_faults: bool = False
    fault_point: str | None = None
    health_checks: bool = True
    # Decode time one segment's health check may take; the rest is flagged `unchecked`.
    health_check_budget_seconds: float = 30.0
    # Rejected files: bytes kept in all (beyond it only a sample of each, then the record
    # alone), the sample's size, and how long kept bytes stay (records stay for ever).
    quarantine_budget_bytes: int = 20 * 1024**3
    quarantine_sample_bytes: int = 1024**2
    quarantine_retention_days: float = 90.0
    # "HH:MM" local time: serve runs the purge (executing it) once a day then. Off when unset.
    purge_schedule: str | None = None
    # A ledger checkpoint after this many new entries or this many seconds, whichever first:
    # the bound on the newest entries no signed checkpoint vouches for (docs/ledger.md).
    ledger_checkpoint_entries: int = 1000
    ledger_checkpoint_seconds: float = 60.0
    # Witnesses that cosign each checkpoint: comma-separated `URL KEY` pairs, KEY as
    # `examvault witness key` prints it (docs/ledger.md). Asked in the background, never on
    # ingest's path: each request waits this long at most, and is tried again this much later.
    witnesses: str | None = None
    witness_timeout_seconds: float = 2.0
    witness_retry_seconds: float = 5.0
    # Bounds on every call to a dependency (docs/operations.md): a store or database that does
    # not answer fails the call within seconds instead of holding a thread for minutes.
    s3_connect_timeout_seconds: float = 5.0
    s3_read_timeout_seconds: float = 30.0
    s3_retries: int = 2
    database_connect_timeout_seconds: float = 5.0
    database_pool_timeout_seconds: float = 10.0
    # /readyz answers from checks run this often in the background, never within the request.
    readiness_interval_seconds: float = 5.0
    # Fewer free bytes than this where examvault writes (data dir, spool) is "not ready".
    min_free_bytes: int = 512 * 1024**2
    # A write that failed on a full disk keeps /readyz "not ready" at least this long.
    write_failure_window_seconds: float = 60.0
    # After an outage: the Retry-After of the 503, and how soon the worker retries a file.
    outage_retry_seconds: int = 30

    # Who does the work (docs/architecture.md "The job queue"): `auto` is the PostgreSQL job
    # queue (procrastinate) when the database is PostgreSQL and in-process threads otherwise;
    # `in_process` keeps a single-machine PostgreSQL deployment working without `worker`s.
    queue: Literal["auto", "postgres", "in_process"] = "auto"
    # A job whose worker sent no heartbeat for this long is given to another worker; the
    # heartbeat goes every third of it, and the check for such jobs every 10 s.
    queue_stalled_seconds: float = 30.0
    # Jobs one `examvault worker` runs at once (threads): ingest is half I/O, half CPU.
    queue_concurrency: int = 2
    # How long a PUT waits for the worker's result before answering 503 `queued` (the upload
    # is kept, and its status URL gives the final answer).
    upload_wait_seconds: float = 60.0
    # Where HTTP uploads wait for a worker: with the queue it must be one folder every API and
    # worker machine mounts (NFS, CephFS), not one machine's disk. Default: <spool>/.incoming.
    staging_dir: Path | None = None

    # The HTTP edge against hostile clients (docs/operations.md "Connections and timeouts"):
    # idle time between requests, time to send a request head, the body's pace (each window
    # of HTTP_BODY_TIMEOUT_SECONDS spent waiting must bring HTTP_BODY_MIN_BYTES_PER_SECOND x
    # window bytes, at least one), and how many connections serve holds at once.
    http_keep_alive_seconds: float = 5.0
    http_header_timeout_seconds: float = 10.0
    http_body_timeout_seconds: float = 30.0
    http_body_min_bytes_per_second: int = 1024
    http_max_connections: int = 1000
    # The largest body of any request but a segment push (which has MAX_UPLOAD_BYTES): FastAPI
    # reads a JSON or form body before the bearer check, so this bounds what anyone can make
    # the server hold. 16 MiB: a 10 MiB reference image, a schedule of ~80,000 sittings.
    http_max_body_bytes: int = 16 * 1024 * 1024
    # Behind a proxy (deploy/): Python checks scope and writes the ledger entry, then lets the
    # proxy (local store: X-Accel-Redirect to FOOTAGE_ACCEL_LOCATION, an nginx `internal`
    # location over the objects directory) or the object store (S3: a presigned GET valid
    # FOOTAGE_PRESIGN_SECONDS) move the bytes. Off, the API streams them itself (`make run`).
    footage_offload: bool = False
    footage_accel_location: str = "/_examvault/objects/"
    footage_presign_seconds: int = 60
    # /metrics answers only this bearer token; unset, /metrics is off (404).
    metrics_token: str | None = None
    # Swagger UI at /docs, its assets served from the swagger-ui-bundle-v2 package (no CDN).
    api_docs: bool = True

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # A variable set outright wins over its _FILE twin; both win over `.env`.
        return (
            init_settings,
            env_settings,
            _SecretFiles(settings_cls),
            dotenv_settings,
            file_secret_settings,
        )

    @field_validator("retention_years")
    @classmethod
    def _at_least_three_years(cls, value: int) -> int:
        if value < MINIMUM_RETENTION_YEARS:
            raise ValueError(
                f"EXAMVAULT_RETENTION_YEARS={value} is below the legal minimum: Article 14 of "
                f"the regulation requires exam video to be kept at least "
                f"{MINIMUM_RETENTION_YEARS} years"
            )
        return value

    @field_validator("witnesses")
    @classmethod
    def _witnesses_readable(cls, value: str | None) -> str | None:
        from services.witness.cosignatures import parse_witnesses

        parse_witnesses(value)  # a CosignatureFormatError is a ValueError: names the entry
        return value

    @field_validator("ledger_checkpoint_entries", "ledger_checkpoint_seconds")
    @classmethod
    def _positive_cadence(cls, value: float, info: ValidationInfo) -> float:
        if not 0 < value < float("inf"):
            raise ValueError(
                f"EXAMVAULT_{(info.field_name or '').upper()}={value} must be a positive number: "
                "it bounds how many of the newest ledger entries no checkpoint yet vouches for"
            )
        return value

    @field_validator(
        "s3_connect_timeout_seconds",
        "s3_read_timeout_seconds",
        "database_connect_timeout_seconds",
        "database_pool_timeout_seconds",
        "readiness_interval_seconds",
        "outage_retry_seconds",
        "witness_timeout_seconds",
        "witness_retry_seconds",
        "queue_stalled_seconds",
        "upload_wait_seconds",
        "queue_concurrency",
    )
    @classmethod
    def _positive_wait(cls, value: float, info: ValidationInfo) -> float:
        if not 0 < value < float("inf"):
            raise ValueError(
                f"EXAMVAULT_{(info.field_name or '').upper()}={value} must be a positive number "
                "of seconds: it bounds how long a dependency may keep us waiting"
            )
        return value

    @field_validator("s3_retries", "min_free_bytes", "write_failure_window_seconds")
    @classmethod
    def _not_negative(cls, value: float, info: ValidationInfo) -> float:
        if not 0 <= value < float("inf"):
            raise ValueError(
                f"EXAMVAULT_{(info.field_name or '').upper()}={value} must be zero or more"
            )
        return value

    @field_validator(
        "max_picture_long_side",
        "max_picture_short_side",
        "max_pixel_rate",
        "health_check_budget_seconds",
        "quarantine_budget_bytes",
        "quarantine_retention_days",
    )
    @classmethod
    def _positive_bound(cls, value: float, info: ValidationInfo) -> float:
        if not 0 < value < float("inf"):
            raise ValueError(
                f"EXAMVAULT_{(info.field_name or '').upper()}={value} must be a positive number: "
                "it bounds what one segment may cost to decode"
            )
        return value

    @field_validator(
        "http_keep_alive_seconds",
        "http_header_timeout_seconds",
        "http_body_timeout_seconds",
        "http_max_connections",
        "http_max_body_bytes",
    )
    @classmethod
    def _positive_edge_bound(cls, value: float, info: ValidationInfo) -> float:
        if not 0 < value < float("inf"):
            raise ValueError(
                f"EXAMVAULT_{(info.field_name or '').upper()}={value} must be a positive number: "
                "without it one client can hold a connection for ever"
            )
        return value

    @field_validator("http_body_min_bytes_per_second")
    @classmethod
    def _not_negative_pace(cls, value: int) -> int:
        if value < 0:
            raise ValueError(
                f"EXAMVAULT_HTTP_BODY_MIN_BYTES_PER_SECOND={value} must be 0 or more "
                "(0: only a body with no byte for a whole window is cut)"
            )
        return value

    @field_validator("footage_accel_location")
    @classmethod
    def _location_prefix(cls, value: str) -> str:
        if not (value.startswith("/") and value.endswith("/")):
            raise ValueError(
                f"EXAMVAULT_FOOTAGE_ACCEL_LOCATION={value!r} must start and end with '/': it "
                "is the nginx location the object key is appended to"
            )
        return value

    @field_validator("footage_presign_seconds")
    @classmethod
    def _short_lived(cls, value: int) -> int:
        # A presigned URL is a bearer credential the ledger cannot see used: keep it short.
        if not 0 < value <= 3600:
            raise ValueError(
                f"EXAMVAULT_FOOTAGE_PRESIGN_SECONDS={value} must be between 1 and 3600"
            )
        return value

    @field_validator("metrics_token")
    @classmethod
    def _strong_metrics_token(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        if len(value.strip()) < 16:
            raise ValueError("EXAMVAULT_METRICS_TOKEN must be at least 16 characters")
        return value.strip()

    @field_validator("fault_point")
    @classmethod
    def _faults_only_in_tests(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None or not value.strip():
            return None
        if not info.data.get("test_faults"):
            raise ValueError(
                f"EXAMVAULT_FAULT_POINT={value!r} makes the process kill itself and is for tests "
                "only: refused without EXAMVAULT_TEST_FAULTS=1"
            )
        parse_fault_point(value)
        return value.strip()

    @field_validator("purge_schedule")
    @classmethod
    def _daily_time(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        hours, _, minutes = value.strip().partition(":")
        if not (hours.isdigit() and minutes.isdigit() and int(hours) < 24 and int(minutes) < 60):
            raise ValueError(
                f"EXAMVAULT_PURGE_SCHEDULE={value!r} must be a local time of day, HH:MM"
            )
        return f"{int(hours):02d}:{int(minutes):02d}"

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"EXAMVAULT_TIMEZONE={value!r} is not a known IANA time zone") from exc
        return value

    @cached_property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'examvault.sqlite3').resolve()}"

    @property
    def resolved_storage_url(self) -> str:
        if self.storage_url:
            return self.storage_url
        return f"file://{(self.data_dir / 'objects').resolve()}"

    @property
    def resolved_spool_dir(self) -> Path:
        return (self.spool_dir or self.data_dir / "spool").resolve()

    @property
    def incoming_dir(self) -> Path:
        """HTTP uploads land here until they are evidence; hidden from the spool's camera scan."""
        if self.staging_dir is not None:
            return self.staging_dir.resolve()
        return self.resolved_spool_dir / ".incoming"

    @property
    def uses_job_queue(self) -> bool:
        """Work goes through the PostgreSQL job queue rather than this process's threads."""
        if self.queue == "in_process":
            return False
        return self.resolved_database_url.startswith("postgresql")

    @model_validator(mode="after")
    def _queue_needs_postgres(self) -> Settings:
        if self.queue == "postgres" and not self.resolved_database_url.startswith("postgresql"):
            raise ValueError(
                "EXAMVAULT_QUEUE=postgres needs a PostgreSQL EXAMVAULT_DATABASE_URL: the job "
                "queue lives in PostgreSQL"
            )
        return self

    @property
    def quarantine_dir(self) -> Path:
        return (self.data_dir / "quarantine").resolve()


def load_settings(**overrides: object) -> Settings:
    """Read the settings, turning pydantic's validation report into one clear sentence."""
    from pydantic import ValidationError

    try:
        return Settings(**overrides)
    except ValidationError as exc:
        first = exc.errors()[0]
        message = str(first.get("msg", exc)).removeprefix("Value error, ")
        raise SettingsError(message) from exc
