"""The admin writes to the audit chain: every registered admin model is walked — each add,
change, delete and action the admin offers a superuser is done through its pages as a person
would, and each must leave its `admin.*` event (model, the object as the chain names it,
changed field names, values masked where they could be secrets or personal data); each one it
does not offer is refused and leaves nothing. Also: the event is in the change's transaction,
and signing in and out of the admin is audited like the UI's sign-in."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from django.contrib import admin
from django.contrib.admin.models import LogEntry
from django.contrib.auth.models import Group
from django.db import connection
from django.test import Client, RequestFactory

from apps.accounts.models import Role, TotpDevice, User
from apps.apikeys.models import ApiKey
from apps.audit.subjects import pseudonym_for, target_of
from apps.registry.models import ModelVersion, PredictGrant, Publisher, RegisteredModel
from tests.accounts.factories import UserFactory
from tests.apikeys.factories import ApiKeyFactory
from tests.audit.admin_pages import submit
from tests.registry.conftest import (  # noqa: F401  # media_root: a fixture
    artifact,
    audit_events,
    make_model,
    media_root,
    trained_bytes,
)

PASSWORD = "correct horse battery staple"
NEW_PASSWORD = "another long passphrase 42"
# Uploads in the walk store their (encrypted) artifacts under a temporary MEDIA_ROOT.
pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("media_root")]


def url(model: Any, view: str, *args: Any) -> str:
    from django.urls import reverse

    opts = model._meta
    return reverse(f"admin:{opts.app_label}_{opts.model_name}_{view}", args=args)


def password_url(user: User) -> str:
    return f"/admin/accounts/user/{user.pk}/password/"


def as_actor(user: User) -> dict[str, str]:
    return {"type": "user", "ref": pseudonym_for(user)}


def public_key_pem() -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


@dataclass
class Write:
    """One write through the admin's pages: `run` does it and returns the object the event
    must name; `fields` are the field names the event must list."""

    kind: str  # add | change | delete | action
    run: Callable[[Client, User], Any]
    fields: list[str] = field(default_factory=list)
    action: str | None = None
    status: int = 302
    # Through a page of the app's own (an upload), not one of the admin's standard views.
    own_page: bool = False


def _added(model: type, typed: dict[str, Any], status: int = 302) -> Callable[..., Any]:
    def run(client: Client, root: User) -> Any:
        before = set(model.objects.values_list("pk", flat=True))
        response = submit(client, url(model, "add"), typed)
        assert response.status_code == status, response.content.decode()[:3000]
        [new] = model.objects.exclude(pk__in=before)
        return new

    return run


def _changed(make: Callable[[User], Any], typed: dict[str, Any]) -> Callable[..., Any]:
    def run(client: Client, root: User) -> Any:
        obj = make(root)
        response = submit(client, url(type(obj), "change", obj.pk), typed)
        assert response.status_code == 302, response.content.decode()[:3000]
        return obj

    return run


def _deleted(make: Callable[[User], Any]) -> Callable[..., Any]:
    def run(client: Client, root: User) -> Any:
        obj = make(root)
        response = client.post(url(type(obj), "delete", obj.pk), {"post": "yes"})
        assert response.status_code == 302, response.content.decode()[:3000]
        return obj

    return run


def _acted(make: Callable[[User], Any], action: str, **extra: str) -> Callable[..., Any]:
    def run(client: Client, root: User) -> Any:
        obj = make(root)
        response = client.post(
            url(type(obj), "changelist"),
            {"action": action, "_selected_action": [str(obj.pk)], **extra},
        )
        assert response.status_code in {200, 302, 303}, response.content.decode()[:3000]
        return obj

    return run


def _person(root: User) -> User:
    user = UserFactory(roles=["ml_engineer"])
    TotpDevice.objects.create(user=user, name="phone", confirmed=True)
    return user


def _group(root: User) -> Group:
    return Group.objects.create(name=f"team {Group.objects.count()}")


def _grant(root: User) -> PredictGrant:
    return PredictGrant.objects.create(
        model=make_model(root, name=f"m-{uuid.uuid4().hex[:8]}"),
        user=UserFactory(roles=["api_client"]),
        granted_by=root,
    )


def _publisher(root: User) -> Publisher:
    from apps.registry.publishers import publisher_create

    return publisher_create(
        actor=root, name=f"pub{Publisher.objects.count()}", public_key=public_key_pem()
    )


def _key(root: User) -> Any:
    return ApiKeyFactory.issue(owner=root, scopes=["predict:*"])[0]


def _password_change(client: Client, root: User) -> Any:
    person = UserFactory(roles=["auditor"])
    typed = {"password1": NEW_PASSWORD, "password2": NEW_PASSWORD}
    response = submit(client, password_url(person), typed)
    assert response.status_code == 302, response.content.decode()[:3000]
    return person


def _upload(client: Client, root: User) -> Any:
    model = make_model(root, name="uploaded")
    response = client.post(
        url(RegisteredModel, "upload_version", model.pk),
        {
            "artifact": artifact(trained_bytes()),
            "format": "joblib",
            "input_schema": '{"type": "object", "properties": {"rooms": {"type": "number"}, '
            '"area": {"type": "number"}}, "required": ["rooms", "area"]}',
            "max_batch": "100",
        },
    )
    assert response.status_code == 302, response.content.decode()[:3000]
    return ModelVersion.objects.get(model=model)


# Every registered admin model, and the writes its admin offers a superuser. A model added to
# the admin must be added here (test_every_registered_admin_model_is_walked).
WALKS: dict[str, list[Write]] = {
    "accounts.role": [
        Write(
            "change",
            _changed(lambda root: Role.objects.get(name="auditor"), {"description": "Reads"}),
            ["description"],
        ),
    ],
    "accounts.user": [
        Write(
            "add",
            _added(User, {"username": "newcomer", "password1": PASSWORD, "password2": PASSWORD}),
            ["password", "username"],
        ),
        Write(
            "change",
            _changed(_person, {"first_name": "Ada", "is_staff": "on"}),
            ["first_name", "is_staff"],
        ),
        Write("change", _password_change, ["password"]),
        Write("action", _acted(_person, "reset_mfa"), action="reset_mfa"),
        Write("action", _acted(_person, "erase_gdpr"), action="erase_gdpr"),
    ],
    "apikeys.apikey": [
        Write(
            "add",
            _added(
                ApiKey,
                {"name": "ci", "scopes": "predict:*", "expires_in_days": "30"},
                status=303,  # to the page that shows the key once (POST/redirect/GET)
            ),
            ["expires_in_days", "name", "scopes"],
        ),
        Write("action", _acted(_key, "rotate_keys"), action="rotate_keys"),
        Write("action", _acted(_key, "revoke_keys"), action="revoke_keys"),
    ],
    "audit.auditevent": [],
    "audit.checkpoint": [],
    "auth.group": [
        Write("add", _added(Group, {"name": "reviewers"}), ["name"]),
        Write("change", _changed(_group, {"name": "renamed"}), ["name"]),
        Write("delete", _deleted(_group)),
        Write("delete", _acted(_group, "delete_selected", post="yes")),
    ],
    "compliance.checkresult": [],
    "compliance.checklistitem": [],
    "compliance.control": [],
    "compliance.evidence": [],
    "compliance.framework": [],
    "incidents.detectorcursor": [],
    "incidents.incident": [],
    "registry.modelversion": [],
    "registry.predictgrant": [
        Write(
            "add",
            lambda client, root: _added(
                PredictGrant,
                {
                    "model": str(make_model(root, name="granted").pk),
                    "user": str(UserFactory(roles=["api_client"]).pk),
                },
            )(client, root),
            ["model", "user"],
        ),
        Write("delete", _deleted(_grant)),
        Write("delete", _acted(_grant, "delete_selected", post="yes")),
    ],
    "registry.publisher": [
        Write(
            "add",
            _added(Publisher, {"name": "acme", "public_key": public_key_pem()}),
            ["name", "public_key"],
        ),
        Write("delete", _deleted(_publisher)),
        Write("delete", _acted(_publisher, "delete_selected", post="yes")),
    ],
    "registry.registeredmodel": [
        Write(
            "change",
            _changed(lambda root: make_model(root), {"description": "Prices houses"}),
            ["description"],
        ),
        Write("add", _upload, own_page=True),
    ],
    "registry.watermarkresult": [],
}


@pytest.fixture
def root(verified_login: Any, client: Client) -> User:
    user = UserFactory(roles=["admin"])
    user.is_staff = user.is_superuser = True
    user.save()
    verified_login(client, user)
    return user


def _registered() -> dict[str, Any]:
    return {model._meta.label_lower: (model, ma) for model, ma in admin.site._registry.items()}


def test_every_registered_admin_model_is_walked():
    assert set(_registered()) == set(WALKS)


def _offered(model_admin: Any, root: User) -> set[str]:
    request = RequestFactory().get("/admin/")
    request.user = root
    offered = {
        kind
        for kind, allowed in (
            ("add", model_admin.has_add_permission(request)),
            ("change", model_admin.has_change_permission(request)),
            ("delete", model_admin.has_delete_permission(request)),
        )
        if allowed
    }
    return offered | {f"action:{name}" for name in model_admin.get_actions(request)}


@pytest.mark.parametrize("label", sorted(WALKS))
def test_every_admin_write_is_in_the_chain_and_every_other_is_refused(label, client, root):
    model, model_admin = _registered()[label]
    walks = WALKS[label]
    walked = {
        w.kind if w.kind != "action" else f"action:{w.action}" for w in walks if not w.own_page
    }
    walked |= {"action:delete_selected" for w in walks if w.kind == "delete"} & _offered(
        model_admin, root
    )
    assert walked == _offered(model_admin, root), "walk every write the admin offers"

    for write in walks:
        before = {event["seq"] for event in audit_events()}
        obj = write.run(client, root)
        expected_target = target_of(obj)
        new = [event for event in audit_events() if event["seq"] not in before]
        action = f"admin.{write.kind}"
        mine = [event for event in new if event["action"] == action]
        assert mine, f"{label} {write.kind}: no {action} among {[e['action'] for e in new]}"
        [event] = [event for event in mine if event["target"] == expected_target]
        assert event["actor"] == as_actor(root) and event["outcome"] == "success"
        assert event["details"]["model"] == obj._meta.label_lower
        if write.kind == "action":
            assert event["details"]["action"] == write.action
        for name in write.fields:
            assert name in event["details"]["fields"], (name, event["details"])

    for kind in {"add", "change", "delete"} - {w.kind for w in walks if not w.own_page}:
        before = len(audit_events())
        path = url(model, kind) if kind == "add" else url(model, kind, "0")
        assert client.post(path, {"post": "yes"}).status_code == 403, (label, kind)
        assert not [e for e in audit_events()[before:] if e["action"].startswith("admin.")]

    # Django's own log has nothing the chain lacks.
    logged = LogEntry.objects.count()
    chained = [e for e in audit_events() if e["action"].startswith("admin.")]
    assert len([e for e in chained if e["action"] != "admin.action"]) == logged


def test_values_are_kept_only_where_they_carry_no_secret_or_person(client, root):
    person = UserFactory(roles=["ml_engineer"], first_name="Grace")
    submit(
        client,
        url(User, "change", person.pk),
        {"first_name": "Ada", "email": "ada@example.org", "is_staff": "on"},
    )
    [event] = audit_events("admin.change")
    assert event["details"]["fields"] == ["email", "first_name", "is_staff"]
    assert event["details"]["values"] == {
        "email": "[PII]",  # masked by the trail's own masking, which knows these names
        "first_name": "[PII]",
        "is_staff": {"from": False, "to": True},
    }
    text = str(audit_events())
    assert "Ada" not in text and "Grace" not in text and "ada@example.org" not in text

    submit(
        client,
        password_url(person),
        {"password1": NEW_PASSWORD, "password2": NEW_PASSWORD},
    )
    [_, password_event] = audit_events("admin.change")
    assert password_event["details"]["fields"] == ["password"]
    assert password_event["details"]["values"] == {"password": "[MASKED]"}
    assert NEW_PASSWORD not in str(audit_events())


def test_the_event_is_written_in_the_changes_transaction(client, root):
    group = Group.objects.create(name="before")
    with connection.cursor() as cursor:
        # The chain refuses admin events (as a full disk or a lost connection would).
        cursor.execute(
            """
            CREATE FUNCTION refuse_admin_events() RETURNS trigger AS $$
            BEGIN
              IF NEW.body LIKE '%"action":"admin.%' THEN
                RAISE EXCEPTION 'audit store unavailable';
              END IF;
              RETURN NEW;
            END $$ LANGUAGE plpgsql;
            CREATE TRIGGER refuse_admin_events BEFORE INSERT ON audit_pendingevent
              FOR EACH ROW EXECUTE FUNCTION refuse_admin_events();
            """
        )
    response = submit(client, url(Group, "change", group.pk), {"name": "after"})
    assert response.status_code == 503
    group.refresh_from_db()
    assert group.name == "before"  # the change rolled back with its event
    assert not LogEntry.objects.exists()


# --- Signing in and out of the admin -----------------------------------------------------------


def _staff(**fields: Any) -> User:
    user = UserFactory(roles=["auditor"], **fields)
    user.is_staff = True
    user.save()
    return user


def test_signing_in_and_out_of_the_admin_is_audited(client):
    person = _staff()
    response = client.post(
        "/admin/login/?next=/admin/", {"username": person.username, "password": PASSWORD}
    )
    assert response.status_code == 302
    [started] = audit_events("auth.session.started")
    assert started["details"] == {"method": "password", "site": "admin"}
    assert started["actor"] == as_actor(person)
    assert client.post("/admin/logout/").status_code == 200
    [ended] = audit_events("auth.session.ended")
    assert ended["actor"] == as_actor(person) and ended["details"] == {"site": "admin"}


def test_a_refused_admin_sign_in_is_audited(client):
    person = _staff()
    response = client.post("/admin/login/", {"username": person.username, "password": "nope"})
    assert response.status_code == 200  # the form again, with the error
    [failed] = audit_events("auth.session.failed")
    assert failed["outcome"] == "failure" and failed["details"] == {"reason": "bad_credentials"}
    assert failed["actor"] == as_actor(person)
    assert audit_events("auth.session.started") == []
    non_staff = UserFactory(roles=["auditor"])  # the right password, but not staff
    client.post("/admin/login/", {"username": non_staff.username, "password": PASSWORD})
    assert len(audit_events("auth.session.failed")) == 2
    assert audit_events("auth.session.started") == []


def test_a_sign_out_that_csrf_refuses_records_nothing(root):
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(root)
    assert strict.post("/admin/logout/").status_code == 403
    assert audit_events("auth.session.ended") == []


def test_the_findings_making_a_superuser_and_reactivating_are_recorded(client, root):
    person = UserFactory(roles=["auditor"])
    person.is_active = False
    person.save()
    admin_role = Role.objects.get(name="admin").pk
    response = submit(
        client,
        url(User, "change", person.pk),
        {"is_active": "on", "is_staff": "on", "is_superuser": "on", "roles": [admin_role]},
    )
    assert response.status_code == 302
    [event] = audit_events("admin.change")
    assert event["target"] == target_of(person)
    assert event["details"]["fields"] == ["is_active", "is_staff", "is_superuser", "roles"]
    values = event["details"]["values"]
    assert values["is_superuser"] == {"from": False, "to": True}
    assert values["is_active"] == {"from": False, "to": True}
    assert values["roles"] == {"from": ["auditor"], "to": ["admin"]}
