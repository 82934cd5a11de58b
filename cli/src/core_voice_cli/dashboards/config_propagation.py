"""Config propagation: how fast an agent edit reaches the workers, and whether stale config is
ever used; config_sync's own serving figures beside it."""

from grafana_foundation_sdk.builders.dashboard import Dashboard, Row

from core_voice_cli.dashboards.panels import (
    TENANT,
    TENANT_AGENT,
    Q,
    board,
    graph,
    or_zero,
    p,
    rate,
)

UID = "corevoice-config"


def build() -> Dashboard:
    return (
        board(
            UID,
            "Core Voice / Config propagation",
            "Agent edits from commit to every worker pool; stale config; config_sync serving.",
        )
        .with_row(Row("Propagation"))
        .with_panel(
            graph(
                "Config changes by kind",
                "Agent and campaign changes committed, per second.",
                "ops",
                Q(rate("corevoice_config_changes_total", TENANT_AGENT, "kind"), "{{kind}}"),
            )
        )
        .with_panel(
            graph(
                "Commit to workers (p95)",
                "From the commit to the first worker pool holding it, and to every pool.",
                "s",
                Q(p(0.95, "corevoice_config_propagation_seconds", TENANT, "target"), "{{target}}"),
            )
        )
        .with_panel(
            graph(
                "Commit to workers (p50)",
                "The median of the same.",
                "s",
                Q(p(0.5, "corevoice_config_propagation_seconds", TENANT, "target"), "{{target}}"),
            )
        )
        .with_panel(
            graph(
                "Incomplete propagations",
                "Changes some worker pool never confirmed within the deadline (0 when none).",
                "ops",
                Q(
                    or_zero(rate("corevoice_config_propagation_incomplete_total", TENANT)),
                    "incomplete",
                ),
            )
        )
        .with_row(Row("Stale config"))
        .with_panel(
            graph(
                "Stale configs held",
                "Configs workers hold that are older than the committed version.",
                "short",
                Q("max(corevoice_workers_stale_configs)", "fleet"),
                Q("max by (worker_id) (corevoice_worker_config_stale)", "{{worker_id}}"),
            )
        )
        .with_panel(
            graph(
                "Stale config served",
                "Calls that started on a config known to be stale (0 when none).",
                "ops",
                Q(
                    or_zero(rate("corevoice_calls_stale_config_total", TENANT_AGENT, "agent")),
                    "calls {{agent}}",
                ),
                Q(
                    or_zero(rate("corevoice_worker_config_stale_served_total", by="worker_id")),
                    "worker {{worker_id}}",
                ),
            )
        )
        .with_row(Row("Workers' config"))
        .with_panel(
            graph(
                "Config lookups",
                "Workers' config lookups answered from their mirror (hit) or fetched (miss).",
                "ops",
                Q(
                    rate("corevoice_worker_config_lookups_hit_total", by="worker_id"),
                    "{{worker_id}} hit",
                ),
                Q(
                    rate("corevoice_worker_config_lookups_miss_total", by="worker_id"),
                    "{{worker_id}} miss",
                ),
            )
        )
        .with_panel(
            graph(
                "Config fetch time",
                "Time a worker takes to fetch a config it does not hold.",
                "s",
                Q(p(0.5, "corevoice_worker_config_fetch_seconds", ""), "p50"),
                Q(p(0.95, "corevoice_worker_config_fetch_seconds", ""), "p95"),
            )
        )
        .with_panel(
            graph(
                "Configs held",
                "Agent configs each worker pool holds in its mirror.",
                "short",
                Q("max by (worker_id) (corevoice_worker_configs)", "{{worker_id}}"),
            )
        )
        .with_panel(
            graph(
                "Config refused and fetch errors",
                "Lookups refused (unknown or deleted agent) and failed fetches (0 when none).",
                "ops",
                Q(or_zero(rate("corevoice_worker_config_refused_total")), "refused"),
                Q(or_zero(rate("corevoice_worker_config_fetch_errors_total")), "fetch errors"),
            )
        )
        .with_row(Row("config_sync"))
        .with_panel(
            graph(
                "Runtime config requests",
                "Time config_sync takes to answer a worker's config request, by outcome.",
                "s",
                Q(
                    p(0.95, "corevoice_config_sync_config_get_seconds", "", "outcome"),
                    "{{outcome}} p95",
                ),
            )
        )
        .with_panel(
            graph(
                "Runtime config cache",
                "config_sync's runtime-config cache hits and misses.",
                "ops",
                Q(rate("corevoice_config_sync_cache_requests_total", by="result"), "{{result}}"),
            )
        )
        .with_panel(
            graph(
                "Outbox pending",
                "Changes committed but not yet published to the bus.",
                "short",
                Q("max(corevoice_config_sync_outbox_pending)", "pending"),
                width=6,
            )
        )
        .with_panel(
            graph(
                "Outbox publish time",
                "Time from the commit to the change's publication on the bus.",
                "s",
                Q(p(0.95, "corevoice_config_sync_outbox_publish_seconds", ""), "p95"),
                width=6,
            )
        )
        .with_panel(
            graph(
                "Room routing",
                "Time config_sync takes to resolve a room to an agent, by outcome.",
                "s",
                Q(
                    p(0.95, "corevoice_config_sync_routing_resolve_seconds", "", "outcome"),
                    "{{outcome}} p95",
                ),
            )
        )
        .with_panel(
            graph(
                "Admin API requests",
                "config_sync HTTP requests per second by route and status.",
                "ops",
                Q(
                    rate("corevoice_config_sync_http_requests_total", by="route, method, status"),
                    "{{method}} {{route}} {{status}}",
                ),
            )
        )
        .with_panel(
            graph(
                "Admin API latency (p95)",
                "config_sync HTTP request time by route.",
                "s",
                Q(
                    p(0.95, "corevoice_config_sync_http_request_seconds", "", "route, method"),
                    "{{method}} {{route}}",
                ),
            )
        )
        .with_panel(
            graph(
                "config_sync errors by type",
                "Errors config_sync counted, per second (0 when none).",
                "ops",
                Q(or_zero(rate("corevoice_config_sync_errors_total", by="type")), "{{type}}"),
            )
        )
    )
