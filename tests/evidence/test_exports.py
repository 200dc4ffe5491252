"""Evidence exports through the service functions and `examvault verify-export`: real videos
ingested by the real pipeline, on SQLite and PostgreSQL; every tampering the verifier must
name; a forged package re-signed with another key, which only a trusted key exposes; aborts on
damaged bytes; a stream that reads the footage lazily."""

from __future__ import annotations

import hashlib
import io
import json
import os
import stat
import subprocess
import uuid
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import select, update

from services.access.people import assign, create_user
from services.access.scopes import Subject
from services.cli import main
from services.context import Services
from services.evidence.exports import (
    EvidenceMissing,
    ExportAborted,
    FootageNotAllowed,
    InvalidReason,
    PreparedExport,
    SittingNotVisible,
    _zip_path,
    prepare_export,
    stream_export,
)
from services.evidence.package import (
    CHECKPOINT,
    ENTRIES,
    INTACT_ORIGIN_NOT_VERIFIED,
    MANIFEST,
    PROOFS,
    PUBLIC_KEY,
    SIGNATURE,
    VERIFIED,
    PackageUnreadable,
    TrustedKey,
    entry_line,
    recompute_entry_hash,
    verify_package,
)
from services.ingest.pipeline import Arrival, Outcome
from services.ledger.checkpoints import latest_stored_checkpoint, sign_checkpoint
from services.ledger.keys import CheckpointSigner, load_or_create_signer
from services.registry import import_registry
from services.settings import Settings
from storage import ledger, merkle
from storage.blobs import BlobStore
from storage.models import (
    Assignment,
    Camera,
    Finding,
    LedgerEntry,
    PurgeRun,
    Room,
    Segment,
    Sitting,
    Tombstone,
)
from storage.stores import init_blob_store
from tests.conftest import CAMERA_BACK, CAMERA_FRONT, REGISTRY, ROOM, VideoFactory
from tests.processes import ROOT
from tests.s3server import ACCESS_KEY, SECRET_KEY

SITTING = "EX-2026-001"
START = datetime(2026, 11, 24, 1, 0, tzinfo=UTC)  # 09:00 in Shanghai
ADMIN = Subject(name="centre", role="admin")
REASON = "投诉调查 complaint 2026-17"


@dataclass(frozen=True)
class Footage:
    """What the fixture ingested: segment id -> original bytes; the purged segment's id."""

    originals: dict[int, bytes]
    purged_id: int


def _ingest(services: Services, source: Path, camera: str, start: datetime) -> Segment:
    folder = services.settings.resolved_spool_dir / camera
    folder.mkdir(parents=True, exist_ok=True)
    name = f"{start.astimezone(UTC):%Y%m%dT%H%M%S}Z_{camera[-1]}.mp4"
    path = folder / name
    path.write_bytes(source.read_bytes())
    result = services.pipeline.ingest(
        Arrival(
            path=path,
            camera_code=camera,
            file_name=name,
            source="spool",
            received_at=start + timedelta(minutes=5),
        )
    )
    assert result.outcome is Outcome.STORED, result.reason
    assert result.segment is not None
    return result.segment


def record_sitting_with_footage(
    services: Services, make_video: VideoFactory, *, delete_purged_blob: bool = True
) -> Footage:
    """A six-second sitting: front camera 0-3 s and 3-6 s (the second one purged), back
    camera 0-3 s; one active and one withdrawn finding. S3 refuses to delete a locked object
    years early, so there the purged segment's blob stays (the export must not read it)."""
    with services.db.write() as session:
        room_id = session.scalar(select(Room.id).where(Room.code == ROOM))
        assert room_id is not None
        session.add(
            Sitting(
                code=SITTING,
                room_id=room_id,
                kind="theory",
                occupation="电工",
                level="四级",
                starts_at=START,
                ends_at=START + timedelta(seconds=6),
            )
        )
    originals: dict[int, bytes] = {}
    for index, (camera, offset) in enumerate(
        [(CAMERA_FRONT, 0), (CAMERA_FRONT, 3), (CAMERA_BACK, 0)]
    ):
        video = make_video(f"v{index}.mp4", seconds=3, seed=index)
        segment = _ingest(services, video, camera, START + timedelta(seconds=offset))
        originals[segment.id] = video.read_bytes()
    purged = sorted(originals)[1]
    _purge(services, purged, delete_blob=delete_purged_blob)
    del originals[purged]
    _findings(services)
    return Footage(originals, purged)


def _purge(services: Services, segment_id: int, *, delete_blob: bool) -> None:
    """What the retention job leaves behind, without waiting three years for it."""
    now = datetime.now(UTC)
    with services.db.write() as session:
        segment = session.get_one(Segment, segment_id)
        session.add(
            PurgeRun(
                id="run-1",
                as_of=now,
                started_at=now,
                finished_at=now,
                actor="test",
                planned=1,
                planned_bytes=segment.size_bytes,
                purged=1,
            )
        )
        session.flush()
        session.add(
            Tombstone(
                segment_id=segment.id,
                run_id="run-1",
                sha256=segment.sha256,
                size_bytes=segment.size_bytes,
                blob_key=segment.blob_key,
                starts_at=segment.starts_at,
                ends_at=segment.ends_at,
                expires_at=segment.expires_at,
                purged_at=now,
                reason="retention expired",
                blob_deleted_at=now,
            )
        )
        segment.purged_at = now
        key = segment.blob_key
    if delete_blob:
        services.store.delete(key)


def _findings(services: Services) -> None:
    now = datetime.now(UTC)
    with services.db.write() as session:
        sitting_id = session.scalar(select(Sitting.id).where(Sitting.code == SITTING))
        camera_id = session.scalar(select(Camera.id).where(Camera.code == CAMERA_FRONT))
        assert sitting_id is not None and camera_id is not None
        for text, withdrawn in (("考生离座", None), ("误记", now)):
            session.add(
                Finding(
                    sitting_id=sitting_id,
                    camera_id=camera_id,
                    category="other",
                    observed_from=START + timedelta(seconds=1),
                    observed_until=None,
                    text=text,
                    author="supervisor:zhang",
                    created_at=now,
                    updated_at=now,
                    revision=1,
                    withdrawn_at=withdrawn,
                )
            )


@pytest.fixture
def footage(registered: Services, make_video: VideoFactory) -> Footage:
    return record_sitting_with_footage(registered, make_video)


def _prepare(services: Services, subject: Subject = ADMIN, reason: str = REASON) -> PreparedExport:
    return prepare_export(
        services.db,
        services.store,
        services.settings,
        load_or_create_signer(services.settings.data_dir),
        sitting_code=SITTING,
        subject=subject,
        reason=reason,
    )


def _export(services: Services, folder: Path) -> Path:
    prepared = _prepare(services)
    path = folder / prepared.file_name
    path.write_bytes(b"".join(stream_export(prepared, services.db, services.store)))
    return path


def _rewrite(package: Path, member: str, alter: Callable[[bytes], bytes]) -> Path:
    """A copy of the package with one member's bytes altered (a well-formed ZIP otherwise)."""
    target = package.with_name(f"altered-{member.replace('/', '_')}.zip")
    with zipfile.ZipFile(package) as source, zipfile.ZipFile(target, "w") as copy:
        for info in source.infolist():
            data = source.read(info.filename)
            copy.writestr(info, alter(data) if info.filename == member else data)
    return target


def _flip(data: bytes, at: int) -> bytes:
    return data[:at] + bytes([data[at] ^ 0x01]) + data[at + 1 :]


def _flip_in_value(data: bytes, value: str) -> bytes:
    """Change the first character of a JSON string value (hex or base64) to another character
    of both alphabets: one byte differs and the document stays well-formed. A digit, because
    hex is read case-blind: turning "b" into "B" would change no bit of the value."""
    at = data.index(value.encode("ascii"))
    return data[:at] + (b"0" if data[at : at + 1] != b"0" else b"1") + data[at + 1 :]


def _flip_proof(data: bytes) -> bytes:
    return _flip_in_value(data, json.loads(data)["proofs"][0]["proof"][0])


def _flip_checkpoint_signature(data: bytes) -> bytes:
    return _flip_in_value(data, json.loads(data)["signature"])


def _failed(package: Path) -> list[str]:
    return [check.name for check in verify_package(package).failed]


def _centre(services: Services) -> CheckpointSigner:
    return load_or_create_signer(services.settings.data_dir)


def _pem_file(folder: Path, signer: CheckpointSigner, name: str = "centre.pem") -> Path:
    path = folder / name
    path.write_text(signer.public_key_pem)
    return path


def _forge_without_a_segment(package: Path) -> tuple[Path, int]:
    """What anyone with a key of their own can make of a genuine package: one segment taken
    out, the export entry rewritten to match, a new tree, checkpoint, proofs, manifest and
    signature, all by a fresh key shipped inside the ZIP. Returns it and the removed id."""
    forger = CheckpointSigner(Ed25519PrivateKey.generate())
    with zipfile.ZipFile(package) as source:
        members = {name: source.read(name) for name in source.namelist()}
    manifest = json.loads(members[MANIFEST])
    victim = next(s for s in manifest["segments"] if s["status"] == "included")
    manifest["segments"].remove(victim)
    del members[victim["file"]]
    entries = [json.loads(line) for line in members[ENTRIES].decode().splitlines()]
    entries = [entry for entry in entries if entry["seq"] != victim["ingest_ledger_seq"]]
    for entry in entries:
        if entry["action"] == "export.created":
            details = json.loads(entry["details"])
            details["segments"].remove(victim["id"])
            entry["details"] = json.dumps(details, ensure_ascii=False)
            entry["entry_hash"] = recompute_entry_hash(entry)
    # The forger cannot know the other leaves of the real ledger, and needs not to.
    size = max(entry["seq"] for entry in entries)
    leaves = [hashlib.sha256(b"filler %d" % index).digest() for index in range(size)]
    for entry in entries:
        leaves[entry["seq"] - 1] = bytes.fromhex(entry["entry_hash"])
    checkpoint = sign_checkpoint(forger, size, merkle.tree_hash(leaves))
    proofs = [
        {"seq": e["seq"], "proof": [n.hex() for n in merkle.inclusion_proof(leaves, e["seq"] - 1)]}
        for e in entries
    ]
    members[ENTRIES] = "".join(entry_line(entry) + "\n" for entry in entries).encode()
    members[PROOFS] = json.dumps({"proofs": proofs}).encode()
    members[CHECKPOINT] = checkpoint.to_bytes()
    members[PUBLIC_KEY] = forger.public_key_pem.encode()
    manifest["ledger"]["checkpoint"].update(
        size=checkpoint.size,
        root=checkpoint.root,
        timestamp=checkpoint.timestamp,
        key_id=checkpoint.key_id,
    )
    manifest["signature"]["key_id"] = forger.key_id
    for item in manifest["files"]:
        item["sha256"] = hashlib.sha256(members[item["path"]]).hexdigest()
        item["size"] = len(members[item["path"]])
    members[MANIFEST] = json.dumps(manifest, ensure_ascii=False, indent=2).encode()
    members[SIGNATURE] = forger.sign(members[MANIFEST])
    forged = package.with_name("forged.zip")
    with zipfile.ZipFile(forged, "w") as copy:
        for name in (MANIFEST, SIGNATURE, *(n for n in members if n not in (MANIFEST, SIGNATURE))):
            copy.writestr(name, members[name])
    return forged, victim["id"]


def test_package_verifies_and_carries_the_footage_byte_for_byte(
    footage: Footage, registered: Services, tmp_path: Path
) -> None:
    package = _export(registered, tmp_path)

    signer = _centre(registered)
    verdict = verify_package(package, TrustedKey.of(signer.public_key))
    assert verdict.verified, [check.line() for check in verdict.failed]
    assert verdict.key_id == signer.key_id and verdict.key_fingerprint == signer.fingerprint
    with zipfile.ZipFile(package) as archive:
        names = archive.namelist()
        manifest = json.loads(archive.read(MANIFEST))
        assert names[0] == MANIFEST  # first, so a reader sees what to expect before the footage
        assert all(info.compress_type == zipfile.ZIP_STORED for info in archive.infolist())
        included = [s for s in manifest["segments"] if s["status"] == "included"]
        assert {s["id"] for s in included} == set(footage.originals)
        for segment in included:
            assert segment["file"].startswith(f"segments/{segment['camera']}/")
            assert archive.read(segment["file"]) == footage.originals[segment["id"]]
    purged = [s for s in manifest["segments"] if s["status"] == "purged"]
    assert [s["id"] for s in purged] == [footage.purged_id]
    assert purged[0]["file"] is None and purged[0]["tombstone"]["reason"] == "retention expired"
    assert {f["text"]: f["status"] for f in manifest["findings"]} == {
        "考生离座": "active",
        "误记": "withdrawn",
    }
    assert manifest["sitting"]["starts_at"] == "2026-11-24T09:00:00.000+08:00"
    assert manifest["coverage"]["sitting"] == SITTING
    assert manifest["export"]["exported_by"] == "admin:centre"
    assert manifest["export"]["reason"] == REASON
    assert datetime.fromisoformat(manifest["export"]["exported_at"]).utcoffset() is not None
    assert manifest["signature"]["key_id"] == signer.key_id

    with registered.db.read() as session:
        entry = session.get_one(LedgerEntry, manifest["export"]["ledger_seq"])
        assert entry.action == "export.created" and entry.actor == "admin:centre"
        details = json.loads(entry.details)
        assert details["reason"] == REASON
        assert sorted(details["segments"]) == sorted(footage.originals)
        assert details["total_bytes"] == sum(len(b) for b in footage.originals.values())
        assert ledger.verify(session).ok
    stored = latest_stored_checkpoint(registered.store)
    assert stored is not None and stored.size == manifest["ledger"]["checkpoint"]["size"]


def test_proofs_are_the_rfc_9162_paths(
    footage: Footage, registered: Services, tmp_path: Path
) -> None:
    with zipfile.ZipFile(_export(registered, tmp_path)) as archive:
        proofs = json.loads(archive.read(PROOFS))["proofs"]
        size = json.loads(archive.read(CHECKPOINT))["size"]
    with registered.db.read() as session:
        leaves = [
            bytes.fromhex(digest)
            for digest in session.scalars(
                select(LedgerEntry.entry_hash)
                .where(LedgerEntry.seq <= size)
                .order_by(LedgerEntry.seq)
            )
        ]
    assert len(proofs) == 4  # three ingests (the purged one too) and the export itself
    for item in proofs:
        expected = merkle.inclusion_proof(leaves, item["seq"] - 1)
        assert [bytes.fromhex(node) for node in item["proof"]] == expected


@pytest.mark.parametrize(
    ("member", "alter", "failing"),
    [
        (
            "segments/T1-S1-R1-F/",
            lambda data: _flip(data, len(data) // 2),
            "file segments/T1-S1-R1-F/20261124T010000Z_F.mp4",
        ),
        (
            MANIFEST,
            lambda data: data.replace(b"complaint", b"complaiNt"),
            "manifest signature (manifest.sig, Ed25519 over manifest.json)",
        ),
        (PROOFS, _flip_proof, "inclusion proof of entry seq "),
        (CHECKPOINT, _flip_checkpoint_signature, "checkpoint signature (ledger/checkpoint.json)"),
    ],
    ids=["video", "manifest", "proof", "checkpoint-signature"],
)
def test_one_altered_byte_is_caught_and_named(
    footage: Footage,
    registered: Services,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    member: str,
    alter: Callable[[bytes], bytes],
    failing: str,
) -> None:
    package = _export(registered, tmp_path)
    with zipfile.ZipFile(package) as archive:
        target = next(name for name in archive.namelist() if name.startswith(member))
        original = archive.read(target)
    assert sum(a != b for a, b in zip(original, alter(original), strict=True)) == 1
    altered = _rewrite(package, target, alter)
    failed = _failed(altered)
    assert any(name.startswith(failing) for name in failed), failed
    assert main(["verify-export", str(altered)]) == 1
    out = capsys.readouterr().out
    assert f"FAIL {failing}" in out and "export DOES NOT verify" in out


def test_a_missing_footage_file_an_extra_member_and_an_edited_entry_are_caught(
    footage: Footage, registered: Services, tmp_path: Path
) -> None:
    package = _export(registered, tmp_path)
    with zipfile.ZipFile(package) as archive:
        front = next(n for n in archive.namelist() if n.startswith("segments/T1-S1-R1-F/"))
        entries = archive.read(ENTRIES)
    first = json.loads(entries.splitlines()[0])
    edited = tmp_path / "edited.zip"
    with zipfile.ZipFile(package) as source, zipfile.ZipFile(edited, "w") as copy:
        for info in source.infolist():
            data = source.read(info.filename)
            if info.filename == front:
                continue  # footage withheld
            if info.filename == ENTRIES:
                data = data.replace(b'\\"size\\":', b'\\"size\\": ', 1)  # details text edited
            copy.writestr(info, data)
        copy.writestr("segments/T1-S1-R1-F/extra.mp4", b"not evidence")
    failed = _failed(edited)
    assert f"file {front}" in failed
    assert "no member outside the manifest" in failed
    assert f"ledger entry seq {first['seq']} (segment.ingested) hash recomputes" in failed


def test_a_forged_package_without_a_trusted_key_is_never_verified(
    footage: Footage, registered: Services, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    forged, removed = _forge_without_a_segment(_export(registered, tmp_path))
    verdict = verify_package(forged)
    # Internally consistent: nothing in the package itself can expose the forgery.
    assert verdict.intact, [check.line() for check in verdict.failed]
    with zipfile.ZipFile(forged) as archive:
        listed = {s["id"] for s in json.loads(archive.read(MANIFEST))["segments"]}
    assert removed in footage.originals and removed not in listed
    assert verdict.outcome == INTACT_ORIGIN_NOT_VERIFIED and not verdict.verified

    assert main(["verify-export", str(forged)]) == 3
    out = capsys.readouterr().out
    assert "export intact, origin not verified" in out and "export verified" not in out
    assert f"key fingerprint {verdict.key_fingerprint}" in out
    assert verdict.key_fingerprint != _centre(registered).fingerprint
    assert main(["verify-export", str(forged), "--json"]) == 3
    report = json.loads(capsys.readouterr().out)
    assert (report["outcome"], report["verified"]) == (INTACT_ORIGIN_NOT_VERIFIED, False)


@pytest.mark.parametrize("given", ["pem", "fingerprint"])
def test_a_forged_package_is_refused_against_the_centres_key(
    footage: Footage,
    registered: Services,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    given: str,
) -> None:
    forged, _ = _forge_without_a_segment(_export(registered, tmp_path))
    centre = _centre(registered)
    key = (
        ["--key", str(_pem_file(tmp_path, centre))]
        if given == "pem"
        else ["--key-fingerprint", centre.fingerprint]
    )
    assert main(["verify-export", str(forged), *key]) == 1
    out = capsys.readouterr().out
    assert "FAIL package key is the trusted key" in out
    assert "export DOES NOT verify: 1 of" in out


@pytest.mark.parametrize("given", ["pem", "fingerprint", "fingerprint-with-colons"])
def test_a_genuine_package_with_the_centres_key_is_verified(
    footage: Footage,
    registered: Services,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    given: str,
) -> None:
    package = _export(registered, tmp_path)
    centre = _centre(registered)
    grouped = ":".join(centre.fingerprint[at : at + 4] for at in range(0, 64, 4)).upper()
    key = {
        "pem": ["--key", str(_pem_file(tmp_path, centre))],
        "fingerprint": ["--key-fingerprint", centre.fingerprint],
        "fingerprint-with-colons": ["--key-fingerprint", grouped],
    }[given]
    assert main(["verify-export", str(package), *key]) == 0
    out = capsys.readouterr().out
    assert "OK   package key is the trusted key" in out
    assert out.splitlines()[-1].startswith("export verified: all")
    assert main(["verify-export", str(package), *key, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert (report["outcome"], report["verified"]) == (VERIFIED, True)
    assert report["trusted_fingerprint"] == centre.fingerprint


def test_a_genuine_package_without_a_key_is_intact_with_its_fingerprint_printed(
    footage: Footage, registered: Services, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    package = _export(registered, tmp_path)
    assert main(["verify-export", str(package)]) == 3
    out = capsys.readouterr().out
    assert f"KEY  the package claims key fingerprint {_centre(registered).fingerprint}" in out
    assert out.splitlines()[-1].startswith("export intact, origin not verified: all")
    assert "export verified" not in out


def test_the_key_the_centre_publishes_with_ledger_key_verifies_its_packages(
    footage: Footage,
    registered: Services,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    package = _export(registered, tmp_path)
    monkeypatch.setenv("EXAMVAULT_DATA_DIR", str(registered.settings.data_dir))
    monkeypatch.setenv("EXAMVAULT_DATABASE_URL", registered.settings.resolved_database_url)
    assert main(["ledger", "key"]) == 0
    published = capsys.readouterr().out
    centre = _centre(registered)
    assert f"fingerprint (SHA-256 of the raw Ed25519 key): {centre.fingerprint}" in published
    saved = tmp_path / "published.txt"
    saved.write_text(published)  # the whole output, as an operator would save it
    assert main(["verify-export", str(package), "--key", str(saved)]) == 0
    capsys.readouterr()
    assert main(["ledger", "key", "--json"]) == 0
    described = json.loads(capsys.readouterr().out)
    assert (described["fingerprint"], described["key_id"]) == (centre.fingerprint, centre.key_id)

    monkeypatch.setenv("EXAMVAULT_DATA_DIR", str(tmp_path / "no-key-yet"))
    assert main(["ledger", "key"]) == 1
    assert "no ledger signing key" in capsys.readouterr().err
    assert not (tmp_path / "no-key-yet" / "ledger-signing-key.pem").exists()


def test_cli_refuses_bad_input_with_exit_2(
    footage: Footage,
    registered: Services,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    package = _export(registered, tmp_path)
    not_zip = tmp_path / "not.zip"
    not_zip.write_bytes(b"hello")
    assert main(["verify-export", str(not_zip)]) == 2
    no_manifest = tmp_path / "empty.zip"
    with zipfile.ZipFile(no_manifest, "w") as archive:
        archive.writestr("x.txt", "x")
    assert main(["verify-export", str(no_manifest)]) == 2
    assert "no manifest.json" in capsys.readouterr().err
    assert main(["verify-export", str(tmp_path / "absent.zip")]) == 2
    assert main(["verify-export", str(package), "--key", str(not_zip)]) == 2
    assert "not an Ed25519 public key in PEM" in capsys.readouterr().err
    assert main(["verify-export", str(package), "--key-fingerprint", "abc"]) == 2
    assert "not a key fingerprint: 64 hex digits" in capsys.readouterr().err
    # The 16-digit key_id checkpoints carry is a name, too short to trust as a key.
    key_id = _centre(registered).key_id
    assert main(["verify-export", str(package), "--key-fingerprint", key_id]) == 2
    assert "too short to trust" in capsys.readouterr().err
    with pytest.raises(SystemExit) as both:
        main(["verify-export", str(package), "--key", "k.pem", "--key-fingerprint", key_id])
    assert both.value.code == 2


def test_a_package_signed_with_another_key_is_refused_and_both_fingerprints_named(
    footage: Footage,
    registered: Services,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    package = _export(registered, tmp_path)
    other = tmp_path / "other.pem"
    other.write_bytes(
        Ed25519PrivateKey.generate()
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    assert main(["verify-export", str(package), "--key", str(other)]) == 1
    out = capsys.readouterr().out
    assert "FAIL package key is the trusted key" in out
    assert f"package key fingerprint {_centre(registered).fingerprint}, trusted key" in out


def test_console_script_verifies_a_package(
    footage: Footage, registered: Services, tmp_path: Path
) -> None:
    package = _export(registered, tmp_path)
    fingerprint = _centre(registered).fingerprint
    env = {k: v for k, v in os.environ.items() if not k.startswith("EXAMVAULT_")}
    done = subprocess.run(
        [
            str(ROOT / ".venv" / "bin" / "examvault"),
            "verify-export",
            str(package),
            "--key-fingerprint",
            fingerprint,
        ],
        env={**env, "EXAMVAULT_DATA_DIR": str(tmp_path / "elsewhere")},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.splitlines()[-1].startswith("export verified: all")


def test_damaged_bytes_abort_the_stream_and_are_ledgered(
    footage: Footage, registered: Services
) -> None:
    victim = max(footage.originals)
    with registered.db.read() as session:
        key = session.get_one(Segment, victim).blob_key
    blob = registered.store.local_path(key)
    assert blob is not None
    blob.chmod(stat.S_IRUSR | stat.S_IWUSR)
    blob.write_bytes(_flip(blob.read_bytes(), 100))  # same size: only the hash can tell

    prepared = _prepare(registered)
    produced = io.BytesIO()
    with pytest.raises(ExportAborted, match=f"segment {victim}"):
        for piece in stream_export(prepared, registered.db, registered.store):
            produced.write(piece)
    with pytest.raises(zipfile.BadZipFile):
        zipfile.ZipFile(produced)
    # The damaged member never reached the client whole.
    assert footage.originals[victim][-64:] not in produced.getvalue()
    with registered.db.read() as session:
        aborted = session.scalar(select(LedgerEntry).where(LedgerEntry.action == "export.aborted"))
        assert aborted is not None and aborted.subject_id == str(victim)
        assert json.loads(aborted.details)["export_id"] == prepared.export_id


def test_missing_blob_is_refused_before_anything_is_streamed(
    footage: Footage, registered: Services
) -> None:
    victim = min(footage.originals)
    with registered.db.read() as session:
        registered.store.delete(session.get_one(Segment, victim).blob_key)
    with pytest.raises(EvidenceMissing, match=f"segment {victim}"):
        _prepare(registered)
    with registered.db.read() as session:
        actions = list(session.scalars(select(LedgerEntry.action)))
    assert "export.failed" in actions and "export.created" not in actions


def test_refusals(footage: Footage, registered: Services) -> None:
    with pytest.raises(InvalidReason):
        _prepare(registered, reason="   ")
    with pytest.raises(InvalidReason):
        _prepare(registered, reason="x" * 501)
    for unstorable in ("a\x00b", "bell\x07", "\ud800"):
        with pytest.raises(InvalidReason):
            _prepare(registered, reason=unstorable)
    with pytest.raises(FootageNotAllowed):
        _prepare(registered, Subject(name="jigou", role="institution", institution_id=1))
    with pytest.raises(SittingNotVisible):
        _prepare(registered, Subject(name="wang", role="district_officer", district="江北区"))
    with registered.db.read() as session:
        assert "export.created" not in set(session.scalars(select(LedgerEntry.action)))


class _CountingStore:
    """The real store, with a log of what was read when (the test's window on the stream)."""

    def __init__(self, inner: BlobStore, chunk: int) -> None:
        self.inner = inner
        self.chunk = chunk
        self.read_bytes = 0

    def read(self, key: str, start: int = 0, length: int | None = None) -> Iterator[bytes]:
        for block in self.inner.read(key, start, length):
            for at in range(0, len(block), self.chunk):
                piece = block[at : at + self.chunk]
                self.read_bytes += len(piece)
                yield piece

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)


def test_the_stream_starts_before_the_footage_is_read_and_stays_chunked(
    footage: Footage, registered: Services
) -> None:
    prepared = _prepare(registered)
    store = _CountingStore(registered.store, chunk=8192)
    stream = stream_export(prepared, registered.db, store)  # type: ignore[arg-type]
    first = next(stream)
    assert first.startswith(b"PK") and store.read_bytes == 0
    pieces = [first, *stream]
    total = sum(len(b) for b in footage.originals.values())
    assert store.read_bytes == total
    # Footage went out as it was read: many pieces, none much larger than one read chunk.
    assert len(pieces) > total // 8192
    assert max(len(piece) for piece in pieces[1:]) <= 8192 + 1024
    assert zipfile.ZipFile(io.BytesIO(b"".join(pieces))).testzip() is None


def test_a_supervisor_exports_only_inside_the_assignment_window(
    footage: Footage, registered: Services
) -> None:
    now = datetime.now(UTC)
    user = registered.db.run_write(
        lambda s: create_user(
            s, name="zhang", role="supervisor", password="correct horse battery", actor="test"
        )
    )
    registered.db.run_write(
        lambda s: assign(
            s,
            user_name="zhang",
            sitting_code=SITTING,
            valid_from=now - timedelta(hours=1),
            valid_until=now + timedelta(hours=1),
            actor="test",
        )
    )
    supervisor = Subject(name="zhang", role="supervisor", user_id=user.id)
    assert _prepare(registered, supervisor).actor == "supervisor:zhang"
    with registered.db.write() as session:
        session.execute(update(Assignment).values(valid_until=now - timedelta(minutes=1)))
    with pytest.raises(SittingNotVisible):
        _prepare(registered, supervisor)


def test_unreadable_package_is_reported_as_such(tmp_path: Path) -> None:
    path = tmp_path / "x.zip"
    path.write_bytes(hashlib.sha256(b"x").digest())
    with pytest.raises(PackageUnreadable):
        verify_package(path)
    with pytest.raises(PackageUnreadable):
        verify_package(tmp_path / "missing.zip")


def test_members_beyond_the_zip32_limit_are_written_as_zip64(
    footage: Footage, registered: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Real 4 GiB videos are too slow for a unit test; lowering zipfile's limit takes the same
    # code path on the small ones.
    monkeypatch.setattr(zipfile, "ZIP64_LIMIT", 16 * 1024)
    prepared = _prepare(registered)
    body = b"".join(stream_export(prepared, registered.db, registered.store))
    with zipfile.ZipFile(io.BytesIO(body)) as archive:
        for segment in prepared.segments:
            info = archive.getinfo(segment.path)
            assert info.file_size == segment.size > zipfile.ZIP64_LIMIT
            assert info.extract_version >= zipfile.ZIP64_VERSION
            assert hashlib.sha256(archive.read(segment.path)).hexdigest() == segment.sha256


def test_a_package_from_s3_verifies(
    settings: Settings, s3_endpoint: str, make_video: VideoFactory, tmp_path: Path
) -> None:
    settings.storage_url = f"s3://ex-{uuid.uuid4().hex[:12]}?endpoint={s3_endpoint}&secure=false"
    settings.s3_access_key = ACCESS_KEY
    settings.s3_secret_key = SECRET_KEY
    init_blob_store(settings.storage_url, access_key=ACCESS_KEY, secret_key=SECRET_KEY)
    services = Services.from_settings(settings)
    try:
        services.db.run_write(
            lambda session: import_registry(session, json.dumps(REGISTRY), actor="test")
        )
        footage = record_sitting_with_footage(services, make_video, delete_purged_blob=False)
        package = _export(services, tmp_path)
        verdict = verify_package(package, TrustedKey.of(_centre(services).public_key))
        assert verdict.verified, [check.line() for check in verdict.failed]
        with zipfile.ZipFile(package) as archive:
            stored = {n: archive.read(n) for n in archive.namelist() if n.startswith("segments/")}
        assert sorted(stored.values()) == sorted(footage.originals.values())
        assert latest_stored_checkpoint(services.store) is not None
    finally:
        services.close()


def test_zip_names_are_the_upload_names_made_safe_and_unique() -> None:
    taken: set[str] = set()
    names = [
        _zip_path("T1-F", Segment(id=segment_id, original_name=name), taken)
        for segment_id, name in [(5, "a.mp4"), (6, "a.mp4"), (7, "6-a.mp4"), (8, "../考场 1.mp4")]
    ]
    assert names == [
        "segments/T1-F/a.mp4",
        "segments/T1-F/6-a.mp4",
        "segments/T1-F/7-6-a.mp4",
        "segments/T1-F/1.mp4",
    ]


def test_a_manifest_that_is_not_json_fails_its_checks_not_the_verifier(
    footage: Footage, registered: Services, tmp_path: Path
) -> None:
    altered = _rewrite(_export(registered, tmp_path), MANIFEST, lambda _data: b"{not json")
    failed = _failed(altered)
    assert "manifest.json is readable" in failed
    assert "manifest signature (manifest.sig, Ed25519 over manifest.json)" in failed
    assert main(["verify-export", str(altered)]) == 1
