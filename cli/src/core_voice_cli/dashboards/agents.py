"""Per agent and per campaign: how many calls, how they ended, and where a turn's time goes."""

from grafana_foundation_sdk.builders.dashboard import Dashboard, Row

from core_voice_cli.dashboards.panels import TENANT_AGENT, Q, board, graph, or_zero, p, rate

UID = "corevoice-agents"


def build() -> Dashboard:
    sel = TENANT_AGENT
    return (
        board(
            UID,
            "Core Voice / Agents and campaigns",
            "Calls, outcomes and latency by turn stage, per agent and campaign.",
        )
        .with_row(Row("Calls"))
        .with_panel(
            graph(
                "Calls started by agent",
                "Calls started per second, per agent.",
                "ops",
                Q(rate("corevoice_calls_started_total", sel, "agent"), "{{agent}}"),
                stacked=True,
            )
        )
        .with_panel(
            graph(
                "Calls started by campaign",
                'Calls started per second, per campaign ("none": inbound, no campaign).',
                "ops",
                Q(rate("corevoice_calls_started_total", sel, "campaign"), "{{campaign}}"),
                stacked=True,
            )
        )
        .with_panel(
            graph(
                "Active calls by agent",
                "Calls in progress per agent.",
                "short",
                Q(f"sum by (agent) (corevoice_calls_active{{{sel}}})", "{{agent}}"),
                stacked=True,
            )
        )
        .with_panel(
            graph(
                "Calls by config version",
                "Which version of each agent's config calls start on: an edit shows as a new line.",
                "ops",
                Q(
                    rate("corevoice_calls_started_total", sel, "agent, config_version"),
                    "{{agent}} v{{config_version}}",
                ),
            )
        )
        .with_row(Row("Outcomes"))
        .with_panel(
            graph(
                "Call outcomes by agent",
                "Calls ended normally, and calls failed by reason (0 when none failed).",
                "ops",
                Q(rate("corevoice_calls_ended_total", sel, "agent"), "{{agent}} ended"),
                Q(
                    or_zero(rate("corevoice_calls_failed_total", sel, "agent, reason")),
                    "{{agent}} failed {{reason}}",
                ),
            )
        )
        .with_panel(
            graph(
                "Jobs by agent",
                "Jobs requested by a room and accepted by a worker, per agent.",
                "ops",
                Q(rate("corevoice_jobs_requested_total", sel, "agent"), "{{agent}} requested"),
                Q(rate("corevoice_jobs_accepted_total", sel, "agent"), "{{agent}} accepted"),
            )
        )
        .with_panel(
            graph(
                "Rejected jobs by reason",
                'Rooms no agent took, by reason (agents never routed show as "other").',
                "ops",
                Q(
                    rate("corevoice_jobs_rejected_total", sel, "agent, reason"),
                    "{{agent}} {{reason}}",
                ),
            )
        )
        .with_panel(
            graph(
                "Call duration by campaign",
                "Median and 95th percentile call length per campaign.",
                "s",
                Q(p(0.5, "corevoice_call_duration_seconds", sel, "campaign"), "{{campaign}} p50"),
                Q(p(0.95, "corevoice_call_duration_seconds", sel, "campaign"), "{{campaign}} p95"),
            )
        )
        .with_row(Row("Latency"))
        .with_panel(
            graph(
                "Turn latency by stage (p95)",
                "STT, end of turn, LLM time to first token, TTS time to first byte, end to end.",
                "s",
                Q(p(0.95, "corevoice_turn_latency_seconds", sel, "stage"), "{{stage}}"),
            )
        )
        .with_panel(
            graph(
                "Turn latency by stage (p50)",
                "The median of the same stages.",
                "s",
                Q(p(0.5, "corevoice_turn_latency_seconds", sel, "stage"), "{{stage}}"),
            )
        )
        .with_panel(
            graph(
                "End-to-end turn latency by agent (p95)",
                "From the caller's end of speech to the agent's first audio, per agent.",
                "s",
                Q(
                    p(0.95, "corevoice_turn_latency_seconds", f'{sel}, stage="e2e"', "agent"),
                    "{{agent}}",
                ),
            )
        )
        .with_panel(
            graph(
                "Greeting latency by agent",
                "From the agent joining to the first audio of its greeting.",
                "s",
                Q(p(0.5, "corevoice_greeting_latency_seconds", sel, "agent"), "{{agent}} p50"),
                Q(p(0.95, "corevoice_greeting_latency_seconds", sel, "agent"), "{{agent}} p95"),
            )
        )
    )
