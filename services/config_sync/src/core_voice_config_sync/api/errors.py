"""How every error becomes an `ErrorBody` with its status code (see the package docstring)."""

import logging
from typing import Any

from litestar import Request, Response
from litestar.exceptions import (
    HTTPException,
    NotAuthorizedException,
    SerializationException,
    ValidationException,
)
from litestar.types import ExceptionHandlersMap

from core_voice_config_sync.api.params import METRICS_STATE
from core_voice_config_sync.errors import (
    ConfigSyncError,
    DatabaseUnavailableError,
)
from core_voice_config_sync.metrics import ConfigSyncMetrics, ErrorType
from core_voice_contracts.admin_api import ErrorBody

log = logging.getLogger(__name__)

RETRY_AFTER_S = "1"

_STATUS_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "body_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    429: "too_many_requests",
}


def _error(status: int, code: str, detail: str = "", **headers: str) -> Response[ErrorBody]:
    return Response(
        ErrorBody(error=code, detail=detail), status_code=status, headers=headers or None
    )


def on_service_error(request: Request[Any, Any, Any], exc: ConfigSyncError) -> Response[ErrorBody]:
    if exc.status >= 500:  # config_sync's own failure, not the caller's
        _count_error(request, exc.code)
    if isinstance(exc, DatabaseUnavailableError):
        log.warning("request refused: database unavailable")
        return _error(exc.status, exc.code, exc.detail, **{"Retry-After": RETRY_AFTER_S})
    return _error(exc.status, exc.code, exc.detail)


def on_validation(_: Request[Any, Any, Any], exc: ValidationException) -> Response[ErrorBody]:
    """422 (not Litestar's 400) with every failing field named: ``key: message``."""
    problems = []
    for item in exc.extra if isinstance(exc.extra, list) else []:
        if not isinstance(item, dict):
            continue
        key = str(item.get("key", ""))
        message = str(item.get("message", "invalid"))
        if key == "data":  # the body as a whole (unknown field, wrong type, missing)
            key = "body"
            if message == "'data'":
                message = "a JSON body is required"
        problems.append(f"{key}: {message}" if key else message)
    return _error(422, "validation_error", "; ".join(problems) or "invalid request")


def on_http_error(request: Request[Any, Any, Any], exc: HTTPException) -> Response[ErrorBody]:
    status = exc.status_code
    if status >= 500:
        _count_error(request, ErrorType.INTERNAL)
        log.error("http error", extra={"status": status})
        return _error(status, "internal_error")
    if isinstance(exc.__cause__, SerializationException):
        return _error(400, "malformed_json", "the body is not valid JSON")
    headers = {"WWW-Authenticate": "Bearer"} if isinstance(exc, NotAuthorizedException) else {}
    return _error(status, _STATUS_CODES.get(status, "client_error"), exc.detail, **headers)


def on_too_deep(_: Request[Any, Any, Any], exc: RecursionError) -> Response[ErrorBody]:
    """A body nested too deep to parse: msgspec raises `RecursionError`, not a decode
    error, so without this it would be a 500. Nothing else here recurses on input."""
    log.warning("request refused: body nested too deep")
    return _error(400, "malformed_json", "the body is nested too deeply")


def _count_error(request: Request[Any, Any, Any], type_: str) -> None:
    metrics = request.app.state.get(METRICS_STATE)
    if isinstance(metrics, ConfigSyncMetrics):
        metrics.error(type_)


def on_unexpected(request: Request[Any, Any, Any], exc: Exception) -> Response[ErrorBody]:
    _count_error(request, ErrorType.INTERNAL)
    log.error("unhandled error", extra={"error": type(exc).__name__}, exc_info=exc)
    return _error(500, "internal_error")


EXCEPTION_HANDLERS: ExceptionHandlersMap = {
    ConfigSyncError: on_service_error,
    ValidationException: on_validation,
    HTTPException: on_http_error,
    RecursionError: on_too_deep,
    Exception: on_unexpected,
}
"""Every error becomes an `ErrorBody` (most specific class first)."""
