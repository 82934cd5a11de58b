"""The pieces every Core Voice dashboard shares: its datasource and template variables,
panel builders with fixed defaults, and the label selectors panels filter by.

Every panel queries the dashboard's ``$datasource``; every telemetry panel filters by
``$tenant`` and ``$agent`` (multi-value, "All" = ``.*``), so one Grafana serves any install.
"""

from collections.abc import Sequence
from dataclasses import dataclass

from grafana_foundation_sdk.builders import common as common_builders
from grafana_foundation_sdk.builders import dashboard as dash
from grafana_foundation_sdk.builders import prometheus, stat, timeseries
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models.dashboard import (
    DataSourceRef,
    VariableOption,
    VariableRefresh,
    VariableSort,
)

DATASOURCE = DataSourceRef(type_val="prometheus", uid="${datasource}")
"""What every panel and query variable reads from: the dashboard's datasource variable."""

VARIABLE_NAMES = ("datasource", "tenant", "agent")

TENANT_AGENT = 'tenant=~"$tenant", agent=~"$agent"'
"""Selector for telemetry series labelled by tenant and agent."""
TENANT = 'tenant=~"$tenant"'
"""Selector for telemetry series labelled by tenant only."""

# The label values come from the first counter of every call: a tenant or agent appears in
# the pickers as soon as one job was requested for it.
_LABEL_SOURCE = "corevoice_jobs_requested_total"

TAGS = ["core-voice"]


def _all_option() -> VariableOption:
    return VariableOption(selected=True, text="All", value="$__all")


def variables() -> list[dash.DatasourceVariable | dash.QueryVariable]:
    """Datasource, tenant and agent pickers; agent follows the tenants chosen."""
    datasource = dash.DatasourceVariable("datasource").label("Data source").type("prometheus")

    def label_values(name: str, label: str, query: str) -> dash.QueryVariable:
        return (
            dash.QueryVariable(name)
            .label(label)
            .datasource(DATASOURCE)
            .query({"qryType": 1, "query": query, "refId": "PrometheusVariableQueryEditor"})
            .refresh(VariableRefresh.ON_TIME_RANGE_CHANGED)
            .sort(VariableSort.ALPHABETICAL_ASC)
            .multi(True)
            .include_all(True)
            .all_value(".*")
            .current(_all_option())
        )

    return [
        datasource,
        label_values("tenant", "Tenant", f"label_values({_LABEL_SOURCE}, tenant)"),
        label_values("agent", "Agent", f"label_values({_LABEL_SOURCE}{{{TENANT}}}, agent)"),
    ]


@dataclass(frozen=True)
class Q:
    """One query of a panel: PromQL and the legend Grafana draws for each series."""

    expr: str
    legend: str = "__auto"


def _targets(queries: Sequence[Q]) -> list[prometheus.Dataquery]:
    return [
        prometheus.Dataquery()
        .expr(q.expr)
        .legend_format(q.legend)
        .ref_id(chr(ord("A") + i))
        .datasource(DATASOURCE)
        for i, q in enumerate(queries)
    ]


def graph(
    title: str,
    description: str,
    unit: str,
    *queries: Q,
    width: int = 12,
    height: int = 8,
    stacked: bool = False,
) -> timeseries.Panel:
    """A time series panel; ``description`` says what question it answers."""
    panel = (
        timeseries.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .unit(unit)
        .min(0)
        .span(width)
        .height(height)
        .fill_opacity(10)
        .legend(
            common_builders.VizLegendOptions()
            .display_mode(common.LegendDisplayMode.TABLE)
            .placement(common.LegendPlacement.BOTTOM)
            .show_legend(True)
            .calcs(["lastNotNull", "max"])
        )
    )
    if stacked:
        panel = panel.stacking(common_builders.StackingConfig().mode(common.StackingMode.NORMAL))
    for target in _targets(queries):
        panel = panel.with_target(target)
    return panel


def single(
    title: str, description: str, unit: str, query: Q, *, width: int = 4, height: int = 4
) -> stat.Panel:
    """A stat panel: one current figure with its sparkline."""
    panel = (
        stat.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .unit(unit)
        .span(width)
        .height(height)
        .graph_mode(common.BigValueGraphMode.AREA)
        .reduce_options(common_builders.ReduceDataOptions().calcs(["lastNotNull"]))
    )
    for target in _targets([query]):
        panel = panel.with_target(target)
    return panel


def board(uid: str, title: str, description: str) -> dash.Dashboard:
    """A dashboard with the shared settings and variables; panels are added by the caller."""
    builder = (
        dash.Dashboard(title)
        .uid(uid)
        .description(description)
        .tags(TAGS)
        .editable()
        .refresh("30s")
        .time("now-1h", "now")
        .timezone(common.TimeZoneBrowser)
    )
    for variable in variables():
        builder = builder.with_variable(variable)
    return builder


def _series(metric: str, selector: str) -> str:
    return f"{metric}{{{selector}}}" if selector else metric


def p(quantile: float, metric: str, selector: str, by: str = "") -> str:
    """``histogram_quantile`` of a histogram over ``$__rate_interval``, split by ``by``."""
    labels = f"le, {by}" if by else "le"
    return (
        f"histogram_quantile({quantile}, sum by ({labels}) "
        f"(rate({_series(metric + '_bucket', selector)}[$__rate_interval])))"
    )


def rate(metric: str, selector: str = "", by: str = "") -> str:
    """Per-second rate of a counter, summed (by ``by``)."""
    grouping = f"sum by ({by}) " if by else "sum"
    return f"{grouping}(rate({_series(metric, selector)}[$__rate_interval]))"


def or_zero(expr: str) -> str:
    """``expr``, or a single 0 series when it has none.

    For failure and error counters: labelled counters exist only once incremented, and an
    operator wants a flat 0 line for "no errors", not "No data" (which also shows when the
    scrape is broken).
    """
    return f"({expr}) or on() vector(0)"
