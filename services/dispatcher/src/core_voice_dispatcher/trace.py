"""W3C trace context in NATS headers, so one trace runs webhook -> job -> dispatch -> call.

The dispatcher has no tracer of its own: it continues an incoming ``traceparent`` (or
starts one) and carries it from the webhook to the job event and from the job event to
its outcome, where any OpenTelemetry-instrumented consumer picks it up.
"""

import re
import secrets
from collections.abc import Mapping

TRACEPARENT = "traceparent"
_TRACEPARENT_RE = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")


def child_traceparent(parent: str | None) -> str:
    """A new span in ``parent``'s trace, or the root of a new sampled trace."""
    match = _TRACEPARENT_RE.match(parent or "")
    if match is None or match.group(1) == "0" * 32:
        return f"00-{secrets.token_hex(16)}-{secrets.token_hex(8)}-01"
    return f"00-{match.group(1)}-{secrets.token_hex(8)}-{match.group(3)}"


def trace_headers(source: Mapping[str, str] | None) -> dict[str, str]:
    """Headers for a message caused by one carrying ``source`` headers."""
    return {TRACEPARENT: child_traceparent((source or {}).get(TRACEPARENT))}
