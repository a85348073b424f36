"""The compliance UI at /compliance/: who sees what, and the forms doing what the API does
(the pages themselves, framework and item pages included: test_ui_pages.py)."""

from __future__ import annotations

import re

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

from apps.accounts.models import TotpDevice
from apps.compliance.models import ChecklistItem, CheckResult, Evidence
from apps.compliance.services import evidence_add
from tests.compliance.conftest import audit_events, item

PAGE = "/compliance/"


@pytest.fixture
def officer_client(client, actors, verified_login):
    return verified_login(client, actors["security_officer"])


@pytest.fixture
def auditor_client(client, actors):
    client.force_login(actors["auditor"])
    return client


@pytest.mark.django_db
def test_a_visitor_who_is_not_signed_in_goes_to_the_login_page(client, settings):
    response = client.get(PAGE)
    assert response.status_code == 302
    assert response["Location"] == f"{settings.LOGIN_URL}?next=/compliance/"


@pytest.mark.django_db
@pytest.mark.parametrize("role", ["ml_engineer", "api_client"])
def test_people_without_the_capability_get_403(client, actors, role):
    client.force_login(actors[role])
    assert client.get(PAGE).status_code == 403
    assert client.get(f"{PAGE}report?framework=checklist&format=pdf").status_code == 403


@pytest.mark.django_db
def test_a_privileged_session_without_verified_mfa_signs_in_again_or_enrols(client, actors):
    officer = actors["security_officer"]
    client.force_login(officer)
    assert client.get(PAGE)["Location"] == "/account/mfa/"
    TotpDevice.objects.create(user=officer, name="phone", confirmed=True)
    assert client.get(PAGE)["Location"].endswith("?next=/compliance/")


@pytest.mark.django_db
def test_an_auditor_sees_progress_items_checks_and_evidence_read_only(auditor_client, actors):
    officer = actors["security_officer"]
    ChecklistItem.objects.filter(key="auth-mfa").update(status="implemented", owner=officer)
    evidence_add(actor=officer, item=item("auth-mfa"), url="https://wiki.example/mfa")

    response = auditor_client.get(PAGE)

    assert response.status_code == 200
    html = response.content.decode()
    for framework in ("checklist", "gdpr", "hipaa", "soc2"):
        assert f'<progress id="progress-{framework}"' in html
    assert '<label for="progress-gdpr">GDPR</label>' in html
    assert "Multi-factor authentication (MFA)" in html and "Implemented" in html
    assert "Incident response plan" in html and "Post-mortem" in html
    assert "Download report" in html
    # Read-only: no form that changes anything.
    assert "Run checks now" not in html and 'method="post"' not in html.split("</header>", 1)[1]
    assert 'href="/static/compliance/compliance.css"' in html
    assert "<script" not in html.split("</header>", 1)[1]
    # The evidence is on the item's page, read-only too.
    page = auditor_client.get(f"{PAGE}items/{item('auth-mfa').id}").content.decode()
    assert 'href="https://wiki.example/mfa" rel="noopener noreferrer nofollow"' in page
    assert 'method="post"' not in page.split("</header>", 1)[1]


@pytest.mark.django_db
def test_the_page_filters_by_framework_and_category(auditor_client):
    html = auditor_client.get(PAGE, {"framework": "hipaa", "category": "input"}).content.decode()
    titles = re.findall(r'<tr id="item-([a-z-]+)">', html)
    assert titles == ["input-schema-validation", "input-sql-injection"]
    # Unknown values are ignored rather than failing the page.
    assert auditor_client.get(PAGE, {"framework": "pci"}).status_code == 200


@pytest.mark.django_db
def test_a_security_officer_updates_an_item(officer_client, actors):
    target = item("auth-mfa")
    engineer = actors["ml_engineer"]

    response = officer_client.post(
        f"{PAGE}items/{target.id}",
        {
            "auth-mfa-status": "implemented",
            "auth-mfa-owner": engineer.username,
            "auth-mfa-notes": "Enforced in admin and UI.",
            "framework": "gdpr",
        },
    )

    assert response.status_code == 302
    assert response["Location"] == f"/compliance/items/{target.id}"
    target.refresh_from_db()
    assert (target.status, target.owner, target.notes) == (
        "implemented",
        engineer,
        "Enforced in admin and UI.",
    )
    assert len(audit_events("compliance.item.updated")) == 1
    page = officer_client.get(response["Location"]).content.decode()
    assert "Saved “Multi-factor authentication (MFA)”." in page


@pytest.mark.django_db
def test_a_bad_update_shows_the_form_again_with_400(officer_client):
    target = item("auth-mfa")
    response = officer_client.post(
        f"{PAGE}items/{target.id}", {"auth-mfa-status": "done", "auth-mfa-owner": ""}
    )
    assert response.status_code == 400
    html = response.content.decode()
    assert "was not saved" in html and "Select a valid choice" in html
    # The item's page again, the refused choice kept out and the alert said.
    assert '<div class="alert" role="alert">' in html and "<h1>Multi-factor" in html
    target.refresh_from_db()
    assert target.status == "not_started"


@pytest.mark.django_db
def test_a_security_officer_adds_link_text_and_file_evidence(officer_client):
    target = item("infra-https")
    url = f"{PAGE}items/{target.id}/evidence"

    link = officer_client.post(url, {"infra-https-evidence-url": "https://ssl.example/report"})
    text = officer_client.post(url, {"infra-https-evidence-text": "TLS 1.3 only."})
    upload = SimpleUploadedFile("scan.pdf", b"%PDF-1.7\nscan", content_type="application/pdf")
    file = officer_client.post(url, {"infra-https-evidence-file": upload})

    assert [r.status_code for r in (link, text, file)] == [302, 302, 302]
    kinds = list(Evidence.objects.filter(item=target).values_list("kind", flat=True))
    assert kinds == ["link", "text", "file"]
    stored = Evidence.objects.get(kind="file")
    assert b"scan" not in bytes(stored.ciphertext)
    download = officer_client.get(f"{PAGE}evidence/{stored.id}")
    assert download.content == b"%PDF-1.7\nscan"
    assert download["Content-Disposition"] == 'attachment; filename="scan.pdf"'


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("fields", "status", "message"),
    [
        ({}, 400, "Give exactly one piece of evidence"),
        (
            {"infra-https-evidence-url": "javascript:alert(1)"},
            400,
            "Must be an http:// or https:// URL.",
        ),
        (
            {"infra-https-evidence-file": SimpleUploadedFile("a.gif", b"GIF89a", "image/gif")},
            415,
            "Image/gif is not an accepted type.",
        ),
    ],
)
def test_bad_evidence_is_shown_on_the_form(officer_client, fields, status, message):
    target = item("infra-https")
    response = officer_client.post(f"{PAGE}items/{target.id}/evidence", fields)
    assert response.status_code == status
    assert message in response.content.decode()
    assert not Evidence.objects.exists()


@pytest.mark.django_db
def test_an_evidence_file_over_the_limit_is_413(officer_client, settings):
    settings.COMPLIANCE_EVIDENCE_MAX_BYTES = 1000
    target = item("infra-https")
    big = SimpleUploadedFile("big.txt", b"a" * 5000, content_type="text/plain")
    response = officer_client.post(
        f"{PAGE}items/{target.id}/evidence", {"infra-https-evidence-file": big}
    )
    assert response.status_code == 413
    assert "larger than the limit of 1000 bytes" in response.content.decode()
    assert not Evidence.objects.exists()


@pytest.mark.django_db
def test_auditors_may_not_post(auditor_client):
    target = item("auth-mfa")
    assert (
        auditor_client.post(
            f"{PAGE}items/{target.id}", {"auth-mfa-status": "implemented"}
        ).status_code
        == 403
    )
    assert auditor_client.post(f"{PAGE}items/{target.id}/evidence", {}).status_code == 403
    assert auditor_client.post(f"{PAGE}checks/run").status_code == 403
    target.refresh_from_db()
    assert target.status == "not_started"


@pytest.mark.django_db
def test_forms_need_the_csrf_token(actors, verified_login):
    client = verified_login(Client(enforce_csrf_checks=True), actors["security_officer"])
    target = item("auth-mfa")
    assert (
        client.post(f"{PAGE}items/{target.id}", {"auth-mfa-status": "implemented"}).status_code
        == 403
    )
    assert (
        client.post(
            f"{PAGE}items/{target.id}/evidence", {"auth-mfa-evidence-text": "x"}
        ).status_code
        == 403
    )
    assert client.post(f"{PAGE}checks/run").status_code == 403
    page = client.get(PAGE)
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.content.decode())[1]
    response = client.post(
        f"{PAGE}items/{target.id}/evidence",
        {"auth-mfa-evidence-text": "with a token", "csrfmiddlewaretoken": token},
    )
    assert response.status_code == 302
    assert Evidence.objects.get().text == "with a token"


@pytest.mark.django_db
def test_running_checks_from_the_page(officer_client):
    response = officer_client.post(f"{PAGE}checks/run", {"category": "secrets"})
    assert response.status_code == 302 and response["Location"] == "/compliance/?category=secrets"
    assert CheckResult.objects.exists()
    assert "Automated checks ran:" in officer_client.get(response["Location"]).content.decode()


@pytest.mark.django_db
def test_reports_download_from_the_page(auditor_client):
    response = auditor_client.get(f"{PAGE}report", {"framework": "soc2", "format": "csv"})
    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"].startswith(
        'attachment; filename="bulwark-compliance-soc2-'
    )
    assert len(audit_events("compliance.report.generated")) == 1
    assert auditor_client.get(f"{PAGE}report", {"format": "docx"}).status_code == 400
