"""The downloads that the API and the pages share: an evidence file, decrypted, and a generated
report, each as an attachment."""

from __future__ import annotations

from typing import Any

from django.http import HttpResponse
from django.utils.http import content_disposition_header

from apps.compliance.errors import invalid
from apps.compliance.evidence import evidence_decrypt
from apps.compliance.models import EvidenceKind
from apps.compliance.reports import report_formats
from apps.compliance.selectors import (
    evidence_get,
)
from apps.compliance.services import (
    compliance_report_generate,
)
from apps.core.errors import NotFound


def evidence_file_response(*, actor: Any, evidence_id: Any) -> HttpResponse:
    """The decrypted file as an attachment (shared by the API and the UI)."""
    evidence = evidence_get(actor=actor, evidence_id=evidence_id)
    if evidence.kind != EvidenceKind.FILE:
        raise NotFound("This evidence is not a file.")
    content = evidence_decrypt(
        evidence_id=str(evidence.id),
        sha256=evidence.sha256,
        data_key_sealed=evidence.data_key_sealed,
        ciphertext=bytes(evidence.ciphertext),
    )
    response = HttpResponse(content, content_type=evidence.content_type)
    response["Content-Disposition"] = content_disposition_header(
        as_attachment=True, filename=evidence.file_name
    )
    return response


def report_response(*, actor: Any, framework: str, format: str) -> HttpResponse:
    """The generated report as an attachment (shared by the API and the UI)."""
    if format not in report_formats():
        raise invalid("format", f"must be one of {', '.join(report_formats())}")
    report = compliance_report_generate(actor=actor, framework=framework, format=format)
    response = HttpResponse(report.content, content_type=report.content_type)
    response["Content-Disposition"] = content_disposition_header(
        as_attachment=True, filename=report.file_name
    )
    return response
