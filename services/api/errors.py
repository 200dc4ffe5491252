"""One error shape for every route: HTTP status + JSON {code, message, message_zh, ...}.

`code` is stable (clients branch on it); `message` is English and `message_zh` Chinese, both
one clear sentence.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from storage.blobs import StoreUnavailable
from storage.db import DatabaseUnavailable
from storage.outages import Outage, outage_of

logger = logging.getLogger(__name__)

# Chinese wording per code; the English message comes from the raiser, with its specifics.
MESSAGES_ZH: dict[str, str] = {
    "unauthorized": "未认证：请提供有效的访问令牌。",
    "forbidden": "无权执行此操作。",
    "not_found": "未找到请求的资源。",
    "method_not_allowed": "不支持该请求方法。",
    "invalid_request": "请求参数不合法。",
    "bad_file_name": "文件名不合法。",
    "bad_camera_code": "摄像机编号不合法。",
    "bad_start_header": "X-Recording-Start 不是带时区偏移的 RFC 3339 时间。",
    "missing_start": "缺少录像开始时间：请在文件名或 X-Recording-Start 中提供。",
    "start_mismatch": "文件名中的开始时间与 X-Recording-Start 不一致。",
    "bad_checksum_header": "X-Content-SHA256 不是 64 位十六进制 SHA-256。",
    "checksum_mismatch": "上传内容的 SHA-256 与 X-Content-SHA256 不一致，请重新上传。",
    "too_large": "文件超过允许的大小上限。",
    "conflict": "该摄像机在同一开始时间已有不同的录像，文件已隔离保存。",
    "empty_file": "文件为空，已隔离保存。",
    "not_a_video": "文件不是可识别的视频，已隔离保存。",
    "no_video_stream": "文件没有视频流，已隔离保存。",
    "image_not_recording": "文件是一张图片而不是录像，已隔离保存。",
    "undecodable": "视频流无法解码，已隔离保存。",
    "zero_duration": "录像时长为零，已隔离保存。",
    "absurd_duration": "录像时长超出合理范围，已隔离保存。",
    "too_large_picture": "视频画面尺寸或像素速率超过允许的上限，已隔离保存。",
    "trailing_data": "文件在录像结束之后还带有大量多余数据（填充或附加内容），已隔离保存。",
    "damaged_recording": "录像大部分已损坏（抽查的关键帧多数无法解码或数据无法读取），已隔离保存。",
    "unreadable": "文件无法读取，已隔离保存。",
    "unknown_camera": "摄像机未登记，文件已隔离保存。",
    "unparseable_start": "无法解析录像开始时间，文件已隔离保存。",
    "clock_reset": "录像开始时间早于 2000 年（主机时钟可能被重置），文件已隔离保存。",
    "clock_far_ahead": "录像开始时间在 2100 年或之后（主机时钟错误），文件已隔离保存。",
    "busy": "该文件正在被处理，请稍后重试。",
    "queued": "上传内容已完整接收，正在排队等待入库；可通过状态地址查询最终结果，或稍后重新上传。",
    "unknown_upload": "未找到该上传记录（或不属于此令牌）。",
    "internal_error": "服务器内部错误。",
    "invalid_schedule": "场次数据不合法，未导入任何场次。",
    "invalid_registry": "登记数据不合法，未导入任何内容。",
    "invalid_file": "文件不是 UTF-8 文本，未导入任何内容。",
    "unsupported_media_type": "请上传 JPEG 或 PNG 图片。",
    "not_an_image": "文件不是可识别的图片。",
    "no_footage": "该摄像机在该时刻没有录像。",
    "invalid_hold": "保全请求不合法。",
    "already_released": "该保全已解除。",
    "invalid_credentials": "用户名或密码错误。",
    "ledger_broken": "台账链不完整，请运行 examvault ledger verify。",
    "ledger_rewritten": "台账已被改写或截断，拒绝签署检查点，请运行 examvault ledger verify。",
    "too_many_attempts": "登录失败次数过多，请稍后再试。",
    "invalid_user": "用户信息不合法。",
    "invalid_assignment": "督导分派不合法。",
    "evidence_missing": "录像文件缺失或已损坏，无法导出，请联系管理员核查。",
    "store_unavailable": "证据存储暂时不可用，请稍后重试。",
    "database_unavailable": "数据库暂时不可用，请稍后重试。",
    "disk_full": "服务器磁盘已满，请稍后重试并联系管理员。",
    "spool_unavailable": "服务器上传目录配置有误，请稍后重试并联系管理员。",
    "invalid_finding": "督导记录不合法。",
    "review_closed": "该场次的督导复核已结束，督导记录不可再修改。",
    "withdrawn": "该督导记录已撤回。",
    "review_unchanged": "该场次的复核状态未改变。",
    "already_revoked": "已撤销，无需重复操作。",
    "already_disabled": "该用户已被停用。",
    "invalid_token": "令牌请求不合法。",
    "invalid_date": "日期不存在或超出范围（1970–8999 年）。",
    "invalid_link": "只能为录像读取地址生成播放链接。",
    "purged": "该录像已在保存期满后清除，仅保留其墓碑记录（SHA-256 与大小）。",
    "outside_assignment": "请求的时间段不在您被分派的督导时段内。",
    "range_not_satisfiable": "请求的字节范围超出录像文件大小。",
    "blob_missing": "录像文件在存储中缺失，请联系管理员核查。",
    # The HTTP edge (server.py, pacing.py).
    "body_too_slow": "请求内容发送过慢或中断，连接已关闭，请重新上传。",
    "headers_too_large": "请求头过大。",
    "bad_http_request": "请求不是合法的 HTTP/1.1 请求。",
    "too_many_connections": "服务器连接数已满，请稍后重试。",
    "metrics_off": "监控指标未开启：请设置 EXAMVAULT_METRICS_TOKEN。",
}

# Said after a rejection's own wording when the quarantine was at its budget (docs/ingest.md).
QUARANTINE_KEPT_EN: dict[str, str] = {
    "sample": "the quarantine is at its size budget, so only the file's first bytes were kept: "
    "keep your copy",
    "none": "the quarantine is at its size budget, so only the record was kept, not the file: "
    "keep your copy",
}
QUARANTINE_KEPT_ZH: dict[str, str] = {
    "sample": "隔离区已达容量上限，仅保留了文件开头部分，请保留本地副本。",
    "none": "隔离区已达容量上限，仅保留了拒收记录而未保存文件内容，请保留本地副本。",
}


class ErrorBody(BaseModel):
    code: str
    message: str
    message_zh: str


class ApiError(Exception):
    """`message_zh` when the Chinese should say more than the code's general wording."""

    def __init__(
        self, status: int, code: str, message: str, *, message_zh: str | None = None, **extra: Any
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.message_zh = message_zh
        self.extra = extra


def error_response(
    status: int,
    code: str,
    message: str,
    *,
    message_zh: str | None = None,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    body = {
        "code": code,
        "message": message,
        "message_zh": message_zh or MESSAGES_ZH.get(code, message),
    }
    body.update(extra)
    if status == 401:
        headers = {**(headers or {}), "WWW-Authenticate": "Bearer"}
    return JSONResponse(body, status_code=status, headers=headers)


_STATUS_CODES = {
    400: "invalid_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "too_large",
}


def outage_response(request: Request, outage: Outage, **extra: Any) -> JSONResponse:
    """503 with Retry-After: the dependency is down, not the request wrong; a camera host keeps
    its copy and pushes again."""
    services = getattr(request.app.state, "services", None)
    retry = services.settings.outage_retry_seconds if services is not None else 30
    return error_response(
        503, outage.code, outage.message, headers={"Retry-After": str(retry)}, **extra
    )


def _note_outage(request: Request, exc: BaseException) -> None:
    services = getattr(request.app.state, "services", None)
    if services is not None:
        services.readiness.note_failure(exc)


def install_error_handlers(app: FastAPI) -> None:
    # Outages: one line in the log (the readiness checks say more), a 503 to the client.
    @app.exception_handler(StoreUnavailable)
    @app.exception_handler(DatabaseUnavailable)
    async def _unavailable(request: Request, exc: Exception) -> JSONResponse:
        outage = outage_of(exc)
        assert outage is not None
        logger.warning("%s %s: %s: %s", request.method, request.url.path, outage.code, exc)
        return outage_response(request, outage)

    @app.exception_handler(OSError)
    async def _os_error(request: Request, exc: OSError) -> JSONResponse:
        outage = outage_of(exc)
        if outage is None:
            raise exc
        _note_outage(request, exc)
        logger.warning("%s %s: %s: %s", request.method, request.url.path, outage.code, exc)
        return outage_response(request, outage)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        # Starlette logs the traceback after this answer; the client still gets our shape.
        outage = outage_of(exc)
        if outage is not None:
            _note_outage(request, exc)
            return outage_response(request, outage)
        return error_response(500, "internal_error", "internal server error")

    @app.exception_handler(ApiError)
    async def _api_error(_request: Request, exc: ApiError) -> JSONResponse:
        return error_response(
            exc.status, exc.code, exc.message, message_zh=exc.message_zh, **exc.extra
        )

    @app.exception_handler(RequestValidationError)
    async def _validation(_request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(part) for part in first.get("loc", ()))
        return error_response(400, "invalid_request", f"{where}: {first.get('msg', 'invalid')}")

    @app.exception_handler(StarletteHTTPException)
    async def _http(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        # Our own HTTPExceptions (pacing.BodyTooSlow) name their code.
        code = getattr(exc, "code", None) or _STATUS_CODES.get(exc.status_code, "http_error")
        return error_response(exc.status_code, code, str(exc.detail))

    @app.exception_handler(ClientDisconnect)
    async def _gone(request: Request, _exc: ClientDisconnect) -> Response:
        # Nobody is left to answer; one line, not uvicorn's traceback at ERROR.
        logger.info("client went away during %s %s", request.method, request.url.path)
        return Response(status_code=499)
