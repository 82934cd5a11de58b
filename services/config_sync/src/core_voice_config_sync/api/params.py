"""What handlers share: query parameters (page size, cursor, campaign), their bounds,
and the app state key of the metrics."""

from typing import Annotated

from litestar.params import Parameter

from core_voice_contracts.admin_api import MAX_PAGE_LIMIT

METRICS_STATE = "metrics"
MAX_VERSION = 2**31 - 1

Limit = Annotated[int, Parameter(ge=1, le=MAX_PAGE_LIMIT, description="page size", required=False)]
Cursor = Annotated[
    str | None,
    Parameter(
        max_length=64,
        pattern=r"^[A-Za-z0-9+][A-Za-z0-9_+-]*$",
        description="next_cursor of the previous page",
        required=False,
    ),
]
CampaignFilter = Annotated[
    str | None,
    Parameter(
        max_length=64,
        description="merge this campaign's overrides (if the agent is in it)",
        required=False,
    ),
]
