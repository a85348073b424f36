"""The incidents UI's pages, read side: who may see them, the list's filters, sorts and
counts per phase, the detail page's parts, and the create form."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.test import Client

from apps.incidents.models import Incident
from apps.incidents.services import incident_detector_hit
from tests.incidents.conftest import make_incident, move_to

pytestmark = pytest.mark.django_db

LIST = "/incidents/"


def page_text(response: Any) -> str:
    return re.sub(r"\s+", " ", response.content.decode())


def row_titles(response: Any) -> list[str]:
    """The incident titles of the list's table, top to bottom."""
    html = response.content.decode()
    body = html.split("<tbody>", 1)[1].split("</tbody>", 1)[0]
    return re.findall(r'<a href="/incidents/[0-9a-f-]+">([^<]+)</a>', body)


# --- who may see ----------------------------------------------------------------------


@pytest.mark.parametrize("path", ["", "new", "{id}", "{id}/postmortem", "{id}/report.pdf"])
def test_a_visitor_who_is_not_signed_in_is_sent_to_the_login_page(client, incident, path):
    url = LIST + path.format(id=incident.id)
    response = client.get(url)
    assert response.status_code == 302
    assert response["Location"] == f"/account/login?next={url}"


def test_a_post_by_a_visitor_who_is_not_signed_in_changes_nothing(client, incident):
    response = client.post(f"{LIST}{incident.id}/notes", {"text": "hello"})
    assert response.status_code == 302 and response["Location"].startswith("/account/login")
    assert not incident.timeline.filter(kind="note").exists()


@pytest.mark.parametrize("role", ["api_client", "ml_engineer"])
def test_people_without_incident_roles_get_the_403_page(client, actors, incident, role):
    client.force_login(actors[role])
    for url in (LIST, f"{LIST}{incident.id}", f"{LIST}{incident.id}/report.json"):
        response = client.get(url)
        assert response.status_code == 403
        assert "text/html" in response["Content-Type"]
        assert incident.title not in response.content.decode()


def test_a_security_officer_without_a_verified_authenticator_is_sent_to_sign_in(
    client, actors, incident
):
    from apps.accounts.models import TotpDevice

    officer = actors["security_officer"]
    TotpDevice.objects.create(user=officer, name="app", confirmed=True)
    client.force_login(officer)  # a password-only session
    response = client.get(LIST)
    assert response.status_code == 302
    assert response["Location"].startswith("/account/login?next=")


def test_a_security_officer_without_an_authenticator_is_sent_to_enrol(client, actors):
    client.force_login(actors["security_officer"])
    response = client.get(LIST)
    assert response.status_code == 302 and response["Location"] == "/account/mfa/"


def test_the_auditor_reads_everything_but_sees_no_form(auditor_client, actors, incident):
    listing = auditor_client.get(LIST)
    assert listing.status_code == 200
    assert "New incident" not in listing.content.decode()
    detail = auditor_client.get(f"{LIST}{incident.id}")
    assert detail.status_code == 200
    html = detail.content.decode()
    assert incident.title in html
    # The one form is the header's sign-out.
    assert re.findall(r"<form [^>]*>", html) == ['<form method="post" action="/account/logout">']
    assert "Move to" not in html and "Add note" not in html and "Revoke API key" not in html
    assert auditor_client.get(f"{LIST}new").status_code == 403


def test_incident_pages_are_never_cached(officer_client, incident):
    for path in ("", f"{incident.id}", f"{incident.id}/report.pdf"):
        response = officer_client.get(LIST + path)
        assert "no-store" in response["Cache-Control"]
        assert "private" in response["Cache-Control"]


def test_an_unknown_or_malformed_incident_is_a_404_page(officer_client):
    for incident_id in ("9f0f1c36-0bd4-4c3b-9a63-3f7f2f6f2c11", "not-an-id"):
        response = officer_client.get(f"{LIST}{incident_id}")
        assert response.status_code == 404
        assert "No incident with this id." in response.content.decode()


# --- the list ---------------------------------------------------------------------------


@pytest.fixture
def several(actors: dict[str, Any]) -> dict[str, Incident]:
    officer = actors["security_officer"]
    admin = actors["admin"]
    made = {
        "low": make_incident(officer, title="Stale TLS certificate", severity="sev4"),
        "mid": make_incident(officer, title="Rate-limit flood", severity="sev3", assignee=admin),
        "top": make_incident(officer, title="Leaked API key", severity="sev1"),
        "old": make_incident(officer, title="Old watermark failure", severity="sev2"),
    }
    made["old"] = move_to(made["old"], "closed", actor=officer)
    made["mid"] = move_to(made["mid"], "investigating", actor=officer)
    return made


def test_the_list_puts_sev1s_first_and_counts_incidents_per_phase(officer_client, several):
    response = officer_client.get(LIST)
    assert response.status_code == 200
    titles = row_titles(response)
    assert titles[0] == "Leaked API key"
    assert set(titles) == {i.title for i in several.values()}
    counts = {p["value"]: p["count"] for p in response.context["phase_counts"]}
    assert counts == {
        "detected": 2,
        "contained": 0,
        "investigating": 1,
        "remediated": 0,
        "recovered": 0,
        "closed": 1,
    }
    assert response.context["open_total"] == 3
    assert 'aria-label="Incidents by phase"' in response.content.decode()


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("status=investigating", {"Rate-limit flood"}),
        ("severity=sev4", {"Stale TLS certificate"}),
        ("state=closed", {"Old watermark failure"}),
        ("state=open", {"Stale TLS certificate", "Rate-limit flood", "Leaked API key"}),
        ("assignee=none&state=open", {"Stale TLS certificate", "Leaked API key"}),
    ],
)
def test_the_list_filters(officer_client, several, query, expected):
    response = officer_client.get(f"{LIST}?{query}")
    assert response.status_code == 200
    assert set(row_titles(response)) == expected


def test_the_list_filters_by_assignee(officer_client, actors, several):
    response = officer_client.get(f"{LIST}?assignee={actors['admin'].username}")
    assert row_titles(response) == ["Rate-limit flood"]


def test_the_list_sorts(officer_client, several):
    newest = row_titles(officer_client.get(f"{LIST}?sort=newest"))
    oldest = row_titles(officer_client.get(f"{LIST}?sort=oldest"))
    assert newest == list(reversed(oldest))
    assert newest[0] == "Old watermark failure"  # opened last
    by_phase = row_titles(officer_client.get(f"{LIST}?sort=status"))
    assert by_phase[-1] == "Old watermark failure"  # closed comes last


def test_a_bad_filter_value_is_said_on_the_page_not_a_500(officer_client, several):
    response = officer_client.get(f"{LIST}?severity=sev9")
    assert response.status_code == 400
    assert "Severity: must be one of" in page_text(response)
    assert len(row_titles(response)) == 4  # the whole list, unfiltered


def test_the_filter_form_is_labelled_and_keeps_its_values(officer_client, several):
    html = officer_client.get(f"{LIST}?severity=sev1&sort=newest").content.decode()
    for field in ("state", "status", "severity", "assignee", "sort"):
        assert f'<label for="id_{field}">' in html
    assert '<option value="sev1" selected>' in html
    assert '<option value="newest" selected>' in html


def test_detector_incidents_show_their_detector(officer_client):
    incident_detector_hit(
        detector="auth_failures",
        subject="203.0.113.0/24",
        severity="sev2",
        title="Burst of failed sign-ins",
        evidence={"failures": 40, "window": "5m"},
    )
    html = officer_client.get(LIST).content.decode()
    assert "detector auth_failures" in html


# --- one incident -------------------------------------------------------------------------


def test_the_detail_page_shows_the_phase_bar_with_where_it_is_and_what_comes_next(
    officer_client, actors, incident
):
    incident = move_to(incident, "contained", actor=actors["security_officer"])
    response = officer_client.get(f"{LIST}{incident.id}")
    html = page_text(response)
    assert 'aria-label="Incident phases"' in html
    current = re.findall(r'<li class="step step-(\w+)" aria-current="step">', html)
    assert current == ["current"]
    hidden = '</span> <span class="visually-hidden">'
    assert f'<span class="step-label">Contained{hidden}(current phase)</span>' in html
    assert f'<span class="step-label">Investigating{hidden}(next)</span>' in html
    assert "Next step: Investigating" in html
    assert "Move to Investigating" in html
    steps = {s["value"]: s["state"] for s in response.context["steps"]}
    assert steps == {
        "detected": "done",
        "contained": "current",
        "investigating": "next",
        "remediated": "todo",
        "recovered": "todo",
        "closed": "todo",
    }
    assert "Time to contain" in html


def test_the_detail_page_shows_the_timeline_with_names_and_detector_evidence(officer_client):
    incident, _ = incident_detector_hit(
        detector="signature_replays",
        subject="bwk_abc",
        severity="sev2",
        title="Replayed signatures",
        evidence={"replays": 12},
        links=[("api_key", "bwk_abc", "pricing service")],
    )
    html = page_text(officer_client.get(f"{LIST}{incident.id}"))
    assert "Detector signature_replays" in html
    assert "<dt>replays</dt><dd>12</dd>" in html
    assert "<code>bwk_abc</code>" in html
    assert "Revoke API key…" in html  # the linked key offers its containment


def test_the_create_form_opens_an_incident(officer_client, actors):
    page = officer_client.get(f"{LIST}new")
    assert page.status_code == 200
    html = page.content.decode()
    for field in ("title", "severity", "description", "assignee"):
        assert f'for="id_{field}"' in html
    response = officer_client.post(
        f"{LIST}new",
        {
            "title": "Model exfiltration suspected",
            "severity": "sev1",
            "description": "Spike of predict calls from one key",
            "assignee": actors["security_officer"].username,
        },
    )
    incident = Incident.objects.get()
    assert response.status_code == 302 and response["Location"] == f"{LIST}{incident.id}"
    assert (incident.severity, incident.status) == ("sev1", "detected")
    assert incident.assignee == actors["security_officer"]
    assert incident.reported_by == actors["security_officer"]
    follow = officer_client.get(response["Location"])
    assert "Incident opened: SEV1." in follow.content.decode()


def test_the_create_form_says_what_is_missing(officer_client):
    response = officer_client.post(f"{LIST}new", {"title": "", "severity": "sev7"})
    assert response.status_code == 400
    html = page_text(response)
    assert "This field is required." in html
    assert "Select a valid choice." in html
    assert not Incident.objects.exists()


def test_an_auditor_cannot_open_an_incident(auditor_client):
    response = auditor_client.post(f"{LIST}new", {"title": "x", "severity": "sev1"})
    assert response.status_code == 403
    assert not Incident.objects.exists()


def test_the_pages_load_only_our_own_css_and_js(officer_client, incident):
    html = officer_client.get(f"{LIST}{incident.id}").content.decode()
    sources = re.findall(r'(?:href|src)="([^"]+\.(?:css|js))"', html)
    assert sources and all(s.startswith("/static/") for s in sources)
    assert "<script>" not in html  # CSP: no inline scripts


def test_the_printable_post_mortem(officer_client, actors, incident):
    closed = move_to(incident, "closed", actor=actors["security_officer"])
    response = officer_client.get(f"{LIST}{closed.id}/postmortem")
    assert response.status_code == 200
    html = page_text(response)
    assert "A leaked key in a public repository." in html
    assert "Time to close" in html
    assert "moving to contained" in html  # the timeline


def test_the_print_stylesheet_hides_the_site_around_the_document(client):
    from django.contrib.staticfiles import finders

    css = "".join(
        Path(finders.find(name)).read_text() for name in ("css/ui.css", "css/incidents.css")
    )
    assert "@media print" in css
    assert re.search(r"@media print \{\s*\.topbar", css)


def test_a_closed_incident_offers_reopen_and_no_containment(officer_client, actors, incident):
    closed = move_to(incident, "closed", actor=actors["security_officer"])
    html = page_text(officer_client.get(f"{LIST}{closed.id}"))
    assert "Reopen incident" in html
    assert "reopen it to take containment actions" in html


def test_an_admin_acts_like_a_security_officer(client: Client, actors, verified_login):
    incident = make_incident(actors["admin"])
    verified_login(client, actors["admin"])
    assert "Move to Contained" in client.get(f"{LIST}{incident.id}").content.decode()


@pytest.mark.parametrize(
    ("delta", "text"),
    [
        (timedelta(seconds=30), "just now"),
        (timedelta(minutes=12), "12 min ago"),
        (timedelta(hours=3, minutes=5), "3 h 5 min ago"),
        (timedelta(hours=5), "5 h ago"),
        (timedelta(days=1, hours=2, minutes=7), "1 d 2 h ago"),
        (timedelta(days=3, minutes=7), "3 d ago"),
    ],
)
def test_the_list_says_how_long_ago_in_few_words(delta, text):
    from apps.incidents.views.web import _ago

    assert _ago(delta) == text
