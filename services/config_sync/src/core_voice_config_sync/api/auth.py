"""Who calls: a bearer token resolved to a `Principal`, and the scope each handler needs
(``opt=scope_opt(...)``, checked by the `require_scope` guard)."""

from typing import Any

from litestar import Request
from litestar.connection import ASGIConnection
from litestar.exceptions import (
    NotAuthorizedException,
    PermissionDeniedException,
)
from litestar.handlers.base import BaseRouteHandler
from litestar.middleware.authentication import (
    AbstractAuthenticationMiddleware,
    AuthenticationResult,
)

from core_voice_config_sync.auth import Authenticator, Principal, Scope

SCOPE_OPT = "scope"
AUTHENTICATOR_STATE = "authenticator"

AuthedRequest = Request[Principal, None, Any]


class BearerAuthMiddleware(AbstractAuthenticationMiddleware):
    """Resolves ``Authorization: Bearer <token>`` to a `Principal` (401 if it cannot).

    The authenticator comes from the app state, not the middleware's arguments: Litestar
    deep-copies routers (and so middleware arguments), and the authenticator holds the
    database engine.
    """

    async def authenticate_request(
        self, connection: ASGIConnection[Any, Any, Any, Any]
    ) -> AuthenticationResult:
        scheme, _, token = connection.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise NotAuthorizedException("a bearer token is required")
        authenticator: Authenticator = connection.app.state[AUTHENTICATOR_STATE]
        principal = await authenticator.authenticate(token.strip())
        if principal is None:
            raise NotAuthorizedException("the bearer token is not valid")
        return AuthenticationResult(user=principal, auth=None)


def require_scope(
    connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler
) -> None:
    """Guard: the handler's ``opt["scope"]`` must be among the caller's permissions."""
    needed = handler.opt.get(SCOPE_OPT)
    principal = connection.user
    if not isinstance(principal, Principal) or not isinstance(needed, Scope):
        raise PermissionDeniedException("forbidden")
    if not principal.can(needed):
        raise PermissionDeniedException(f"the token lacks the {needed.value!r} permission")


def scope_opt(scope: Scope) -> dict[str, Any]:
    return {SCOPE_OPT: scope}
