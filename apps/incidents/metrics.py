"""Open incidents by severity for /metrics, computed at scrape time (registered with
apps.core.metrics by IncidentsConfig.ready; docs/metrics.md)."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import GaugeMetricFamily, Metric

from apps.incidents.selectors import incident_dashboard_figures


def collect_open() -> Iterator[Metric]:
    figures = incident_dashboard_figures()  # two grouped queries, whatever the incident count
    family = GaugeMetricFamily(
        "bulwark_incidents_open", "Incidents not closed, by severity.", labels=["severity"]
    )
    for row in figures["open_by_severity"]:
        family.add_metric([str(row["severity"])], row["count"])
    yield family
