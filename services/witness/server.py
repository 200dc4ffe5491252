"""`examvault witness serve`: the witness's HTTP side, after C2SP tlog-witness.

POST /add-checkpoint takes a checkpoint and a consistency proof from the last checkpoint this
witness cosigned for that log (`old_size`), and answers with a cosignature only when the
checkpoint is signed by a log key it was given and extends what it saw before. Refusals carry an
HTTP status and a JSON `{"code", "message"}`:

- 400 `bad_request`: not the request described here;
- 403 `bad_signature`: the checkpoint's signature does not verify with the log's key;
- 404 `unknown_log`: no log key of that key_id was given to this witness;
- 409 `old_size_mismatch`: `old_size` is not the size this witness last cosigned (`size` says
  which; the centre retries with a proof from there) — also what a smaller checkpoint gets;
- 409 `conflicting_root`: same size as the last cosigned, different root: a fork;
- 422 `not_consistent`: the proof does not lead from the old root to the new one.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from services.keyfiles import read_or_create
from services.ledger.checkpoints import Checkpoint, CheckpointFormatError, verify_checkpoint
from services.ledger.keys import CheckpointSigner, key_id_for
from services.witness.cosignatures import cosign, witness_key_text
from services.witness.state import LatestCosigned, WitnessState
from storage import merkle

logger = logging.getLogger(__name__)

WITNESS_KEY_FILE = "witness-signing-key.pem"
# A consistency proof has at most about 2 log2(n) hashes: 128 covers any ledger that can exist.
_MAX_PROOF_HASHES = 128


class WitnessRefusal(Exception):
    def __init__(self, status: int, code: str, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.extra = status, code, message, extra


def load_or_create_witness_signer(data_dir: Path) -> CheckpointSigner:
    """The witness's own key, made once in its own data directory and never replaced."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    def new_key() -> bytes:
        return Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    pem = read_or_create(data_dir / WITNESS_KEY_FILE, new_key)
    key = serialization.load_pem_private_key(pem, password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError(f"{data_dir / WITNESS_KEY_FILE} does not hold an Ed25519 private key")
    return CheckpointSigner(key)


@dataclass
class Witness:
    signer: CheckpointSigner
    state: WitnessState
    log_keys: dict[str, Ed25519PublicKey]  # by key_id

    def add_checkpoint(self, request: Any) -> dict[str, Any]:
        """Check and cosign, or raise WitnessRefusal saying why."""
        if not isinstance(request, dict):
            raise WitnessRefusal(400, "bad_request", "the body is not a JSON object")
        old_size, proof_hex = request.get("old_size"), request.get("consistency_proof")
        if not isinstance(old_size, int) or isinstance(old_size, bool) or old_size < 0:
            raise WitnessRefusal(400, "bad_request", "old_size is missing or not a size")
        if (
            not isinstance(proof_hex, list)
            or len(proof_hex) > _MAX_PROOF_HASHES
            or not all(isinstance(item, str) and len(item) == 64 for item in proof_hex)
        ):
            raise WitnessRefusal(
                400, "bad_request", "consistency_proof is not a list of SHA-256 hashes in hex"
            )
        try:
            proof = [bytes.fromhex(item) for item in proof_hex]
            checkpoint = Checkpoint.from_json(request.get("checkpoint"))
            new_root = bytes.fromhex(checkpoint.root)
        except (CheckpointFormatError, ValueError) as exc:
            raise WitnessRefusal(400, "bad_request", f"not a checkpoint: {exc}") from exc
        log_key = self.log_keys.get(checkpoint.key_id)
        if log_key is None:
            raise WitnessRefusal(
                404, "unknown_log", f"this witness has no log key {checkpoint.key_id}"
            )
        if not verify_checkpoint(checkpoint, log_key):
            raise WitnessRefusal(
                403,
                "bad_signature",
                "the checkpoint signature does not verify with the log key",
            )
        if old_size > checkpoint.size:
            raise WitnessRefusal(
                400, "bad_request", f"old_size {old_size} is beyond the checkpoint's size"
            )
        with self.state.locked() as logs:
            latest = logs.get(checkpoint.key_id, LatestCosigned(0, ""))
            if old_size != latest.size:
                raise WitnessRefusal(
                    409,
                    "old_size_mismatch",
                    f"this witness last cosigned size {latest.size} of this log, not {old_size}",
                    size=latest.size,
                )
            if checkpoint.size == latest.size:
                if checkpoint.root != latest.root:
                    logger.error(
                        "refused a fork of log %s: size %d with root %s, cosigned %s before",
                        checkpoint.key_id,
                        checkpoint.size,
                        checkpoint.root,
                        latest.root,
                    )
                    raise WitnessRefusal(
                        409,
                        "conflicting_root",
                        f"this witness cosigned size {latest.size} with root {latest.root}; "
                        "this checkpoint gives the same size another root",
                    )
            elif latest.size > 0 and not merkle.verify_consistency(
                latest.size, checkpoint.size, bytes.fromhex(latest.root), new_root, proof
            ):
                logger.error(
                    "refused log %s size %d: not consistent with cosigned size %d",
                    checkpoint.key_id,
                    checkpoint.size,
                    latest.size,
                )
                raise WitnessRefusal(
                    422,
                    "not_consistent",
                    f"the proof does not show size {checkpoint.size} extends the tree of size "
                    f"{latest.size} this witness cosigned: the log was rewritten, or the proof "
                    "is wrong",
                )
            # Remembered before answering: a cosignature handed out is a promise kept on restart.
            logs[checkpoint.key_id] = LatestCosigned(checkpoint.size, checkpoint.root)
            self.state.save(logs)
        logger.info("cosigned log %s size %d", checkpoint.key_id, checkpoint.size)
        return {"cosignature": cosign(self.signer, checkpoint).as_json()}


def create_witness_app(witness: Witness) -> FastAPI:
    app = FastAPI(title="examvault witness", docs_url=None, redoc_url=None, openapi_url=None)

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/key")
    def key() -> dict[str, str]:
        return {
            "key_id": witness.signer.key_id,
            "public_key": witness_key_text(witness.signer.public_key),
        }

    @app.post("/add-checkpoint")
    async def add_checkpoint(request: Request) -> JSONResponse:
        try:
            body = await request.json()
        except ValueError:
            body = None
        try:
            return JSONResponse(witness.add_checkpoint(body))
        except WitnessRefusal as refusal:
            return JSONResponse(
                {"code": refusal.code, "message": refusal.message, **refusal.extra},
                status_code=refusal.status,
            )

    return app


def log_keys_by_id(keys: list[Ed25519PublicKey]) -> dict[str, Ed25519PublicKey]:
    return {key_id_for(key): key for key in keys}
