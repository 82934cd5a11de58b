"""The admin and runtime-config HTTP API (Litestar).

Every error body is an `ErrorBody`. Status codes: 401 no/unknown token, 403 a valid token
without the needed scope, 404 unknown agent (or another tenant's), 409 duplicate id,
413 body over the limit, 400 malformed JSON, 422 a body that parses but is invalid
(the detail names the field). A PATCH naming no field is 422 ``empty_patch``; a PATCH
whose values equal the current ones is a 200 no-op that keeps the version.
"""

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from litestar import Litestar, Request, Response, Router, get, patch, post
from litestar.connection import ASGIConnection
from litestar.di import Provide
from litestar.exceptions import (
    HTTPException,
    NotAuthorizedException,
    PermissionDeniedException,
    SerializationException,
    ValidationException,
)
from litestar.handlers.base import BaseRouteHandler
from litestar.middleware import DefineMiddleware
from litestar.middleware.authentication import (
    AbstractAuthenticationMiddleware,
    AuthenticationResult,
)
from litestar.openapi import OpenAPIConfig
from litestar.openapi.spec import Components, SecurityScheme
from litestar.types import ASGIApp

from core_voice_config_sync.agents import AgentService
from core_voice_config_sync.auth import Authenticator, Principal, Scope
from core_voice_config_sync.errors import AgentNotFoundError, ConfigSyncError
from core_voice_contracts.admin_api import AgentCreate, AgentPatch, AgentView, ErrorBody, HealthView
from core_voice_contracts.runtime_config import RuntimeConfig

log = logging.getLogger(__name__)

API_PREFIX = "/api/v1"
SCOPE_OPT = "scope"

HealthCheck = Callable[[], Awaitable[HealthView]]
AuthedRequest = Request[Principal, None, Any]

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


# --- authentication and authorisation -----------------------------------------------


class BearerAuthMiddleware(AbstractAuthenticationMiddleware):
    """Resolves ``Authorization: Bearer <token>`` to a `Principal` (401 if it cannot)."""

    def __init__(self, app: ASGIApp, authenticator: Authenticator) -> None:
        super().__init__(app)
        self._authenticator = authenticator

    async def authenticate_request(
        self, connection: ASGIConnection[Any, Any, Any, Any]
    ) -> AuthenticationResult:
        scheme, _, token = connection.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise NotAuthorizedException("a bearer token is required")
        principal = await self._authenticator.authenticate(token.strip())
        if principal is None:
            raise NotAuthorizedException("the bearer token is not valid")
        return AuthenticationResult(user=principal, auth=None)


def require_scope(
    connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler
) -> None:
    """Guard: the handler's ``opt["scope"]`` must be among the caller's scopes."""
    needed = handler.opt.get(SCOPE_OPT)
    principal = connection.user
    if not isinstance(principal, Principal) or not isinstance(needed, Scope):
        raise PermissionDeniedException("forbidden")
    if not principal.can(needed):
        raise PermissionDeniedException(f"the token lacks the {needed.value!r} scope")


# --- handlers -------------------------------------------------------------------------


@post("/agents", status_code=201, opt={SCOPE_OPT: Scope.AGENTS_WRITE})
async def create_agent(
    data: AgentCreate, request: AuthedRequest, agents: AgentService
) -> AgentView:
    """Create an agent at config version 1."""
    return await agents.create(request.user, data)


@get("/agents/{agent_id:str}", opt={SCOPE_OPT: Scope.AGENTS_READ})
async def get_agent(agent_id: str, request: AuthedRequest, agents: AgentService) -> AgentView:
    """The agent and its current config version."""
    return await agents.get(request.user, agent_id)


@patch("/agents/{agent_id:str}", opt={SCOPE_OPT: Scope.AGENTS_WRITE})
async def patch_agent(
    agent_id: str, data: AgentPatch, request: AuthedRequest, agents: AgentService
) -> AgentView:
    """Commit the given fields as a new immutable config version (previous + 1)."""
    return await agents.patch(request.user, agent_id, data)


@get("/agents/{agent_id:str}/runtime-config", opt={SCOPE_OPT: Scope.RUNTIME_READ})
async def runtime_config(
    agent_id: str, request: AuthedRequest, agents: AgentService
) -> Response[RuntimeConfig]:
    """What a voice worker runs for this agent. Carries provider keys: never cached."""
    config = await agents.runtime_config(agent_id, tenant_id=request.user.tenant_id)
    if config is None:
        raise AgentNotFoundError(agent_id)
    return Response(config, headers={"Cache-Control": "no-store"})


# --- errors ---------------------------------------------------------------------------


def _error(status: int, code: str, detail: str = "", **headers: str) -> Response[ErrorBody]:
    return Response(
        ErrorBody(error=code, detail=detail), status_code=status, headers=headers or None
    )


def _on_service_error(_: Request[Any, Any, Any], exc: ConfigSyncError) -> Response[ErrorBody]:
    return _error(exc.status, exc.code, exc.detail)


def _on_validation(_: Request[Any, Any, Any], exc: ValidationException) -> Response[ErrorBody]:
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


def _on_http_error(_: Request[Any, Any, Any], exc: HTTPException) -> Response[ErrorBody]:
    status = exc.status_code
    if status >= 500:
        log.error("http error", extra={"status": status})
        return _error(status, "internal_error")
    if isinstance(exc.__cause__, SerializationException):
        return _error(400, "malformed_json", "the body is not valid JSON")
    headers = {"WWW-Authenticate": "Bearer"} if isinstance(exc, NotAuthorizedException) else {}
    return _error(status, _STATUS_CODES.get(status, "client_error"), exc.detail, **headers)


def _on_unexpected(_: Request[Any, Any, Any], exc: Exception) -> Response[ErrorBody]:
    log.error("unhandled error", exc_info=exc)
    return _error(500, "internal_error")


# --- application ----------------------------------------------------------------------


def create_app(
    *,
    agents: AgentService,
    authenticator: Authenticator,
    health: HealthCheck,
    max_body_bytes: int,
    version: str = "0.1.0",
) -> Litestar:
    """The ASGI app. OpenAPI is served at ``/schema`` (e.g. ``/schema/openapi.json``)."""

    @get("/healthz")
    async def healthz() -> Response[HealthView]:
        """200 when the database and NATS both answer, 503 otherwise."""
        result = await health()
        return Response(result, status_code=200 if result.status == "ok" else 503)

    api = Router(
        path=API_PREFIX,
        route_handlers=[create_agent, get_agent, patch_agent, runtime_config],
        middleware=[DefineMiddleware(BearerAuthMiddleware, authenticator=authenticator)],
        guards=[require_scope],
        security=[{"bearer": []}],
    )
    return Litestar(
        route_handlers=[api, healthz],
        dependencies={"agents": Provide(lambda: agents, sync_to_thread=False)},
        exception_handlers={
            ConfigSyncError: _on_service_error,
            ValidationException: _on_validation,
            HTTPException: _on_http_error,
            Exception: _on_unexpected,
        },
        request_max_body_size=max_body_bytes,
        openapi_config=OpenAPIConfig(
            title="Core Voice config_sync",
            version=version,
            components=Components(
                security_schemes={"bearer": SecurityScheme(type="http", scheme="bearer")}
            ),
        ),
        debug=False,
        logging_config=None,
    )
