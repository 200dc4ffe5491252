"""Evidence exports: a sitting's signed, verifiable ZIP package, streamed as it is read from
the blob store (docs/exports.md)."""

from __future__ import annotations

import logging
from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool
from starlette.types import Receive, Scope, Send

from services.access.scopes import NO_FOOTAGE_ZH, Subject
from services.api.deps import ServicesDep, SittingReader
from services.api.errors import ApiError
from services.api.exports.schemas import ExportIn
from services.evidence.exports import (
    MAX_REASON_LENGTH,
    EvidenceMissing,
    ExportDelivery,
    FootageNotAllowed,
    InvalidReason,
    SittingNotVisible,
    StoreUnavailable,
    prepare_export,
)
from services.ledger.checkpoints import LedgerBroken, LedgerRewritten, SigningKeyChanged
from services.ledger.keys import load_or_create_signer

logger = logging.getLogger(__name__)

router = APIRouter(tags=["exports"])


class _LedgeredStream(StreamingResponse):
    """The package, streamed, and ledgered by how it ended (ExportDelivery).

    A stream that fails (damaged bytes, a store that stops answering) ends without its
    terminating chunk: the connection is closed after the last good chunk, so curl and httpx
    report an incomplete transfer rather than a clean end (docs/exports.md). A client that goes
    away ends the response early; either way the outcome is `export.interrupted`."""

    def __init__(self, delivery: ExportDelivery, **kwargs: Any) -> None:
        super().__init__(delivery.chunks(), **kwargs)
        self.delivery = delivery

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        except Exception as exc:
            # Already logged and ledgered where it happened (export.aborted); not raised on:
            # the server then closes the connection without the terminating chunk, with one
            # log line instead of a traceback.
            await run_in_threadpool(self.delivery.settle, f"the stream failed: {exc}")
            return
        if self.delivery.completed:
            await run_in_threadpool(self.delivery.settle)
        else:
            await run_in_threadpool(
                self.delivery.settle, "the client went away before the last byte"
            )


@router.post(
    "/api/v1/sittings/{code}/exports",
    response_class=StreamingResponse,
    responses={
        200: {
            "content": {"application/zip": {}},
            "description": "the evidence package, streamed; verify with `examvault verify-export`",
        }
    },
    summary="Export a sitting's evidence package (footage, manifest, ledger proofs), signed",
)
def create_export(
    code: str, body: ExportIn, services: ServicesDep, subject: SittingReader
) -> StreamingResponse:
    return _export(code, body.reason, services, subject)


@router.get(
    "/api/v1/sittings/{code}/exports/download",
    response_class=StreamingResponse,
    responses={200: {"content": {"application/zip": {}}, "description": "as the POST"}},
    summary="The same export as a GET, for a browser download through a footage link",
)
def download_export(
    code: str,
    services: ServicesDep,
    subject: SittingReader,
    reason: Annotated[str, Query(min_length=1, max_length=MAX_REASON_LENGTH)],
) -> StreamingResponse:
    # A browser saves a large package to disk only by navigating to it, and navigation sends
    # no bearer header: the page opens this through a footage link (reason inside the signed
    # query). Like every footage read it is a ledgered GET; the POST stays for API clients.
    return _export(code, reason, services, subject)


def _export(code: str, reason: str, services: ServicesDep, subject: Subject) -> StreamingResponse:
    signer = load_or_create_signer(services.settings.data_dir)
    try:
        prepared = prepare_export(
            services.db,
            services.store,
            services.settings,
            signer,
            sitting_code=code,
            subject=subject,
            reason=reason,
        )
    except SittingNotVisible as exc:
        raise ApiError(404, "not_found", str(exc)) from exc
    except FootageNotAllowed as exc:
        raise ApiError(403, "forbidden", str(exc), message_zh=NO_FOOTAGE_ZH) from exc
    except InvalidReason as exc:
        raise ApiError(400, "invalid_request", str(exc)) from exc
    except EvidenceMissing as exc:
        raise ApiError(500, "evidence_missing", str(exc)) from exc
    except StoreUnavailable as exc:
        raise ApiError(503, "store_unavailable", str(exc)) from exc
    except LedgerRewritten as exc:
        raise ApiError(
            500, "ledger_rewritten", f"no export is signed over a rewritten ledger: {exc}"
        ) from exc
    except SigningKeyChanged as exc:
        raise ApiError(500, "signing_key_changed", f"no export is signed: {exc}") from exc
    except LedgerBroken as exc:
        raise ApiError(500, "ledger_broken", f"the ledger cannot be signed over: {exc}") from exc
    return _LedgeredStream(
        ExportDelivery(prepared, services.db, services.store),
        media_type="application/zip",
        headers={
            "Content-Disposition": f'attachment; filename="{prepared.file_name}"',
            "Cache-Control": "no-store",
            "X-Export-Id": prepared.export_id,
            "X-Export-Ledger-Seq": str(prepared.ledger_seq),
        },
    )
