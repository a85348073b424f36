"""The console's home: a landing page for visitors, and for each role a dashboard with the
panels its capabilities allow (apps/console/selectors.py), filled from the other apps'
selectors; the navigation, the admin's header, the favicon and the API docs' way back."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from apps.audit.services import audit_chain_pending, audit_event_record
from apps.registry.models import ModelVersion, RegisteredModel, Stage, VersionStatus
from tests.apikeys.factories import ApiKeyFactory
from tests.incidents.conftest import make_incident

pytestmark = pytest.mark.django_db

PANELS = {
    "incidents": 'id="p-incidents"',
    "traffic": 'id="p-traffic"',
    "compliance": 'id="p-compliance"',
    "audit": 'id="p-audit"',
    "models": 'id="p-models"',
    "keys": 'id="p-keys"',
}
# Which panels each role's dashboard shows (docs/api.md's role matrix).
EXPECTED = {
    "admin": set(PANELS),
    "security_officer": set(PANELS) - {"models"},  # models.read is not theirs
    "auditor": set(PANELS),
    "ml_engineer": {"traffic", "models", "keys"},
    "api_client": {"keys"},
}
NAV = ["Dashboard", "Incidents", "Compliance", "Audit", "Models", "Keys", "Admin", "API docs"]
NAV_EXPECTED = {
    "admin": set(NAV),
    "security_officer": set(NAV) - {"Models", "Admin"},  # not staff: no admin
    "auditor": {"Dashboard", "Incidents", "Compliance", "Audit", "Models", "API docs"},
    "ml_engineer": {"Dashboard", "Models", "API docs"},
    "api_client": {"Dashboard", "API docs"},
}


def _nav(html: str) -> set[str]:
    start = html.index('<nav aria-label="Main">')
    block = html[start : html.index("</nav>", start)]
    return {label for label in NAV if f">{label}</a>" in block}


@pytest.fixture
def signed_in(verified_login: Any) -> Any:
    def client_for(user: Any) -> Client:
        return verified_login(Client(), user)

    return client_for


def _version(model: RegisteredModel, number: int, **fields: Any) -> ModelVersion:
    return ModelVersion.objects.create(
        model=model,
        number=number,
        size=1,
        sha256="0" * 64,
        input_schema={"type": "object"},
        wrapped_data_key=b"",
        master_key_id="test",
        artifact=f"test/{model.name}-{number}",
        **fields,
    )


def test_a_visitor_sees_the_landing_page_and_a_way_to_sign_in(client: Client) -> None:
    response = client.get("/")
    assert response.status_code == 200
    html = response.content.decode()
    assert 'href="/account/login"' in html
    assert "Dashboard" not in html
    assert _nav(html) == {"API docs"}


@pytest.mark.parametrize("role", sorted(EXPECTED))
def test_each_role_sees_its_panels_and_its_navigation(
    role: str, actors: dict[str, Any], signed_in: Any
) -> None:
    user = actors[role]
    if role == "admin":
        user.is_staff = True  # the admin site lets in staff only
        user.save(update_fields=["is_staff"])
    response = signed_in(user).get("/")
    assert response.status_code == 200
    html = response.content.decode()
    shown = {name for name, marker in PANELS.items() if marker in html}
    assert shown == EXPECTED[role]
    assert _nav(html) == NAV_EXPECTED[role]
    assert 'aria-current="page">Dashboard' in html
    assert "no-store" in response["Cache-Control"]


def test_a_privileged_session_that_has_not_verified_its_device_signs_in_again(
    actors: dict[str, Any],
) -> None:
    client = Client()
    client.force_login(actors["security_officer"])
    response = client.get("/")
    assert response.status_code == 302
    assert response["Location"].startswith("/account/")


def test_figures_come_from_the_database(actors: dict[str, Any], signed_in: Any) -> None:
    officer = actors["security_officer"]
    now = timezone.now()
    make_incident(officer, severity="sev1", title="Key leaked")
    make_incident(officer, severity="sev3", title="Odd traffic")
    soon = ApiKeyFactory(name="expiring soon", expires_at=now + timedelta(days=3))
    ApiKeyFactory(name="expiring later", expires_at=now + timedelta(days=40))
    model = RegisteredModel.objects.create(name="fraud")
    _version(model, 1, status=VersionStatus.QUARANTINED)
    _version(model, 2, stage=Stage.ARCHIVED)  # archived: not a concern any more
    for code in ("rate_limited", "rate_limited", "invalid_api_key"):
        audit_event_record(
            "predict.rejected",
            actor=None,
            target=("model", "fraud"),
            outcome="denied",
            details={"model": "fraud", "code": code},
        )
    audit_event_record("predict.succeeded", actor=None, target=("model", "fraud"))
    audit_chain_pending(wait=True)

    html = signed_in(actors["admin"]).get("/").content.decode()
    incidents = html[html.index('id="p-incidents"') : html.index('id="p-traffic"')]
    assert '<span class="big">2</span> open' in incidents
    traffic = html[html.index('id="p-traffic"') : html.index('id="p-compliance"')]
    assert '<span class="big">4</span> calls: 1 answered, 3 refused' in traffic
    assert '<code>rate_limited</code></th><td class="num">2<' in traffic
    assert '<code>invalid_api_key</code></th><td class="num">1<' in traffic
    models = html[html.index('id="p-models"') : html.index('id="p-keys"')]
    assert "1 quarantined, 1 unsigned" in models
    assert "fraud v1" in models and "fraud v2" not in models
    keys = html[html.index('id="p-keys"') :]
    assert "expiring soon" in keys and soon.public_id in keys
    assert "expiring later" not in keys
    assert "Verified to its head" not in html  # nothing verified yet: events wait for the job


def test_a_person_without_key_rights_sees_only_their_own_expiring_keys(
    actors: dict[str, Any], signed_in: Any
) -> None:
    now = timezone.now()
    ApiKeyFactory(owner=actors["api_client"], name="mine", expires_at=now + timedelta(days=2))
    ApiKeyFactory(owner=actors["outsider"], name="theirs", expires_at=now + timedelta(days=2))
    html = signed_in(actors["api_client"]).get("/").content.decode()
    assert "mine" in html and "theirs" not in html
    assert 'href="/keys/' not in html  # the key pages are the officers'


def test_the_dashboard_reads_a_bounded_number_of_queries(
    actors: dict[str, Any], signed_in: Any, django_assert_max_num_queries: Any
) -> None:
    officer = actors["admin"]
    for n in range(12):
        make_incident(officer, severity=f"sev{n % 4 + 1}", title=f"incident {n}")
        ApiKeyFactory(expires_at=timezone.now() + timedelta(days=1))
    client = signed_in(officer)
    with django_assert_max_num_queries(30):
        assert client.get("/").status_code == 200


def test_the_admin_wears_the_consoles_header_navigation_and_icon(
    actors: dict[str, Any], signed_in: Any
) -> None:
    admin = actors["admin"]
    admin.is_staff = True
    admin.save(update_fields=["is_staff"])
    html = signed_in(admin).get("/admin/").content.decode()
    assert 'class="bulwark-nav"' in html
    for label in ("Dashboard", "Incidents", "Compliance", "Audit", "Models", "Keys"):
        assert f">{label}</a>" in html
    assert "css/admin.css" in html and "img/favicon" in html
    assert "dark_mode.css" not in html  # one look: the console has no dark theme


def test_favicon_ico_leads_to_the_icon(client: Client) -> None:
    response = client.get("/favicon.ico")
    assert response.status_code == 301
    assert response["Location"].endswith(".svg")


def test_the_api_docs_have_a_way_back(actors: dict[str, Any], signed_in: Any) -> None:
    html = signed_in(actors["auditor"]).get("/api/docs").content.decode()
    assert '<a class="brand" href="/">Bulwark</a>' in html
    assert ">Incidents</a>" in html and ">Admin</a>" not in html
    assert 'id="swagger-ui"' in html
