"""The evidence package's format (docs/exports.md) and its offline verifier.

Kept apart from `services/evidence/exports.py`, which builds packages from the database: a verifier
needs only the ZIP file and the key the centre publishes, so nothing here opens a database, a
blob store or a video. The package carries its own public key, which proves nothing about who
made it: only a trusted key, given by the person verifying, can make a package "verified".
"""

from __future__ import annotations

import binascii
import hashlib
import json
import re
import zipfile
import zlib
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from services.ledger.checkpoints import Checkpoint, CheckpointFormatError, verify_checkpoint
from services.ledger.keys import KEY_ID_DIGITS, key_fingerprint, key_id_for, public_key_from_pem
from services.witness.cosignatures import Cosignature, verify_cosignature
from storage import merkle
from storage.ledger import ENTRY_COLUMNS, entry_hash

FORMAT = "examvault-evidence-export"
FORMAT_VERSION = 1

MANIFEST = "manifest.json"
SIGNATURE = "manifest.sig"
ENTRIES = "ledger/entries.jsonl"
PROOFS = "ledger/proofs.json"
CHECKPOINT = "ledger/checkpoint.json"
PUBLIC_KEY = "ledger/public-key.pem"
# Present when the centre has witnesses: their cosignatures of the checkpoint, as they answered.
COSIGNATURES = "ledger/cosignatures.json"
SEGMENTS_DIR = "segments"

INGEST_ACTION = "segment.ingested"
EXPORT_ACTION = "export.created"

# Exactly the stored columns of a ledger row, so a verifier can recompute its hash.
ENTRY_FIELDS = ENTRY_COLUMNS
_READ_CHUNK = 1024 * 1024

# What a hostile package can make the verifier spend (docs/exports.md, "Bounds"). A manifest
# lists about 600 bytes per segment, so 64 MiB is some 100,000 segments.
MAX_MANIFEST_BYTES = 64 * 1024 * 1024
# Each listed segment and file costs checks: a manifest of empty objects must not buy millions.
MAX_SEGMENTS = 100_000
MAX_LISTED_FILES = 64
# manifest.sig (64 bytes), ledger/checkpoint.json (about 300), ledger/public-key.pem (113).
MAX_SMALL_MEMBER_BYTES = 64 * 1024
# One segment.ingested line is about 900 bytes; the export.created line also lists every
# segment id, so its allowance grows with the manifest's segments.
MAX_ENTRY_LINE_BYTES = 64 * 1024
ENTRY_LINE_BYTES_PER_SEGMENT = 32
# One proof is at most 64 hashes of 64 hex digits, with its seq and punctuation.
MAX_PROOF_BYTES_PER_ENTRY = 8 * 1024
MAX_JSON_DEPTH = 64
# JSON deflates about 3x and video not at all; past 100x a member is a compression bomb.
MAX_INFLATION_RATIO = 100
_INFLATION_FLOOR = 1024 * 1024
_READABLE_METHODS = (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED)
# The end-of-central-directory record sits in the last 22 bytes plus a comment of <= 64 KiB.
_EOCD_SIGNATURE = b"PK\x05\x06"
_EOCD_SEARCH = 22 + 65535
_LOCAL_HEADER_SIGNATURE = b"PK\x03\x04"
# Everything zipfile raises on damaged archives (seen by mutating real packages): a negative
# seek is a ValueError, an encrypted member a RuntimeError, an odd version NotImplementedError.
_ZIP_ERRORS = (
    zipfile.BadZipFile,
    zlib.error,
    OSError,
    EOFError,
    ValueError,
    NotImplementedError,
    RuntimeError,
)
_SHOWN_NAMES = 20


class PackageUnreadable(Exception):
    """Not an evidence package at all (not a ZIP, no manifest): bad input, not a failed check."""


class _Refused(Exception):
    """A member the verifier will not read, or could not: the reason is the FAIL line's detail."""


_FINGERPRINT = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class TrustedKey:
    """The centre's key as the person verifying knows it, from a PEM file or from the
    fingerprint the centre publishes; either way compared by its full SHA-256 fingerprint."""

    fingerprint: str

    @classmethod
    def of(cls, public_key: Ed25519PublicKey) -> TrustedKey:
        return cls(key_fingerprint(public_key))

    @classmethod
    def from_fingerprint(cls, text: str) -> TrustedKey:
        """64 hex digits, any case; colons and spaces between groups are ignored."""
        digits = re.sub(r"[\s:]", "", text).lower()
        if re.fullmatch(r"[0-9a-f]+", digits) and len(digits) == KEY_ID_DIGITS:
            # 64 bits is within reach of a determined forger; the fingerprint is not.
            raise ValueError(
                f"{text!r} is a {KEY_ID_DIGITS}-digit key_id, too short to trust; give the "
                "full 64-digit SHA-256 fingerprint (`examvault ledger key` prints it)"
            )
        if not _FINGERPRINT.fullmatch(digits):
            raise ValueError(
                f"{text!r} is not a key fingerprint: 64 hex digits (SHA-256 of the raw key)"
            )
        return cls(digits)


@dataclass(frozen=True)
class WitnessQuorum:
    """Witness keys the person verifying knows (from the witnesses themselves, not from the
    package) and how many of them must have cosigned the package's checkpoint."""

    keys: tuple[Ed25519PublicKey, ...]
    required: int

    def __post_init__(self) -> None:
        if not 1 <= self.required <= len(self.keys):
            raise ValueError(
                f"{self.required} witnesses required, but {len(self.keys)} witness keys given"
            )


# What a package is, in the words the command prints: only "verified" ties it to the centre.
VERIFIED, INTACT_ORIGIN_NOT_VERIFIED, FAILED = "verified", "intact_origin_not_verified", "failed"


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str = ""

    def line(self) -> str:
        verdict = "OK  " if self.ok else "FAIL"
        return f"{verdict} {self.name}" + (f": {self.detail}" if self.detail else "")


@dataclass
class PackageVerdict:
    checks: list[Check] = field(default_factory=list)
    key_id: str | None = None
    # The key the package claims: SHA-256 of its 32 raw bytes; key_id is the first 16 digits.
    key_fingerprint: str | None = None
    # The key it was compared with; None when the person verifying gave none.
    trusted_fingerprint: str | None = None

    @property
    def intact(self) -> bool:
        """Every check holds: unaltered since it was signed, by whichever key signed it."""
        return bool(self.checks) and all(check.ok for check in self.checks)

    @property
    def origin_verified(self) -> bool:
        return self.trusted_fingerprint is not None and (
            self.key_fingerprint == self.trusted_fingerprint
        )

    @property
    def verified(self) -> bool:
        return self.intact and self.origin_verified

    @property
    def outcome(self) -> str:
        if not self.intact:
            return FAILED
        return VERIFIED if self.origin_verified else INTACT_ORIGIN_NOT_VERIFIED

    @property
    def failed(self) -> list[Check]:
        return [check for check in self.checks if not check.ok]

    def add(self, name: str, ok: bool, detail: str = "") -> bool:
        self.checks.append(Check(name, ok, detail))
        return ok

    def as_json(self) -> dict[str, Any]:
        return {
            "outcome": self.outcome,
            "verified": self.verified,
            "intact": self.intact,
            "origin_verified": self.origin_verified,
            "key_id": self.key_id,
            "key_fingerprint": self.key_fingerprint,
            "trusted_fingerprint": self.trusted_fingerprint,
            "checks": [
                {"check": check.name, "ok": check.ok, "detail": check.detail}
                for check in self.checks
            ],
        }


def entry_line(entry: Mapping[str, Any]) -> str:
    """One ledger entry as a line of entries.jsonl: exactly the stored fields, canonical JSON
    (so `details` stays the very text that was hashed)."""
    return json.dumps(
        {name: entry[name] for name in ENTRY_FIELDS},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )


def recompute_entry_hash(entry: Mapping[str, Any]) -> str:
    """entry_hash from an entries.jsonl line's fields, by docs/ledger.md's formula."""
    return entry_hash(
        seq=entry["seq"],
        recorded_at=datetime.fromisoformat(entry["recorded_at"]),
        actor=entry["actor"],
        action=entry["action"],
        subject_type=entry["subject_type"],
        subject_id=entry["subject_id"],
        details=entry["details"],
        prev_hash=entry["prev_hash"],
    )


def load_json(document: bytes | str) -> Any:
    """json.loads with nesting bounded at MAX_JSON_DEPTH: a ValueError, never a RecursionError
    (json recurses once per level, and so would repr of what it returned)."""
    try:
        value = json.loads(document)
    except RecursionError:
        raise ValueError(f"JSON nested deeper than {MAX_JSON_DEPTH} levels") from None
    pending: list[tuple[dict[str, Any] | list[Any], int]] = (
        [(value, 1)] if isinstance(value, dict | list) else []
    )
    while pending:
        item, depth = pending.pop()
        if depth > MAX_JSON_DEPTH:
            raise ValueError(f"JSON nested deeper than {MAX_JSON_DEPTH} levels")
        children = item.values() if isinstance(item, dict) else item
        pending.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return value


def _shown(names: list[str]) -> str:
    more = len(names) - _SHOWN_NAMES
    return ", ".join(names[:_SHOWN_NAMES]) + (f" and {more} more" if more > 0 else "")


def _admit(info: zipfile.ZipInfo, cap: int, expected_size: int | None = None) -> None:
    """Refuse, from the ZIP's own directory and before inflating a byte, a member that would
    cost more than it may: over its cap, another size than the manifest gives, a compression
    bomb, or a method whose inflation zipfile cannot bound per read (bzip2, LZMA)."""
    if info.flag_bits & 0x1:
        raise _Refused("encrypted; an evidence package is never encrypted")
    if info.compress_type not in _READABLE_METHODS:
        raise _Refused(
            f"compression method {info.compress_type}; the verifier reads only stored or "
            "deflated members"
        )
    if expected_size is not None and info.file_size != expected_size:
        raise _Refused(
            f"the ZIP declares {info.file_size} bytes, the manifest says {expected_size}"
        )
    if info.file_size > cap:
        raise _Refused(f"the ZIP declares {info.file_size} bytes, more than the {cap} allowed")
    if (
        info.compress_type == zipfile.ZIP_DEFLATED
        and info.file_size > _INFLATION_FLOOR
        and info.file_size > MAX_INFLATION_RATIO * max(info.compress_size, 1)
    ):
        raise _Refused(
            f"{info.compress_size} bytes inflate to {info.file_size} (over "
            f"{MAX_INFLATION_RATIO}x): a compression bomb, not read"
        )


def _member_digest(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    with archive.open(info) as reader:
        # zipfile stops at the declared size, so this reads at most what _admit allowed.
        while chunk := reader.read(_READ_CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def _read_member(archive: zipfile.ZipFile, name: str, cap: int) -> bytes:
    """A whole member of at most `cap` bytes; _Refused says why not."""
    try:
        info = archive.getinfo(name)
    except KeyError:
        raise _Refused("missing") from None
    _admit(info, cap)
    try:
        with archive.open(info) as reader:
            # zipfile stops at the declared size, which _admit has just bounded.
            return reader.read()
    except _ZIP_ERRORS as exc:
        raise _Refused(f"cannot be read: {exc}") from exc


def _damage(path: Path, error: Exception) -> str | None:
    """Why a file that begins as a ZIP does not open as one (an interrupted download, most
    often), or None when it does not begin as a ZIP at all."""
    try:
        size = path.stat().st_size
        with path.open("rb") as file:
            head = file.read(len(_LOCAL_HEADER_SIGNATURE))
            file.seek(max(0, size - _EOCD_SEARCH))
            tail = file.read(_EOCD_SEARCH)
    except OSError:
        return None
    if head != _LOCAL_HEADER_SIGNATURE:
        return None
    at = tail.rfind(_EOCD_SIGNATURE)
    comment = int.from_bytes(tail[at + 20 : at + 22], "little") if at >= 0 else 0
    if at < 0 or at + 22 + comment > len(tail):
        return (
            f"package is truncated: the ZIP's central directory is missing ({size} bytes "
            "present; an interrupted download?)"
        )
    return f"the ZIP's central directory is damaged ({error})"


def verify_package(
    path: Path, trusted: TrustedKey | None = None, witnesses: WitnessQuorum | None = None
) -> PackageVerdict:
    """Every check docs/exports.md lists, one `Check` each; never stops at the first failure
    so the report says everything that holds and everything that does not. Without `trusted`
    the best outcome is INTACT_ORIGIN_NOT_VERIFIED."""
    verdict = PackageVerdict()
    if trusted is not None:
        verdict.trusted_fingerprint = trusted.fingerprint
    try:
        archive = zipfile.ZipFile(path)
    except FileNotFoundError as exc:
        raise PackageUnreadable(f"{path}: no such file") from exc
    except OSError as exc:
        raise PackageUnreadable(f"{path}: {exc.strerror or exc}") from exc
    except (zipfile.BadZipFile, NotImplementedError, ValueError, EOFError) as exc:
        damage = _damage(path, exc)
        if damage is None:
            raise PackageUnreadable(f"{path}: not a ZIP file ({exc})") from exc
        # A package cut short is a package that fails its checks, not some other file.
        verdict.add("package is a complete ZIP", False, damage)
        return verdict
    with archive:
        if MANIFEST not in archive.NameToInfo:
            raise PackageUnreadable(f"{path}: no {MANIFEST}; not an examvault evidence package")
        _Verifier(archive, verdict, trusted, witnesses).run()
        return verdict


def _when(timestamp: int) -> str:
    try:
        return datetime.fromtimestamp(timestamp, UTC).isoformat()
    except (OverflowError, OSError, ValueError):
        return f"at {timestamp} (not a representable time)"


def _entry_details(entry: Mapping[str, Any]) -> dict[str, Any]:
    """An entry's details as an object; anything unreadable counts as none (the checks that
    read them then fail by name)."""
    try:
        details = load_json(entry["details"])
    except (ValueError, TypeError, KeyError):
        return {}
    return details if isinstance(details, dict) else {}


class _Verifier:
    def __init__(
        self,
        archive: zipfile.ZipFile,
        verdict: PackageVerdict,
        trusted: TrustedKey | None,
        witnesses: WitnessQuorum | None = None,
    ) -> None:
        self.archive = archive
        self.witnesses = witnesses
        self.manifest_bytes = b""
        self.verdict = verdict
        self.trusted = trusted
        self.key: Ed25519PublicKey | None = None
        self.checkpoint: Checkpoint | None = None
        self.manifest: dict[str, Any] = {}

    def _small(self, name: str) -> bytes | None:
        try:
            return _read_member(self.archive, name, MAX_SMALL_MEMBER_BYTES)
        except _Refused:
            return None

    def run(self) -> None:
        self._members_unique()
        self._key()
        try:
            self.manifest_bytes = _read_member(self.archive, MANIFEST, MAX_MANIFEST_BYTES)
        except _Refused as exc:
            self.verdict.add(f"{MANIFEST} is readable", False, str(exc))
            return
        self._manifest_signature()
        readable = self._manifest_json()
        self._checkpoint()
        self._cosignatures()
        if not readable:
            return
        try:
            self._files()
            entries = self._entries()
            self._segments_recorded(entries)
            self._export_recorded(entries)
            self._inclusion(entries)
        except (KeyError, TypeError, AttributeError, ValueError, OverflowError) as exc:
            # Only a manifest that was not written by examvault gets here; its signature
            # check has failed already, this says why the rest could not be checked.
            self.verdict.add(f"{MANIFEST} structure", False, f"unexpected content: {exc!r}")

    def _members_unique(self) -> None:
        # Counted once each: a ZIP of many thousand tiny members must not cost their square.
        repeated = sorted(n for n, times in Counter(self.archive.namelist()).items() if times > 1)
        # A second member of the same name could show a reader other bytes than were checked.
        self.verdict.add(
            "package members are unique",
            not repeated,
            f"repeated: {_shown(repeated)}" if repeated else "",
        )

    def _key(self) -> None:
        pem = self._small(PUBLIC_KEY)
        try:
            self.key = public_key_from_pem(pem) if pem is not None else None
        except (ValueError, UnsupportedAlgorithm):
            self.key = None
        if self.key is None:
            self.verdict.add(f"public key {PUBLIC_KEY}", False, "missing or not an Ed25519 key")
            return
        claimed = key_fingerprint(self.key)
        self.verdict.key_id = key_id_for(self.key)
        self.verdict.key_fingerprint = claimed
        if self.trusted is None:
            return
        matches = claimed == self.trusted.fingerprint
        self.verdict.add(
            "package key is the trusted key",
            matches,
            f"fingerprint {claimed}"
            if matches
            else f"package key fingerprint {claimed}, trusted key {self.trusted.fingerprint}",
        )

    def _manifest_signature(self) -> None:
        name = f"manifest signature ({SIGNATURE}, Ed25519 over {MANIFEST})"
        signature = self._small(SIGNATURE)
        if signature is None:
            self.verdict.add(name, False, f"{SIGNATURE} is missing")
            return
        if self.key is None:
            self.verdict.add(name, False, "no usable public key to check it with")
            return
        try:
            self.key.verify(signature, self.manifest_bytes)
        except InvalidSignature:
            self.verdict.add(name, False, f"does not verify: {MANIFEST} or {SIGNATURE} altered")
            return
        self.verdict.add(name, True)

    def _manifest_json(self) -> bool:
        try:
            manifest = load_json(self.manifest_bytes)
        except ValueError as exc:
            return self.verdict.add(f"{MANIFEST} is readable", False, f"not JSON: {exc}")
        if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
            return self.verdict.add(f"{MANIFEST} is readable", False, f"not a {FORMAT} manifest")
        if manifest.get("format_version") != FORMAT_VERSION:
            return self.verdict.add(
                f"{MANIFEST} is readable",
                False,
                f"format version {manifest.get('format_version')!r}; this verifier reads "
                f"{FORMAT_VERSION}",
            )
        segments, files = manifest.get("segments", []), manifest.get("files", [])
        if not isinstance(segments, list) or not isinstance(files, list):
            return self.verdict.add(
                f"{MANIFEST} is readable", False, "segments and files are not lists"
            )
        if len(segments) > MAX_SEGMENTS or len(files) > MAX_LISTED_FILES:
            return self.verdict.add(
                f"{MANIFEST} is readable",
                False,
                f"lists {len(segments)} segments and {len(files)} files; the verifier reads at "
                f"most {MAX_SEGMENTS} and {MAX_LISTED_FILES}",
            )
        self.manifest = manifest
        return True

    def _checkpoint(self) -> None:
        name = f"checkpoint signature ({CHECKPOINT})"
        document = self._small(CHECKPOINT)
        if document is None:
            self.verdict.add(name, False, f"{CHECKPOINT} is missing")
            return
        try:
            self.checkpoint = Checkpoint.from_json(load_json(document))
        except ValueError as exc:
            self.verdict.add(name, False, f"not a checkpoint: not JSON: {exc}")
            return
        except CheckpointFormatError as exc:
            self.verdict.add(name, False, f"not a checkpoint: {exc}")
            return
        if self.key is None:
            self.verdict.add(name, False, "no usable public key to check it with")
            return
        self.verdict.add(
            name,
            verify_checkpoint(self.checkpoint, self.key),
            f"size {self.checkpoint.size}, root {self.checkpoint.root}",
        )
        if not self.manifest:
            return
        claimed = self.manifest.get("ledger", {}).get("checkpoint", {})
        self.verdict.add(
            "checkpoint is the one the manifest names",
            claimed.get("size") == self.checkpoint.size
            and claimed.get("root") == self.checkpoint.root,
            "" if claimed.get("root") == self.checkpoint.root else "size or root differ",
        )

    def _cosignatures(self) -> None:
        """Each known witness's cosignature of the checkpoint, and whether enough of them hold;
        checked only when the person verifying named witnesses, whose keys come from them."""
        if self.witnesses is None:
            return
        quorum = f"{self.witnesses.required} of {len(self.witnesses.keys)} witnesses cosigned"
        document = self._small(COSIGNATURES)
        found: dict[str, Cosignature] = {}
        problem = ""
        if document is None:
            problem = f"{COSIGNATURES} is missing: the centre had no witnesses"
        else:
            try:
                listed = load_json(document).get("cosignatures", [])
                for item in listed if isinstance(listed, list) else []:
                    cosignature = Cosignature.from_json(item)
                    found.setdefault(cosignature.witness_key_id, cosignature)
            except (ValueError, AttributeError) as exc:
                problem = f"{COSIGNATURES} is unreadable: {exc}"
        if problem:
            self.verdict.add(quorum, False, problem)
            return
        holding = 0
        for key in self.witnesses.keys:
            key_id = key_id_for(key)
            name = f"cosignature of witness {key_id}"
            cosignature = found.get(key_id)
            if cosignature is None:
                # Not a failure by itself: a witness may have been down; the quorum decides.
                self.verdict.add(name, True, "absent")
                continue
            if self.checkpoint is None:
                self.verdict.add(name, False, "no readable checkpoint")
                continue
            why = verify_cosignature(cosignature, self.checkpoint, key)
            holding += why is None
            self.verdict.add(name, why is None, why or f"signed {_when(cosignature.timestamp)}")
        self.verdict.add(
            quorum,
            holding >= self.witnesses.required,
            f"{holding} valid cosignature(s) of {len(self.witnesses.keys)} known witnesses",
        )

    def _expected_files(self) -> dict[str, tuple[str, int]]:
        expected: dict[str, tuple[str, int]] = {}
        for item in self.manifest.get("files", []):
            expected[item["path"]] = (item["sha256"], item["size"])
        for segment in self.manifest.get("segments", []):
            if segment.get("status") == "included":
                expected[segment["file"]] = (segment["sha256"], segment["size"])
        return expected

    def _files(self) -> None:
        expected = self._expected_files()
        present = set(self.archive.namelist())
        for path, (sha256, size) in sorted(expected.items()):
            name = f"file {path}"
            if path not in present:
                self.verdict.add(name, False, "listed in the manifest but not in the package")
                continue
            if not isinstance(size, int) or isinstance(size, bool) or size < 0:
                self.verdict.add(name, False, f"the manifest gives no size (size {size!r:.40})")
                continue
            try:
                info = self.archive.getinfo(path)
                # The manifest's size is the cap: nothing past it is inflated or hashed.
                _admit(info, size, size)
                actual_sha, actual_size = _member_digest(self.archive, info)
            except _Refused as exc:
                self.verdict.add(name, False, str(exc))
                continue
            except _ZIP_ERRORS as exc:
                self.verdict.add(name, False, f"cannot be read: {exc}")
                continue
            if actual_size != size:
                self.verdict.add(name, False, f"{actual_size} bytes, the manifest says {size}")
            elif actual_sha != sha256:
                self.verdict.add(name, False, f"sha256 {actual_sha}, the manifest says {sha256}")
            else:
                self.verdict.add(name, True, f"sha256 {sha256}, {size} bytes")
        for segment in self.manifest.get("segments", []):
            if segment.get("status") == "purged":
                self.verdict.add(
                    f"segment {segment['id']} purged",
                    segment.get("file") is None,
                    f"listed as purged {segment.get('purged_at')} (tombstone sha256 "
                    f"{segment.get('sha256')}); no file expected",
                )
        unlisted = sorted(present - set(expected) - {MANIFEST, SIGNATURE})
        self.verdict.add(
            "no member outside the manifest",
            not unlisted,
            f"unlisted: {_shown(unlisted)}" if unlisted else "",
        )

    def _entries(self) -> dict[int, dict[str, Any]]:
        """Read line by line: at most one line per segment ingest plus the export entry, each
        of a bounded length, so memory and checks stay proportional to the manifest."""
        segments = len(self.manifest.get("segments", []))
        most_lines = segments + 1
        line_cap = MAX_ENTRY_LINE_BYTES + ENTRY_LINE_BYTES_PER_SEGMENT * segments
        name = f"ledger entries ({ENTRIES})"
        entries: dict[int, dict[str, Any]] = {}
        try:
            info = self.archive.getinfo(ENTRIES)
            _admit(info, most_lines * line_cap)
            with self.archive.open(info) as reader:
                self._entry_lines(reader, most_lines, line_cap, entries)
        except KeyError:
            self.verdict.add(name, False, "missing")
        except _Refused as exc:
            self.verdict.add(name, False, str(exc))
        except _ZIP_ERRORS as exc:
            self.verdict.add(name, False, f"cannot be read: {exc}")
        return entries

    def _entry_lines(
        self,
        reader: zipfile.ZipExtFile,
        most_lines: int,
        line_cap: int,
        entries: dict[int, dict[str, Any]],
    ) -> None:
        number = 0
        while raw := reader.readline(line_cap + 1):
            number += 1
            if number > most_lines:
                self.verdict.add(
                    f"ledger entries ({ENTRIES})",
                    False,
                    f"more than the {most_lines} lines the manifest accounts for; not read further",
                )
                return
            if len(raw) > line_cap:
                self.verdict.add(
                    f"ledger entry on line {number}",
                    False,
                    f"longer than {line_cap} bytes; not read further",
                )
                return
            line = raw.decode("utf-8", "replace")
            if not line.strip():
                continue
            try:
                entry = load_json(line)
                if not isinstance(entry, dict) or not isinstance(entry.get("seq"), int):
                    raise ValueError("not an entry")
                recomputed = recompute_entry_hash(entry)
            except (ValueError, KeyError, TypeError, AttributeError, OverflowError) as exc:
                self.verdict.add(f"ledger entry on line {number}", False, f"unreadable: {exc}")
                continue
            seq = entry["seq"]
            entries[seq] = entry
            self.verdict.add(
                f"ledger entry seq {seq} ({entry.get('action')}) hash recomputes",
                recomputed == entry.get("entry_hash"),
                "" if recomputed == entry.get("entry_hash") else "its fields were altered",
            )
        return entries

    def _segments_recorded(self, entries: dict[int, dict[str, Any]]) -> None:
        for segment in self.manifest.get("segments", []):
            name = f"segment {segment.get('id')} ingest entry records its sha256"
            seq = segment.get("ingest_ledger_seq")
            entry = entries.get(seq) if isinstance(seq, int) else None
            if entry is None:
                self.verdict.add(name, False, f"no ingest ledger entry (seq {seq}) in {ENTRIES}")
                continue
            details = _entry_details(entry)
            problems = []
            if entry.get("action") != INGEST_ACTION:
                problems.append(f"entry {seq} is {entry.get('action')!r}, not {INGEST_ACTION}")
            if entry.get("subject_id") != str(segment.get("id")):
                problems.append(f"entry {seq} is about segment {entry.get('subject_id')}")
            if details.get("sha256") != segment.get("sha256"):
                problems.append(f"entry {seq} records sha256 {details.get('sha256')}")
            if details.get("size") != segment.get("size"):
                problems.append(f"entry {seq} records {details.get('size')} bytes")
            self.verdict.add(name, not problems, "; ".join(problems) or f"seq {seq}")

    def _export_recorded(self, entries: dict[int, dict[str, Any]]) -> None:
        export = self.manifest.get("export", {})
        seq = export.get("ledger_seq")
        name = f"export entry seq {seq} records this export"
        entry = entries.get(seq) if isinstance(seq, int) else None
        if entry is None:
            self.verdict.add(name, False, f"no {EXPORT_ACTION} entry in {ENTRIES}")
            return
        details = _entry_details(entry)
        included = [
            s.get("id") for s in self.manifest.get("segments", []) if s.get("status") == "included"
        ]
        problems = []
        if entry.get("action") != EXPORT_ACTION:
            problems.append(f"entry {seq} is {entry.get('action')!r}")
        if details.get("export_id") != export.get("id"):
            problems.append("another export id")
        if entry.get("actor") != export.get("exported_by"):
            problems.append(f"exported by {entry.get('actor')!r}")
        if details.get("reason") != export.get("reason"):
            problems.append("another reason")
        if details.get("segments") != included:
            problems.append("other segments")
        self.verdict.add(name, not problems, "; ".join(problems))

    def _inclusion(self, entries: dict[int, dict[str, Any]]) -> None:
        cap = MAX_PROOF_BYTES_PER_ENTRY * (len(self.manifest.get("segments", [])) + 1)
        try:
            document = _read_member(self.archive, PROOFS, cap)
            proofs = {item["seq"]: item for item in load_json(document)["proofs"]}
        except _Refused as exc:
            self.verdict.add(f"inclusion proofs ({PROOFS})", False, str(exc))
            return
        except (ValueError, KeyError, TypeError) as exc:
            self.verdict.add(f"inclusion proofs ({PROOFS})", False, f"missing or unreadable: {exc}")
            return
        checkpoint = self.checkpoint
        for seq in sorted(entries):
            name = f"inclusion proof of entry seq {seq} in the checkpoint"
            if checkpoint is None:
                self.verdict.add(name, False, "no readable checkpoint")
                continue
            item = proofs.get(seq)
            if item is None:
                self.verdict.add(name, False, f"no proof in {PROOFS}")
                continue
            try:
                # The root comes from the signed checkpoint, never from the proof file.
                holds = merkle.verify_inclusion(
                    bytes.fromhex(entries[seq]["entry_hash"]),
                    seq - 1,
                    checkpoint.size,
                    [bytes.fromhex(node) for node in item["proof"]],
                    bytes.fromhex(checkpoint.root),
                )
            except (ValueError, KeyError, TypeError, binascii.Error):
                holds = False
            self.verdict.add(
                name,
                holds,
                f"size {checkpoint.size}" if holds else "does not lead to the signed root",
            )
