"""The compliance pages of issue 16: a page per framework (its controls and the items serving
them), the overview (progress per framework, the checklist collapsed by category), a page per
item (its forms for writers), how progress counts (implemented or evidenced by a passing
check), the banner after a check run, and that every page stays small and bounded in queries
however much history the database holds."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.utils import timezone

from apps.compliance.checks import Outcome
from apps.compliance.models import ChecklistItem, CheckResult, Evidence, Framework
from apps.compliance.selectors import compliance_progress, compliance_progress_by_framework
from apps.compliance.services import compliance_checks_run, evidence_add
from tests.compliance.conftest import item

PAGE = "/compliance/"
PAGE_MAX_BYTES = 150_000


@pytest.fixture
def officer_client(client, actors, verified_login):
    return verified_login(client, actors["security_officer"])


@pytest.fixture
def auditor_client(client, actors):
    client.force_login(actors["auditor"])
    return client


# The latest run's time: a run records every result at one time.
RUN = timezone.now()


def _result(key: str, value: str, *, ago: timedelta = timedelta(0)) -> None:
    target = item(key)
    CheckResult.objects.create(
        item=target,
        check_name=target.automated_check or "none",
        result=value,
        detail=f"{value} for the test.",
        checked_at=RUN - ago,
    )


def _framework_items(key: str) -> set[str]:
    return set(
        ChecklistItem.objects.filter(controls__framework__key=key).values_list("key", flat=True)
    )


def _body(html: str) -> str:
    return html.split("</header>", 1)[1]


# --- How progress counts ------------------------------------------------------------------------


@pytest.fixture
def counted() -> None:
    """One item of each kind, all serving HIPAA 164.312(d) or (a)(1) and SOC 2 CC6."""
    ChecklistItem.objects.filter(key="auth-api-keys").update(status="implemented")
    ChecklistItem.objects.filter(key="secrets-vault").update(status="not_applicable")
    _result("auth-mfa", "pass")  # evidenced
    _result("auth-token-expiry", "pass", ago=timedelta(days=1))
    _result("auth-token-expiry", "fail")  # passed once, fails now: not evidenced
    _result("auth-api-keys", "fail")  # implemented by hand: counts although its check fails
    _result("secrets-vault", "pass")  # not applicable: left out, pass or not
    _result("monitoring-ir-plan", "manual")  # could not run: never evidence


@pytest.mark.django_db
def test_an_item_whose_latest_check_passed_counts_as_evidenced(counted):
    progress = {p.key: p for p in compliance_progress(actor=None)}

    checklist = progress["checklist"]
    assert (checklist.implemented, checklist.evidenced) == (1, 1)
    assert checklist.applicable == ChecklistItem.objects.count() - 1
    assert checklist.checks == {"pass": 2, "fail": 2, "manual": 1, "not_run": 8}
    assert checklist.percent == round(100 / checklist.applicable)
    assert checklist.percent_with_evidence == round(200 / checklist.applicable)

    hipaa = progress["hipaa"]
    assert hipaa.applicable == len(_framework_items("hipaa")) - 1  # secrets-vault is N/A
    assert (hipaa.implemented, hipaa.evidenced) == (1, 1)
    # auth-mfa serves no control of HIPAA's 164.308 or 164.312(b): counted once anyway.
    assert hipaa.covered == 2


@pytest.mark.django_db
def test_only_a_pass_of_the_latest_run_evidences_an_item(auditor_client):
    _result("auth-mfa", "pass", ago=timedelta(hours=1))  # an earlier run
    _result("auth-token-expiry", "pass")  # the latest run
    assert compliance_progress(actor=None)[0].evidenced == 1
    # An item whose check was taken away keeps its results, but they evidence nothing.
    ChecklistItem.objects.filter(key="auth-token-expiry").update(automated_check="")
    assert compliance_progress(actor=None)[0].evidenced == 0
    html = auditor_client.get(f"{PAGE}items/{item('auth-mfa').id}").content.decode()
    assert "Not counted in progress yet" in html


@pytest.mark.django_db
def test_progress_by_framework_for_the_dashboard(counted, django_assert_max_num_queries):
    with django_assert_max_num_queries(3):
        rows = compliance_progress_by_framework()

    assert [row["framework"] for row in rows] == ["gdpr", "hipaa", "soc2"]
    for row in rows:
        assert set(row) == {
            "framework",
            "label",
            "total",
            "implemented",
            "evidenced",
            "percent",
            "url",
        }
        assert row["url"] == f"/compliance/frameworks/{row['framework']}"
        assert isinstance(row["percent"], int)
    by_key = {row["framework"]: row for row in rows}
    hipaa = by_key["hipaa"]
    assert hipaa["label"] == "HIPAA"
    assert hipaa["total"] == len(_framework_items("hipaa")) - 1
    assert (hipaa["implemented"], hipaa["evidenced"]) == (1, 1)
    assert hipaa["percent"] == round(200 / hipaa["total"])
    # GDPR Art. 32 is served by auth-api-keys and auth-mfa, not by secrets-vault.
    gdpr = by_key["gdpr"]
    assert (gdpr["total"], gdpr["implemented"], gdpr["evidenced"]) == (
        len(_framework_items("gdpr")),
        1,
        1,
    )


@pytest.mark.django_db
def test_progress_with_no_item_applicable_is_complete():
    ChecklistItem.objects.update(status="not_applicable")
    for row in compliance_progress_by_framework():
        assert (row["total"], row["percent"]) == (0, 100)


@pytest.mark.django_db
def test_the_report_tells_evidenced_items_besides_the_implemented_share(counted, auditor_client):
    response = auditor_client.get(f"{PAGE}report", {"framework": "hipaa", "format": "json"})
    summary = {row["framework"]: row for row in response.json()["summary"]}
    hipaa = summary["hipaa"]
    assert hipaa["implemented"] == 1 and hipaa["evidenced"] == 1
    assert hipaa["percent"] == round(100 / hipaa["applicable"])  # unchanged: implemented only
    assert hipaa["percent_with_evidence"] == round(200 / hipaa["applicable"])


# --- The overview --------------------------------------------------------------------------------


@pytest.mark.django_db
def test_the_overview_links_each_framework_and_explains_how_progress_counts(
    auditor_client, counted
):
    html = auditor_client.get(PAGE).content.decode()

    for key in ("gdpr", "hipaa", "soc2"):
        assert f'href="/compliance/frameworks/{key}"' in html
    hipaa = next(p for p in compliance_progress(actor=None) if p.key == "hipaa")
    assert (
        f'<progress id="progress-hipaa" max="{hipaa.applicable}" value="2"' in html
        and f"{hipaa.percent_with_evidence}%</strong> · 1 implemented + 1 evidenced of "
        f"{hipaa.applicable} applicable"
        in html
    )
    assert "How progress counts." in html and "evidenced" in html
    # The checks as evidence, with their own count.
    checks = re.search(r'<section class="card checks".*?</section>', html, re.S)[0]
    assert "2 pass" in checks and "2 fail" in checks and "1 could not run" in checks


@pytest.mark.django_db
def test_the_overview_collapses_the_checklist_by_category_with_no_form(auditor_client, counted):
    html = auditor_client.get(PAGE).content.decode()

    sections = re.findall(r'<details class="category" id="category-([a-z_]+)"( open)?>', html)
    assert [key for key, _ in sections] == [
        "authentication",
        "input",
        "model",
        "privacy",
        "infrastructure",
        "monitoring",
        "secrets",
        "incident_response",
    ]
    assert all(not opened for _, opened in sections)  # collapsed
    rows = re.findall(r'<tr id="item-([a-z-]+)">', html)
    assert len(rows) == ChecklistItem.objects.count()
    mfa = re.search(r'<tr id="item-auth-mfa">.*?</tr>', html, re.S)[0]
    assert f'href="/compliance/items/{item("auth-mfa").id}"' in mfa
    assert "Evidenced" in mfa and 'class="result result-pass"' in mfa
    assert "4 items · 1 implemented · 1 evidenced · " in html
    assert "<form" not in _body(html).replace('<form method="get"', "")


@pytest.mark.django_db
def test_one_category_is_shown_open(auditor_client):
    html = auditor_client.get(PAGE, {"category": "secrets"}).content.decode()
    assert re.findall(r'<details class="category" id="category-([a-z_]+)" open>', html) == [
        "secrets"
    ]
    assert 'href="/compliance/">show all</a>' in html


@pytest.mark.django_db
def test_writers_get_only_the_run_form_on_the_overview(officer_client):
    html = _body(officer_client.get(PAGE).content.decode())
    assert re.findall(r'<form method="post" action="([^"]+)"', html) == ["/compliance/checks/run"]


# --- A framework's page -------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_framework_page_lists_its_controls_each_with_the_items_serving_it(
    auditor_client, counted
):
    response = auditor_client.get(f"{PAGE}frameworks/hipaa")

    assert response.status_code == 200
    html = response.content.decode()
    assert "<h1>HIPAA</h1>" in html and "HIPAA Security Rule" in html
    codes = re.findall(r'<section class="control card" id="control-([a-z0-9-]+)"', html)
    assert codes == [
        "164312a1",
        "164312a2iv",
        "164312b",
        "164312c1",
        "164312d",
        "164312e1",
        "164308a1",
        "164308a6",
    ]
    control = re.search(
        r'<section class="control card" id="control-164312d".*?</section>', html, re.S
    )[0]
    assert "Person or entity authentication" in control
    served = re.findall(r'<tr id="control-164312d-([a-z-]+)">', control)
    assert served == ["auth-api-keys", "auth-token-expiry", "auth-mfa"]
    assert "2 of 3 applicable items implemented or evidenced" in control
    assert "2 checks failing" in control  # auth-api-keys and auth-token-expiry
    # Every item of the framework is under at least one of its controls.
    assert {key for key in re.findall(r'<tr id="control-[a-z0-9]+-([a-z-]+)">', html)} == (
        _framework_items("hipaa")
    )
    assert '<progress id="progress-hipaa"' in html and "How progress counts." in html
    assert 'href="/compliance/report?framework=hipaa&amp;format=pdf"' in html
    assert 'method="post"' not in _body(html)


@pytest.mark.django_db
def test_soc2_controls_are_grouped_by_criterion(auditor_client):
    html = auditor_client.get(f"{PAGE}frameworks/soc2").content.decode()
    groups = re.findall(r'<h2 class="control-group">([^<]+)</h2>', html)
    assert groups == [
        "Security",
        "Availability",
        "Processing integrity",
        "Confidentiality",
        "Privacy",
    ]


@pytest.mark.django_db
def test_a_control_no_item_serves_says_so(auditor_client):
    ChecklistItem.controls.through.objects.filter(
        control__framework__key="gdpr", control__code="Art. 20"
    ).delete()
    html = auditor_client.get(f"{PAGE}frameworks/gdpr").content.decode()
    control = re.search(r'id="control-art-20".*?</section>', html, re.S)[0]
    assert "No checklist item serves this control yet." in control
    assert "6 controls, 1 served by no checklist item." in html


@pytest.mark.django_db
@pytest.mark.parametrize("key", ["pci", "checklist", "GDPR", "a" * 200])
def test_an_unknown_framework_is_404(auditor_client, key):
    response = auditor_client.get(f"{PAGE}frameworks/{key}")
    assert response.status_code == 404
    assert "No framework" in response.content.decode()
    assert "a" * 41 not in response.content.decode()


# --- An item's page ------------------------------------------------------------------------------


@pytest.mark.django_db
def test_an_item_page_shows_its_check_evidence_and_controls_read_only(auditor_client, actors):
    officer = actors["security_officer"]
    target = item("auth-mfa")
    evidence_add(actor=officer, item=target, text="Enforced for every privileged role.")
    _result("auth-mfa", "fail", ago=timedelta(days=1))
    _result("auth-mfa", "pass")

    response = auditor_client.get(f"{PAGE}items/{target.id}")

    assert response.status_code == 200
    html = response.content.decode()
    assert "<h1>Multi-factor authentication (MFA)</h1>" in html
    assert "Counts in progress: evidenced by its check" in html
    assert "<code>mfa_privileged</code>" in html and "pass for the test." in html
    assert "Earlier results" in html and "fail for the test." in html
    assert "Enforced for every privileged role." in html
    assert 'href="/compliance/frameworks/hipaa#control-164312d"' in html
    assert 'href="/compliance/frameworks/soc2#control-cc6"' in html
    assert 'method="post"' not in _body(html)


@pytest.mark.django_db
def test_an_item_page_gives_writers_the_review_and_evidence_forms(officer_client):
    target = item("infra-https")
    html = _body(officer_client.get(f"{PAGE}items/{target.id}").content.decode())
    assert re.findall(r'<form method="post" action="([^"]+)"', html) == [
        f"/compliance/items/{target.id}",
        f"/compliance/items/{target.id}/evidence",
    ]
    assert 'name="infra-https-status"' in html and 'name="infra-https-evidence-url"' in html
    assert html.count('name="csrfmiddlewaretoken"') == 2


@pytest.mark.django_db
def test_evidence_added_on_the_item_page_comes_back_to_it(officer_client):
    target = item("infra-https")
    response = officer_client.post(
        f"{PAGE}items/{target.id}/evidence", {"infra-https-evidence-text": "TLS 1.3 only."}
    )
    assert response.status_code == 302
    assert response["Location"] == f"/compliance/items/{target.id}#evidence"
    html = officer_client.get(response["Location"]).content.decode()
    assert "Evidence added to “HTTPS / TLS”." in html and "TLS 1.3 only." in html


@pytest.mark.django_db
def test_an_item_page_lists_evidence_by_pages(auditor_client, actors):
    target = item("infra-https")
    for n in range(30):
        evidence_add(actor=actors["security_officer"], item=target, text=f"Scan number {n}.")
    first = auditor_client.get(f"{PAGE}items/{target.id}").content.decode()
    last = auditor_client.get(f"{PAGE}items/{target.id}", {"page": 3}).content.decode()
    assert "Scan number 29." in first and "Scan number 20." in first
    assert "Scan number 19." not in first and "Scan number 4." not in first
    assert "Scan number 4." in last and "Scan number 29." not in last
    assert "Page 1 of 3" in first and "(30)" in first
    assert 'href="?page=2#evidence">Older</a>' in first
    assert 'href="?page=2#evidence">Newer</a>' in last


@pytest.mark.django_db
def test_long_evidence_is_cut_on_the_item_page_and_whole_on_its_own(auditor_client, actors):
    officer = actors["security_officer"]
    target = item("infra-https")
    text = evidence_add(actor=officer, item=target, text="<b>" * 2000 + "the end")
    link = evidence_add(actor=officer, item=target, url="https://example.com/?" + "a&" * 400)
    short = evidence_add(actor=officer, item=target, url="https://example.com/scan")

    html = auditor_client.get(f"{PAGE}items/{target.id}").content.decode()
    assert "the end" not in html and "<b>" not in html
    assert f'<a href="/compliance/evidence/{text.id}">Read all 6007 characters</a>' in html
    assert f'<a href="/compliance/evidence/{link.id}">https://example.com/?a&amp;a' in html
    assert 'href="https://example.com/scan" rel="noopener noreferrer nofollow"' in html

    whole = auditor_client.get(f"{PAGE}evidence/{text.id}")
    assert whole.status_code == 200
    assert "&lt;b&gt;" * 2000 + "the end" in whole.content.decode()
    whole = auditor_client.get(f"{PAGE}evidence/{link.id}").content.decode()
    assert (
        f'<a href="{link.url.replace("&", "&amp;")}" rel="noopener noreferrer nofollow">' in whole
    )
    assert auditor_client.get(f"{PAGE}evidence/{short.id}").status_code == 200


@pytest.mark.django_db
def test_an_unknown_item_is_404(auditor_client, officer_client):
    missing = "00000000-0000-0000-0000-000000000000"
    assert auditor_client.get(f"{PAGE}items/{missing}").status_code == 404
    assert auditor_client.get(f"{PAGE}items/not-a-uuid").status_code == 404


@pytest.mark.django_db
def test_an_unknown_item_is_404_to_a_writer_posting_too(officer_client):
    missing = "00000000-0000-0000-0000-000000000000"
    assert (
        officer_client.post(f"{PAGE}items/{missing}", {"x-status": "implemented"}).status_code
        == 404
    )
    response = officer_client.post(f"{PAGE}items/{missing}/evidence", {"x-evidence-text": "x"})
    assert response.status_code == 404
    assert not Evidence.objects.exists()


@pytest.mark.django_db
def test_other_methods_on_an_item_are_405(officer_client):
    target = item("auth-mfa")
    assert officer_client.put(f"{PAGE}items/{target.id}").status_code == 405
    assert officer_client.delete(f"{PAGE}items/{target.id}").status_code == 405
    assert officer_client.get(f"{PAGE}items/{target.id}/evidence").status_code == 405
    assert officer_client.get(f"{PAGE}checks/run").status_code == 405


# --- Who may -------------------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("role", ["ml_engineer", "api_client"])
def test_the_new_pages_refuse_people_without_the_capability(client, actors, role):
    client.force_login(actors[role])
    assert client.get(f"{PAGE}frameworks/gdpr").status_code == 403
    assert client.get(f"{PAGE}items/{item('auth-mfa').id}").status_code == 403


@pytest.mark.django_db
def test_a_visitor_goes_to_sign_in_from_the_new_pages(client, settings):
    target = item("auth-mfa")
    response = client.get(f"{PAGE}frameworks/gdpr")
    assert response["Location"] == f"{settings.LOGIN_URL}?next=/compliance/frameworks/gdpr"
    response = client.get(f"{PAGE}items/{target.id}")
    assert response["Location"] == f"{settings.LOGIN_URL}?next=/compliance/items/{target.id}"
    # A POST goes to sign in too, and back to the overview afterwards; nothing changes.
    response = client.post(f"{PAGE}items/{target.id}", {"auth-mfa-status": "implemented"})
    assert response["Location"] == f"{settings.LOGIN_URL}?next=/compliance/"
    target.refresh_from_db()
    assert target.status == "not_started"


@pytest.mark.django_db
def test_an_auditor_cannot_post_on_the_item_page(auditor_client):
    target = item("auth-mfa")
    response = auditor_client.post(f"{PAGE}items/{target.id}", {"auth-mfa-status": "implemented"})
    assert response.status_code == 403
    target.refresh_from_db()
    assert target.status == "not_started" and target.last_reviewed_at is None


# --- The banner after a check run ---------------------------------------------------------------


@pytest.mark.django_db
def test_a_check_run_with_failures_is_a_warning(officer_client, monkeypatch):
    monkeypatch.setattr(
        "apps.compliance.services.check_run",
        lambda name: Outcome(name not in {"https_production", "secrets_vault"}, "Test."),
    )
    response = officer_client.post(f"{PAGE}checks/run", follow=True)

    html = response.content.decode()
    with_checks = ChecklistItem.objects.exclude(automated_check="").count()
    assert (
        '<li class="message message-warning"><strong class="message-kind">Warning:</strong> '
        f"Automated checks ran: {with_checks - 2} passed, 2 failed.</li>" in html
    )
    assert "message-success" not in html


@pytest.mark.django_db
def test_a_check_run_that_all_passed_is_a_success(officer_client, monkeypatch):
    monkeypatch.setattr("apps.compliance.services.check_run", lambda name: Outcome(True, "Test."))
    response = officer_client.post(f"{PAGE}checks/run", follow=True)

    html = response.content.decode()
    with_checks = ChecklistItem.objects.exclude(automated_check="").count()
    assert (
        f'<li class="message message-success">Automated checks ran: {with_checks} passed, '
        "0 failed.</li>" in html
    )
    assert "message-warning" not in html
    # Every item with a check now counts, evidenced.
    checklist = compliance_progress(actor=None)[0]
    assert checklist.evidenced == with_checks


@pytest.mark.django_db
def test_a_check_that_could_not_run_is_a_warning_too(officer_client, monkeypatch):
    monkeypatch.setattr("apps.compliance.services.check_run", lambda name: Outcome(True, "Test."))
    ChecklistItem.objects.filter(key="auth-mfa").update(automated_check="gone_check")
    response = officer_client.post(f"{PAGE}checks/run", follow=True)
    html = response.content.decode()
    assert "message-warning" in html
    assert "1 could not run (no such check) and need a review by hand." in html


# --- Small and bounded --------------------------------------------------------------------------


@pytest.fixture
def long_history(actors) -> None:
    """A year of hourly check runs, notes at their limit, many evidence records."""
    officer = actors["security_officer"]
    now = timezone.now()
    items = list(ChecklistItem.objects.exclude(automated_check=""))
    CheckResult.objects.bulk_create(
        CheckResult(
            item=target,
            check_name=target.automated_check,
            result="pass" if hour % 3 else "fail",
            detail="x" * 1000,
            checked_at=now - timedelta(hours=hour),
        )
        for hour in range(0, 24 * 40)
        for target in items
    )
    ChecklistItem.objects.update(notes="n" * 5000, owner=officer)
    target = item("auth-mfa")
    for n in range(60):
        evidence_add(actor=officer, item=target, text=f"{n} " + "e" * 9000)


@pytest.mark.django_db
def test_every_page_is_small_and_bounded_in_queries(
    officer_client, long_history, django_assert_max_num_queries
):
    target = item("auth-mfa")
    # Session, user, two device reads and roles are 5 of them; the rest are the page's own.
    pages = {
        PAGE: 11,
        f"{PAGE}?framework=soc2": 12,
        f"{PAGE}?category=authentication": 11,
        f"{PAGE}frameworks/soc2": 12,
        f"{PAGE}frameworks/gdpr": 12,
        f"{PAGE}items/{target.id}": 12,
        f"{PAGE}items/{target.id}?page=3": 12,
    }
    for url, queries in pages.items():
        with django_assert_max_num_queries(queries):
            response = officer_client.get(url)
        assert response.status_code == 200, url
        assert len(response.content) < PAGE_MAX_BYTES, (url, len(response.content))


@pytest.mark.django_db
def test_the_framework_page_reads_the_same_few_queries_with_more_items(
    auditor_client, django_assert_max_num_queries
):
    soc2 = Framework.objects.get(key="soc2").controls.get(code="CC6")
    served = soc2.items.count()
    for n in range(40):
        extra = ChecklistItem.objects.create(
            key=f"extra-{n}",
            position=1000 + n,
            category="infrastructure",
            title=f"Extra {n}",
            description="More.",
            automated_check="audit_chain",
        )
        extra.controls.add(soc2)
    compliance_checks_run(actor=None)
    with django_assert_max_num_queries(12):
        response = auditor_client.get(f"{PAGE}frameworks/soc2")
    assert response.status_code == 200
    assert response.content.decode().count('<tr id="control-cc6-') == served + 40
