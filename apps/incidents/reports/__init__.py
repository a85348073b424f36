"""Incident reports: the data (the JSON export, and what the pages and the PDF show) and the
PDF. People appear by username while their audit pseudonym still maps to one (as in the UI),
else by the pseudonym alone."""

from apps.incidents.reports.data import format_duration, incident_report_data
from apps.incidents.reports.pdf import incident_report_pdf

__all__ = ["format_duration", "incident_report_data", "incident_report_pdf"]
