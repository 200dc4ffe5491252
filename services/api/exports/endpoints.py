"""Evidence exports: a sitting's signed, verifiable ZIP package, streamed as it is read from
the blob store (docs/exports.md)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import StreamingResponse

from services.access.scopes import NO_FOOTAGE_ZH, Subject
from services.api.deps import ServicesDep, SittingReader
from services.api.errors import ApiError
from services.api.exports.schemas import ExportIn
from services.evidence.exports import (
    MAX_REASON_LENGTH,
    EvidenceMissing,
    FootageNotAllowed,
    InvalidReason,
    SittingNotVisible,
    StoreUnavailable,
    prepare_export,
    stream_export,
)
from services.ledger.checkpoints import LedgerBroken, LedgerRewritten
from services.ledger.keys import load_or_create_signer

router = APIRouter(tags=["exports"])


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
    except LedgerBroken as exc:
        raise ApiError(500, "ledger_broken", f"the ledger cannot be signed over: {exc}") from exc
    return StreamingResponse(
        stream_export(prepared, services.db, services.store),
        media_type="application/zip",
        headers={
            "Content-Disposition": f'attachment; filename="{prepared.file_name}"',
            "Cache-Control": "no-store",
            "X-Export-Id": prepared.export_id,
            "X-Export-Ledger-Seq": str(prepared.ledger_seq),
        },
    )
