"""Dispatcher: webhooks in, jobs out, how long that takes, what is refused and what waits."""

from grafana_foundation_sdk.builders.dashboard import Dashboard, Row

from core_voice_cli.dashboards.panels import TENANT_AGENT, Q, board, graph, or_zero, p, rate

UID = "corevoice-dispatcher"


def build() -> Dashboard:
    sel = TENANT_AGENT
    return (
        board(
            UID,
            "Core Voice / Dispatcher",
            "LiveKit webhooks, dispatch latency, rejections and consumer lag.",
        )
        .with_row(Row("Webhooks"))
        .with_panel(
            graph(
                "Webhooks by event and outcome",
                "LiveKit webhooks the dispatcher answered, per second.",
                "ops",
                Q(
                    rate("corevoice_dispatcher_webhooks_total", by="event, outcome"),
                    "{{event}} {{outcome}}",
                ),
            )
        )
        .with_panel(
            graph(
                "Webhook handling time",
                "Time from a webhook's arrival to the dispatcher's answer.",
                "s",
                Q(p(0.5, "corevoice_dispatcher_webhook_seconds", ""), "p50"),
                Q(p(0.95, "corevoice_dispatcher_webhook_seconds", ""), "p95"),
            )
        )
        .with_row(Row("Dispatch latency"))
        .with_panel(
            graph(
                "Webhook to agent (p95)",
                "From the room's webhook to the dispatch created, the job accepted, the agent joined.",
                "s",
                Q(p(0.95, "corevoice_dispatch_latency_seconds", sel, "stage"), "{{stage}}"),
            )
        )
        .with_panel(
            graph(
                "Webhook to agent (p50)",
                "The median of the same stages.",
                "s",
                Q(p(0.5, "corevoice_dispatch_latency_seconds", sel, "stage"), "{{stage}}"),
            )
        )
        .with_panel(
            graph(
                "LiveKit dispatch calls (p95)",
                "Time the dispatcher's CreateDispatch call to LiveKit takes, by outcome.",
                "s",
                Q(p(0.95, "corevoice_dispatcher_dispatch_seconds", "", "outcome"), "{{outcome}}"),
            )
        )
        .with_panel(
            graph(
                "Dispatcher jobs by outcome",
                "What became of the jobs the dispatcher consumed.",
                "ops",
                Q(rate("corevoice_dispatcher_jobs_total", by="outcome"), "{{outcome}}"),
            )
        )
        .with_row(Row("Jobs and rejections"))
        .with_panel(
            graph(
                "Jobs",
                "Jobs requested, dispatched and accepted per second; expired ones (0 when none).",
                "ops",
                Q(rate("corevoice_jobs_requested_total", sel), "requested"),
                Q(rate("corevoice_jobs_dispatched_total", sel), "dispatched"),
                Q(rate("corevoice_jobs_accepted_total", sel), "accepted"),
                Q(or_zero(rate("corevoice_jobs_expired_total", sel)), "expired"),
            )
        )
        .with_panel(
            graph(
                "Rejections by reason",
                "Rooms refused: unknown agent, no route, invalid room, and the like.",
                "ops",
                Q(rate("corevoice_jobs_rejected_total", sel, "reason"), "{{reason}}"),
            )
        )
        .with_row(Row("Lag"))
        .with_panel(
            graph(
                "Consumer lag",
                "Messages waiting for the dispatcher's and telemetry's consumers.",
                "short",
                Q(
                    "max by (consumer) (corevoice_dispatcher_consumer_pending)",
                    "dispatcher {{consumer}}",
                ),
                Q(
                    "max by (stream) (corevoice_telemetry_consumer_pending)",
                    "telemetry {{stream}}",
                ),
            )
        )
        .with_panel(
            graph(
                "Waiting for capacity",
                "Jobs the dispatcher holds until a worker has room.",
                "short",
                Q("sum(corevoice_dispatcher_capacity_waiting)", "waiting"),
            )
        )
        .with_panel(
            graph(
                "Dispatcher errors by type",
                "Errors the dispatcher counted, per second (0 when none).",
                "ops",
                Q(or_zero(rate("corevoice_dispatcher_errors_total", by="type")), "{{type}}"),
            )
        )
    )
