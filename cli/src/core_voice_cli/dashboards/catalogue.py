"""The metric names the services export: the contract dashboards and alerts are written against.

Names and labels are agreed with telemetry and each service (docs/metrics.md). Dashboards
and alert rules may use only these; the unit tests parse every query and check.
"""

import re
from typing import Final

HISTOGRAM_SUFFIXES: Final = ("_bucket", "_sum", "_count")

COUNTERS: Final = frozenset(
    {
        # telemetry: the events on the bus, as metrics
        "corevoice_jobs_requested_total",
        "corevoice_jobs_dispatched_total",
        "corevoice_jobs_accepted_total",
        "corevoice_jobs_rejected_total",
        "corevoice_jobs_expired_total",
        "corevoice_calls_started_total",
        "corevoice_calls_ended_total",
        "corevoice_calls_failed_total",
        "corevoice_calls_stale_config_total",
        "corevoice_config_changes_total",
        "corevoice_config_propagation_incomplete_total",
        "corevoice_telemetry_poison_messages_total",
        "corevoice_telemetry_feed_restarts_total",
        "corevoice_telemetry_label_overflow_total",
        # voice worker pool
        "corevoice_worker_config_lookups_hit_total",
        "corevoice_worker_config_lookups_miss_total",
        "corevoice_worker_config_refused_total",
        "corevoice_worker_config_stale_served_total",
        "corevoice_worker_config_fetch_errors_total",
        "corevoice_worker_calls_lost_total",
        "corevoice_worker_poison_messages_total",
        "corevoice_worker_errors_total",
        # config_sync
        "corevoice_config_sync_http_requests_total",
        "corevoice_config_sync_cache_requests_total",
        "corevoice_config_sync_errors_total",
        # dispatcher
        "corevoice_dispatcher_webhooks_total",
        "corevoice_dispatcher_jobs_total",
        "corevoice_dispatcher_errors_total",
    }
)

GAUGES: Final = frozenset(
    {
        "corevoice_calls_active",
        "corevoice_workers",
        "corevoice_workers_draining",
        "corevoice_workers_capacity",
        "corevoice_workers_active_calls",
        "corevoice_workers_utilisation",
        "corevoice_workers_stale_configs",
        "corevoice_telemetry_feed_up",
        "corevoice_telemetry_consumer_pending",
        "corevoice_worker_capacity",
        "corevoice_worker_active_calls",
        "corevoice_worker_utilisation",
        "corevoice_worker_draining",
        "corevoice_worker_configs",
        "corevoice_worker_config_stale",
        "corevoice_worker_call_events_queued",
        "corevoice_config_sync_outbox_pending",
        "corevoice_dispatcher_consumer_pending",
        "corevoice_dispatcher_capacity_waiting",
    }
)

HISTOGRAMS: Final = frozenset(
    {
        "corevoice_call_duration_seconds",
        "corevoice_dispatch_latency_seconds",
        "corevoice_greeting_latency_seconds",
        "corevoice_turn_latency_seconds",
        "corevoice_config_propagation_seconds",
        "corevoice_worker_config_fetch_seconds",
        "corevoice_worker_turn_latency_seconds",
        "corevoice_worker_greeting_latency_seconds",
        "corevoice_config_sync_http_request_seconds",
        "corevoice_config_sync_config_get_seconds",
        "corevoice_config_sync_outbox_publish_seconds",
        "corevoice_config_sync_routing_resolve_seconds",
        "corevoice_dispatcher_webhook_seconds",
        "corevoice_dispatcher_dispatch_seconds",
    }
)

SERIES_NAMES: Final = frozenset(
    COUNTERS | GAUGES | {name + suffix for name in HISTOGRAMS for suffix in HISTOGRAM_SUFFIXES}
)
"""Every name a PromQL selector may use: counters, gauges and the histograms' series."""

TENANT_LABELLED: Final = frozenset(
    {
        "corevoice_jobs_requested_total",
        "corevoice_jobs_dispatched_total",
        "corevoice_jobs_accepted_total",
        "corevoice_jobs_rejected_total",
        "corevoice_jobs_expired_total",
        "corevoice_calls_started_total",
        "corevoice_calls_ended_total",
        "corevoice_calls_failed_total",
        "corevoice_calls_stale_config_total",
        "corevoice_calls_active",
        "corevoice_call_duration_seconds",
        "corevoice_dispatch_latency_seconds",
        "corevoice_greeting_latency_seconds",
        "corevoice_turn_latency_seconds",
        "corevoice_config_changes_total",
        "corevoice_config_propagation_seconds",
        "corevoice_config_propagation_incomplete_total",
    }
)
"""Telemetry's series labelled by tenant: dashboards filter them by ``$tenant``."""

AGENT_LABELLED: Final = TENANT_LABELLED - {
    "corevoice_config_propagation_seconds",
    "corevoice_config_propagation_incomplete_total",
}
"""Those also labelled by agent: dashboards filter them by ``$agent`` too."""

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_DROPPED = re.compile(
    r"\{[^}]*\}"  # label matchers
    r"|\[[^\]]*\]"  # range and subquery windows
    r"|\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)"  # label lists
)
_NAME = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")
_KEYWORDS = frozenset(
    {"and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring", "inf", "nan"}
)


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (function names and keywords left out).

    A small scanner, not a parser: enough for the dashboards' and alert rules' own queries,
    which the tests check against :data:`SERIES_NAMES`.
    """
    text = _DROPPED.sub(" ", _STRING.sub('""', expr))
    names = set()
    for match in _NAME.finditer(text):
        rest = text[match.end() :].lstrip()
        if rest.startswith("(") or match.group().lower() in _KEYWORDS:
            continue
        if match.start() > 0 and (
            text[match.start() - 1].isdigit() or text[match.start() - 1] == "."
        ):
            continue  # exponent or unit of a number literal (1e-9, 5m)
        names.add(match.group())
    return names


def base_name(series: str) -> str:
    """A histogram's name for one of its series (``_bucket`` etc.); other names unchanged."""
    for suffix in HISTOGRAM_SUFFIXES:
        if series.endswith(suffix) and series.removesuffix(suffix) in HISTOGRAMS:
            return series.removesuffix(suffix)
    return series
