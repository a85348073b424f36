"""GET /api/v1/compliance/report in PDF, CSV and JSON: the same content, audited."""

from __future__ import annotations

import csv
import hashlib
import io
import json
from datetime import timedelta

import pytest
from django.utils import timezone
from pypdf import PdfReader

from apps.accounts.models import TotpDevice
from apps.compliance.models import ChecklistItem
from apps.compliance.services import compliance_checks_run, evidence_add
from apps.incidents.models import Incident
from tests.compliance.conftest import assert_error, audit_events, item

REPORT = "/api/v1/compliance/report"


@pytest.fixture
def state(actors):
    """Some history: statuses, evidence, check results, incidents, audit events."""
    officer = actors["security_officer"]
    for role in ("admin", "security_officer"):
        TotpDevice.objects.create(user=actors[role], name="phone", confirmed=True)
    ChecklistItem.objects.filter(key="auth-mfa").update(status="implemented", owner=officer)
    ChecklistItem.objects.filter(key="privacy-differential").update(status="not_applicable")
    evidence_add(actor=officer, item=item("auth-mfa"), url="https://wiki.example/mfa")
    evidence_add(actor=officer, item=item("auth-mfa"), text='=HYPERLINK("x") formulas stay text')
    compliance_checks_run(actor=officer)
    detected = timezone.now() - timedelta(hours=3)
    Incident.objects.create(
        title="Key leak",
        severity="sev1",
        status="contained",
        detected_at=detected,
        contained_at=detected + timedelta(minutes=30),
    )
    Incident.objects.create(title="Scan", severity="sev3", detected_at=detected)
    return officer


def pdf_text(content: bytes) -> str:
    return "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(content)).pages)


@pytest.mark.django_db
def test_the_pdf_report_has_every_part(api_client, actors, state):
    api_client.force_authenticate(actors["auditor"])

    response = api_client.get(REPORT, {"framework": "checklist", "format": "pdf"})

    assert response.status_code == 200, response.content[:300]
    assert response["Content-Type"] == "application/pdf"
    disposition = response["Content-Disposition"]
    assert disposition.startswith('attachment; filename="bulwark-compliance-checklist-')
    assert disposition.endswith('.pdf"')
    reader = PdfReader(io.BytesIO(response.content))
    assert len(reader.pages) >= 5
    title_page = reader.pages[0].extract_text()
    assert "Bulwark compliance report" in title_page and "Security checklist" in title_page
    text = pdf_text(response.content)
    for expected in (
        "Summary per framework",
        "GDPR",
        "HIPAA",
        "SOC 2",
        "Multi-factor authentication (MFA)",
        "Implemented",
        "https://wiki.example/mfa",
        "Access tokens live 15 minutes",
        "Audit trail",
        "Verified",
        "Incidents",
        "2 in total, 2 open",
        "mean 30 min 0 s",
    ):
        assert expected in text, expected
    [event] = audit_events("compliance.report.generated")
    assert event["details"]["format"] == "pdf" and event["details"]["framework"] == "checklist"
    assert event["details"]["sha256"] == hashlib.sha256(response.content).hexdigest()


@pytest.mark.django_db
def test_the_json_report_holds_the_same_content(api_client, actors, state):
    api_client.force_authenticate(actors["auditor"])

    response = api_client.get(REPORT, {"framework": "gdpr", "format": "json"})

    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    assert response["Content-Disposition"].endswith('.json"')
    data = json.loads(response.content)
    assert set(data) == {"report", "summary", "items", "audit", "incidents"}
    assert data["report"]["framework"] == "gdpr" and data["report"]["items"] == len(data["items"])
    assert all("gdpr" in {c["framework"] for c in entry["controls"]} for entry in data["items"])
    summary = {row["framework"]: row for row in data["summary"]}
    assert set(summary) == {"checklist", "gdpr", "hipaa", "soc2"}
    assert summary["checklist"]["implemented"] == 1
    assert summary["checklist"]["applicable"] == summary["checklist"]["items"] - 1
    mfa = next(entry for entry in data["items"] if entry["key"] == "auth-mfa")
    assert mfa["status"] == "implemented" and mfa["owner"] == state.username
    assert [e["kind"] for e in mfa["evidence"]] == ["link", "text"]
    assert mfa["check"]["result"] == "pass"
    assert data["audit"]["verified"] is True and len(data["audit"]["head"]) == 64
    assert data["incidents"]["total"] == 2 and data["incidents"]["contained"] == 1
    assert data["incidents"]["time_to_contain_seconds"]["mean"] == 1800.0


@pytest.mark.django_db
def test_the_csv_report_holds_the_same_content_and_no_formula(api_client, actors, state):
    api_client.force_authenticate(actors["security_officer"])

    response = api_client.get(REPORT, {"format": "csv"})

    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"].endswith('.csv"')
    blocks = response.content.decode().split("\r\n\r\n")
    rows = [list(csv.reader(io.StringIO(block))) for block in blocks]
    assert [block[0][0] for block in rows] == [
        "report",
        "framework",
        "category",
        "audit",
        "incidents",
    ]
    items = rows[2]
    assert len(items) - 1 == ChecklistItem.objects.count()
    mfa = next(row for row in items if row[1] == "auth-mfa")
    header = items[0]
    assert mfa[header.index("status")] == "implemented"
    assert mfa[header.index("check_result")] == "pass"
    assert "https://wiki.example/mfa" in mfa[header.index("evidence")]
    assert "text: =HYPERLINK" in mfa[header.index("evidence")]  # inside a cell, after "text: "
    assert not any(cell.startswith("=") for block in rows for row in block for cell in row)
    assert dict(rows[3][1:])["verified"] == "true"
    assert dict(rows[4][1:])["time_to_contain_mean_seconds"] == "1800.0"


@pytest.mark.django_db
def test_a_notes_formula_is_defused_in_csv(api_client, actors):
    ChecklistItem.objects.filter(key="auth-mfa").update(notes="=cmd|' /C calc'!A0")
    api_client.force_authenticate(actors["auditor"])
    content = api_client.get(REPORT, {"format": "csv"}).content.decode()
    assert "'=cmd|" in content and ",=cmd" not in content


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("query", "path"),
    [({"format": "docx"}, "format"), ({"framework": "iso27001"}, "framework")],
)
def test_an_unknown_report_format_or_framework_is_400_and_not_audited(
    api_client, actors, query, path
):
    api_client.force_authenticate(actors["auditor"])
    error = assert_error(api_client.get(REPORT, query), 400, "invalid_input")
    assert error["details"][0]["path"] == path
    assert audit_events("compliance.report.generated") == []


@pytest.mark.django_db
def test_the_default_report_is_the_checklist_as_pdf_even_when_pdf_is_asked_for(api_client, actors):
    api_client.force_authenticate(actors["auditor"])
    response = api_client.get(REPORT, HTTP_ACCEPT="application/pdf")
    assert response.status_code == 200
    assert response["Content-Type"] == "application/pdf"
    assert "-checklist-" in response["Content-Disposition"]


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("role", "expected"),
    [("admin", 200), ("security_officer", 200), ("auditor", 200), ("ml_engineer", 403)],
)
def test_who_may_download_reports(api_client, actors, role, expected):
    api_client.force_authenticate(actors[role])
    assert api_client.get(REPORT, {"format": "json"}).status_code == expected
