"""The data migration seeds the whole checklist, the frameworks' controls and the mapping."""

from __future__ import annotations

import pytest

from apps.compliance.checks import CHECKS
from apps.compliance.models import Category, ChecklistItem, Control, Framework
from tests.compliance.conftest import seed_checklist

EXPECTED_TITLES = {
    Category.AUTHENTICATION: [
        "API key or OAuth2 authentication",
        "Role-based access control (RBAC)",
        "Token expiration and refresh",
        "Multi-factor authentication (MFA)",
    ],
    Category.INPUT: [
        "Input schema validation",
        "SQL injection prevention",
        "Cross-site scripting (XSS) prevention",
        "Rate limiting",
        "Request size limits",
    ],
    Category.MODEL: [
        "Model encryption at rest",
        "Model watermarking",
        "Model versioning and access control",
        "Adversarial robustness tested",
    ],
    Category.PRIVACY: [
        "PII removal and anonymisation",
        "Differential privacy",
        "Encryption in transit and at rest",
        "GDPR / HIPAA compliance review",
    ],
    Category.INFRASTRUCTURE: [
        "HTTPS / TLS",
        "Firewall rules",
        "Network segmentation",
        "Security updates",
    ],
    Category.MONITORING: [
        "Security logging",
        "Audit trails",
        "Anomaly detection",
        "Incident response plan",
    ],
    Category.SECRETS: [
        "No secrets in code",
        "Environment or key vault",
        "Rotation policy",
        "Access to secrets logged",
    ],
    Category.INCIDENT_RESPONSE: [
        "Detection",
        "Containment",
        "Investigation",
        "Remediation",
        "Recovery",
        "Post-mortem",
    ],
}


@pytest.mark.django_db
def test_every_checklist_item_and_incident_phase_is_seeded_in_order():
    items = list(ChecklistItem.objects.order_by("position"))
    by_category: dict[str, list[str]] = {}
    for item in items:
        by_category.setdefault(item.category, []).append(item.title)
        assert item.status == "not_started" and item.owner is None and item.description

    assert by_category == {str(key): titles for key, titles in EXPECTED_TITLES.items()}
    # Positions keep the categories together, in the checklist's order.
    assert list(by_category) == [str(key) for key in EXPECTED_TITLES]


@pytest.mark.django_db
def test_frameworks_hold_the_named_controls():
    codes = {
        framework.key: set(framework.controls.values_list("code", flat=True))
        for framework in Framework.objects.all()
    }
    assert {"Art. 15", "Art. 17", "Art. 20", "Art. 25", "Art. 33-34"} <= codes["gdpr"]
    assert {
        "164.312(a)(1)",
        "164.312(b)",
        "164.312(c)(1)",
        "164.312(e)(1)",
        "164.312(a)(2)(iv)",
    } <= codes["hipaa"]
    assert {f"CC{n}" for n in range(1, 10)} | {"A1", "PI1", "C1", "P1"} == codes["soc2"]
    groups = set(Control.objects.filter(framework__key="soc2").values_list("group", flat=True))
    assert groups == {
        "Security",
        "Availability",
        "Processing integrity",
        "Confidentiality",
        "Privacy",
    }


@pytest.mark.django_db
def test_every_item_supports_a_control_and_every_control_has_an_item():
    assert not ChecklistItem.objects.filter(controls__isnull=True).exists()
    assert not Control.objects.filter(items__isnull=True).exists()
    # Many-to-many both ways: an item supports several controls, a control several items.
    mfa = ChecklistItem.objects.get(key="auth-mfa")
    assert {c.framework.key for c in mfa.controls.all()} == {"gdpr", "hipaa", "soc2"}
    assert Control.objects.get(framework__key="soc2", code="CC7").items.count() > 3


@pytest.mark.django_db
def test_each_automated_check_belongs_to_exactly_one_item():
    names = list(
        ChecklistItem.objects.exclude(automated_check="").values_list("automated_check", flat=True)
    )
    assert sorted(names) == sorted(CHECKS)


@pytest.mark.django_db
def test_seeding_again_changes_nothing_people_did(actors):
    mfa = ChecklistItem.objects.get(key="auth-mfa")
    ChecklistItem.objects.filter(pk=mfa.pk).update(
        status="implemented", owner=actors["security_officer"], notes="done"
    )
    counts = (ChecklistItem.objects.count(), Control.objects.count(), Framework.objects.count())

    seed_checklist(force=True)

    mfa.refresh_from_db()
    assert (mfa.status, mfa.owner, mfa.notes) == ("implemented", actors["security_officer"], "done")
    assert counts == (
        ChecklistItem.objects.count(),
        Control.objects.count(),
        Framework.objects.count(),
    )
