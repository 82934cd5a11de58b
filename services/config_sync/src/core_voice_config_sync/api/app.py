"""The assembled Litestar app: the routers, their dependencies, auth and error handlers."""

from collections.abc import Awaitable, Callable

from litestar import Litestar, Response, Router, get
from litestar.datastructures import State
from litestar.di import Provide
from litestar.middleware import DefineMiddleware
from litestar.openapi import OpenAPIConfig
from litestar.openapi.spec import Components, SecurityScheme

from core_voice_config_sync.agents import AgentService
from core_voice_config_sync.api.agents import AgentController, providers
from core_voice_config_sync.api.auth import AUTHENTICATOR_STATE, BearerAuthMiddleware, require_scope
from core_voice_config_sync.api.campaigns import CampaignController
from core_voice_config_sync.api.errors import EXCEPTION_HANDLERS
from core_voice_config_sync.api.params import METRICS_STATE
from core_voice_config_sync.api.tokens import TokenController, whoami
from core_voice_config_sync.api.trunks import TenantController, TrunkController
from core_voice_config_sync.auth import Authenticator
from core_voice_config_sync.campaigns import CampaignService
from core_voice_config_sync.metrics import ConfigSyncMetrics
from core_voice_config_sync.operators import OperatorService
from core_voice_config_sync.tokens import TokenService
from core_voice_contracts.admin_api import HealthView

API_PREFIX = "/api/v1"

HealthCheck = Callable[[], Awaitable[HealthView]]


def create_app(
    *,
    agents: AgentService,
    campaigns: CampaignService,
    operators: OperatorService,
    tokens: TokenService,
    authenticator: Authenticator,
    health: HealthCheck,
    max_body_bytes: int,
    version: str = "0.1.0",
    metrics: ConfigSyncMetrics | None = None,
) -> Litestar:
    """The ASGI app. OpenAPI is served at ``/schema`` (e.g. ``/schema/openapi.json``);
    ``/metrics`` is served by `metrics.MetricsMiddleware` around it."""

    @get("/healthz", tags=["health"])
    async def healthz() -> Response[HealthView]:
        """200 when the database and NATS both answer, 503 otherwise."""
        result = await health()
        return Response(result, status_code=200 if result.status == "ok" else 503)

    api = Router(
        path=API_PREFIX,
        route_handlers=[
            AgentController,
            CampaignController,
            TrunkController,
            TenantController,
            TokenController,
            providers,
            whoami,
        ],
        middleware=[DefineMiddleware(BearerAuthMiddleware)],
        guards=[require_scope],
        security=[{"bearer": []}],
    )
    return Litestar(
        route_handlers=[api, healthz],
        dependencies={
            "agents": Provide(lambda: agents, sync_to_thread=False),
            "campaigns": Provide(lambda: campaigns, sync_to_thread=False),
            "operators": Provide(lambda: operators, sync_to_thread=False),
            "tokens": Provide(lambda: tokens, sync_to_thread=False),
        },
        exception_handlers=EXCEPTION_HANDLERS,
        request_max_body_size=max_body_bytes,
        openapi_config=OpenAPIConfig(
            title="Core Voice config_sync",
            version=version,
            components=Components(
                security_schemes={"bearer": SecurityScheme(type="http", scheme="bearer")}
            ),
        ),
        state=State(
            {
                AUTHENTICATOR_STATE: authenticator,
                METRICS_STATE: metrics if metrics is not None else ConfigSyncMetrics(),
            }
        ),
        debug=False,
        logging_config=None,
    )
