"""Token handlers: mint, list and revoke API tokens, and ``whoami``."""

from litestar import Controller, Response, delete, get, post

from core_voice_config_sync.agents import AgentService
from core_voice_config_sync.api.auth import AuthedRequest, scope_opt
from core_voice_config_sync.api.params import Cursor, Limit
from core_voice_config_sync.auth import Scope
from core_voice_config_sync.errors import TokenNotFoundError
from core_voice_config_sync.tokens import TokenService
from core_voice_contracts.admin_api import (
    DEFAULT_PAGE_LIMIT,
    TokenCreate,
    TokenCreated,
    TokenPage,
    WhoAmI,
)
from core_voice_contracts.ids import is_valid_id


class TokenController(Controller):
    path = "/tokens"
    tags = ["tokens"]  # noqa: RUF012

    @post("/", status_code=201, opt=scope_opt(Scope.TOKENS))
    async def create_token(
        self, data: TokenCreate, request: AuthedRequest, tokens: TokenService
    ) -> Response[TokenCreated]:
        """A new token in the caller's tenant. Shown once: store it now. Scopes
        ``runtime`` and ``operator`` need an operator (403 otherwise)."""
        tenant_id = AgentService.tenant_of(request.user)
        token, record = await tokens.create(
            request.user, tenant_id=tenant_id, name=data.name, scope=data.scope
        )
        return Response(
            TokenCreated(token=token, info=record.view()),
            status_code=201,
            headers={"Cache-Control": "no-store"},
        )

    @get("/", opt=scope_opt(Scope.TOKENS))
    async def list_tokens(
        self,
        request: AuthedRequest,
        tokens: TokenService,
        limit: Limit = DEFAULT_PAGE_LIMIT,
        cursor: Cursor = None,
    ) -> TokenPage:
        """The tenant's live tokens (never their values)."""
        records, next_cursor = await tokens.repository.page(
            AgentService.tenant_of(request.user), limit=limit, cursor=cursor
        )
        return TokenPage(items=[r.view() for r in records], next_cursor=next_cursor)

    @delete("/{token_id:str}", status_code=204, opt=scope_opt(Scope.TOKENS))
    async def revoke_token(
        self, token_id: str, request: AuthedRequest, tokens: TokenService
    ) -> None:
        if not is_valid_id(token_id):
            raise TokenNotFoundError(token_id)
        await tokens.revoke(token_id, tenant_id=AgentService.tenant_of(request.user))


@get("/whoami", opt=scope_opt(Scope.RUNTIME_READ), tags=["tokens"])
async def whoami(request: AuthedRequest) -> WhoAmI:
    """The caller's token: name, scope and tenant."""
    principal = request.user
    return WhoAmI(name=principal.name, scope=principal.scope.value, tenant_id=principal.tenant_id)
