"""Fleet: is the platform taking calls, how full is the worker pool, and is anything failing."""

from grafana_foundation_sdk.builders.dashboard import Dashboard, Row

from core_voice_cli.dashboards.panels import TENANT_AGENT, Q, board, graph, or_zero, p, rate, single

UID = "corevoice-fleet"


def build() -> Dashboard:
    calls = TENANT_AGENT
    return (
        board(UID, "Core Voice / Fleet", "Calls, workers, utilisation and errors across the fleet.")
        .with_row(Row("Now"))
        .with_panel(
            single(
                "Active calls",
                "Calls in progress now (telemetry, from CallStarted/CallEnded).",
                "short",
                Q(f"sum(corevoice_calls_active{{{calls}}})", "active"),
            )
        )
        .with_panel(
            single(
                "Calls per minute",
                "Calls started per minute.",
                "short",
                Q(f"{rate('corevoice_calls_started_total', calls)} * 60", "calls/min"),
            )
        )
        .with_panel(
            single(
                "Failed calls",
                "Calls that failed in the dashboard's time range (0 when none did).",
                "short",
                Q(
                    or_zero(f"sum(increase(corevoice_calls_failed_total{{{calls}}}[$__range]))"),
                    "failed",
                ),
            )
        )
        .with_panel(
            single(
                "Workers",
                "Worker pools reporting to telemetry; 0 means no call can be taken.",
                "short",
                Q("max(corevoice_workers)", "workers"),
            )
        )
        .with_panel(
            single(
                "Utilisation",
                "Active calls / capacity over the whole pool: the autoscaling figure.",
                "percentunit",
                Q("max(corevoice_workers_utilisation)", "utilisation"),
            )
        )
        .with_panel(
            single(
                "Stale configs held",
                "Agent configs workers hold that are older than the committed version.",
                "short",
                Q("max(corevoice_workers_stale_configs)", "stale"),
            )
        )
        .with_row(Row("Calls"))
        .with_panel(
            graph(
                "Calls per second",
                "Calls started, ended and failed per second.",
                "ops",
                Q(rate("corevoice_calls_started_total", calls), "started"),
                Q(rate("corevoice_calls_ended_total", calls), "ended"),
                Q(or_zero(rate("corevoice_calls_failed_total", calls)), "failed"),
            )
        )
        .with_panel(
            graph(
                "Active calls by tenant",
                "Who is using the fleet right now.",
                "short",
                Q(f"sum by (tenant) (corevoice_calls_active{{{calls}}})", "{{tenant}}"),
                stacked=True,
            )
        )
        .with_panel(
            graph(
                "Call failures by reason",
                "Why calls fail (0 when none do).",
                "ops",
                Q(or_zero(rate("corevoice_calls_failed_total", calls, "reason")), "{{reason}}"),
            )
        )
        .with_panel(
            graph(
                "Call duration",
                "Median and 95th percentile length of calls that ended.",
                "s",
                Q(p(0.5, "corevoice_call_duration_seconds", calls), "p50"),
                Q(p(0.95, "corevoice_call_duration_seconds", calls), "p95"),
            )
        )
        .with_row(Row("Workers"))
        .with_panel(
            graph(
                "Workers",
                "Worker pools up, and how many of them are draining (taking no new calls).",
                "short",
                Q("max(corevoice_workers)", "workers"),
                Q("max(corevoice_workers_draining)", "draining"),
            )
        )
        .with_panel(
            graph(
                "Capacity and active calls",
                "Calls the pool can hold against the calls it holds.",
                "short",
                Q("max(corevoice_workers_capacity)", "capacity"),
                Q("max(corevoice_workers_active_calls)", "active calls"),
            )
        )
        .with_panel(
            graph(
                "Utilisation",
                "Active calls / capacity, for the fleet and for each worker pool.",
                "percentunit",
                Q("max(corevoice_workers_utilisation)", "fleet"),
                Q("max by (worker_id) (corevoice_worker_utilisation)", "{{worker_id}}"),
            )
        )
        .with_panel(
            graph(
                "Active calls per worker",
                "Calls each worker pool holds, against its capacity.",
                "short",
                Q("max by (worker_id) (corevoice_worker_active_calls)", "{{worker_id}} active"),
                Q("max by (worker_id) (corevoice_worker_capacity)", "{{worker_id}} capacity"),
            )
        )
        .with_panel(
            graph(
                "Turn latency per worker (p95)",
                "Turn latency by stage as each worker pool measures it itself.",
                "s",
                Q(
                    p(0.95, "corevoice_worker_turn_latency_seconds", "", "worker_id, stage"),
                    "{{worker_id}} {{stage}}",
                ),
            )
        )
        .with_panel(
            graph(
                "Call events queued",
                "Call events a worker pool holds while it cannot publish them.",
                "short",
                Q("max by (worker_id) (corevoice_worker_call_events_queued)", "{{worker_id}}"),
            )
        )
        .with_row(Row("Errors"))
        .with_panel(
            graph(
                "Errors by service and type",
                "Errors each service counted, per second (0 when none).",
                "ops",
                Q(or_zero(rate("corevoice_worker_errors_total", by="type")), "worker {{type}}"),
                Q(
                    or_zero(rate("corevoice_config_sync_errors_total", by="type")),
                    "config_sync {{type}}",
                ),
                Q(
                    or_zero(rate("corevoice_dispatcher_errors_total", by="type")),
                    "dispatcher {{type}}",
                ),
            )
        )
        .with_panel(
            graph(
                "Calls lost and poison messages",
                "Calls lost with their worker, and bus messages skipped as unreadable (0 when none).",
                "ops",
                Q(or_zero(rate("corevoice_worker_calls_lost_total")), "calls lost"),
                Q(
                    or_zero(rate("corevoice_worker_poison_messages_total", by="feed")),
                    "worker {{feed}}",
                ),
                Q(
                    or_zero(rate("corevoice_telemetry_poison_messages_total", by="stream")),
                    "telemetry {{stream}}",
                ),
            )
        )
        .with_panel(
            graph(
                "Telemetry feeds",
                "1 while telemetry's consumer of each stream runs; restarts per second.",
                "short",
                Q("min by (stream) (corevoice_telemetry_feed_up)", "{{stream}} up"),
                Q(
                    or_zero(rate("corevoice_telemetry_feed_restarts_total", by="stream")),
                    "{{stream}} restarts",
                ),
            )
        )
        .with_panel(
            graph(
                "Labels folded into other",
                "Label values telemetry folded into 'other' to bound cardinality (0 when none).",
                "ops",
                Q(
                    or_zero(rate("corevoice_telemetry_label_overflow_total", by="label")),
                    "{{label}}",
                ),
            )
        )
    )
