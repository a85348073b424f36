"""The console's models pages (/models/): who sees and does what, registering a model,
uploading a version (schema prefilled from the previous one), promote, archive and roll back
with their confirmation pages, every refusal as a page with its status and message (and
nothing changed or stored), and the admin's links to these pages."""

from __future__ import annotations

import io
import json
import os
from typing import Any

import joblib
import pytest
from django.test import Client

from apps.accounts.roles import RoleName
from apps.registry.scanning import model_version_quarantine
from apps.registry.selectors import (
    model_version_get,
    model_versions_stored,
    registered_model_exists,
)
from apps.registry.services import registered_model_update
from tests.accounts.factories import UserFactory
from tests.console.models_helpers import (
    fresh,
    make_model,
    make_version,
    text_of,
    upload_fields,
)
from tests.registry import conftest as registry_fixtures
from tests.registry.conftest import SCHEMA, audit_events, stored_files, trained_bytes

pytestmark = pytest.mark.django_db

# The registry tests' fixtures: a media root of the test's own; a failure if an upload would
# be written to a temporary file.
media_root = registry_fixtures.media_root
no_temp_files = registry_fixtures.no_temp_files


@pytest.fixture
def people(actors: dict[str, Any]) -> dict[str, Any]:
    """The actors, plus an ML engineer who owns nothing."""
    return {**actors, "other_engineer": UserFactory(roles=[RoleName.ML_ENGINEER])}


@pytest.fixture
def as_role(people: dict[str, Any], verified_login: Any) -> Any:
    """as_role(role) → a test client signed in as that role, authenticator verified."""

    def sign_in(role: str, **client_options: Any) -> Client:
        return verified_login(Client(**client_options), people[role])

    return sign_in


@pytest.fixture
def model(people: dict[str, Any], media_root: Any) -> Any:
    """`pricing`, registered by the ML engineer (its owner), with no version yet."""
    return make_model(people["ml_engineer"])


@pytest.fixture
def v1(people: dict[str, Any], model: Any) -> Any:
    return make_version(people["ml_engineer"], stage="production")


def versions() -> list[tuple[int, str, str]]:
    return [(v.number, v.stage, v.status) for v in model_versions_stored()]


def evil_bytes() -> bytes:
    """A joblib file whose pickle would run a shell command when loaded."""

    class Shell:
        def __reduce__(self) -> Any:
            return (os.system, ("touch /tmp/bulwark-console-pwned",))

    buffer = io.BytesIO()
    joblib.dump({"model": Shell()}, buffer)
    return buffer.getvalue()


# --- who may see --------------------------------------------------------------------------

PAGES = ["/models/", "/models/pricing", "/models/pricing/versions/1"]


@pytest.mark.parametrize(
    "path",
    [
        *PAGES,
        "/models/pricing/versions/new",
        "/models/pricing/versions/1/stage/archived",
        "/models/pricing/versions/1/rollback",
    ],
)
def test_a_visitor_who_is_not_signed_in_is_sent_to_sign_in(client, v1, path):
    response = client.get(path)
    assert response.status_code == 302
    assert response["Location"] == f"/account/login?next={path}"


def test_a_post_by_a_visitor_who_is_not_signed_in_changes_nothing(client, v1):
    for path, data in (
        ("/models/", {"name": "other"}),
        ("/models/pricing/versions/1/stage/archived", {}),
        ("/models/pricing/versions/new", upload_fields(trained_bytes())),
    ):
        response = client.post(path, data)
        assert response.status_code == 302 and response["Location"].startswith("/account/login")
    assert not registered_model_exists("other")
    assert versions() == [(1, "production", "ok")]


@pytest.mark.parametrize(
    ("role", "list_page", "model_page", "version_page"),
    [
        ("admin", 200, 200, 200),
        ("ml_engineer", 200, 200, 200),
        ("other_engineer", 200, 200, 200),
        ("auditor", 200, 200, 200),
        # As in the API: no models.read. They archive any version (containment) from its page.
        ("security_officer", 403, 403, 200),
        ("api_client", 403, 403, 403),
    ],
)
def test_who_sees_the_models_pages(as_role, v1, role, list_page, model_page, version_page):
    client = as_role(role)
    for path, expected in zip(PAGES, (list_page, model_page, version_page), strict=True):
        response = client.get(path)
        assert response.status_code == expected, (path, response.status_code)
        assert "text/html" in response["Content-Type"]
        if expected == 403:
            assert v1.sha256 not in response.content.decode()
        else:
            assert "no-store" in response["Cache-Control"]


def test_an_absent_model_or_version_is_the_404_page(as_role, v1):
    client = as_role("ml_engineer")
    for path in ("/models/nothing", "/models/pricing/versions/9", "/models/x/versions/1"):
        response = client.get(path)
        assert response.status_code == 404 and "text/html" in response["Content-Type"]
    assert client.get("/models/pricing/versions/1/stage/elsewhere").status_code == 404


# --- the list and registering -----------------------------------------------------------


def test_the_list_shows_each_models_production_and_staging_versions(as_role, people, v1):
    owner = people["ml_engineer"]
    make_version(owner)
    make_version(owner)
    make_model(owner, name="churn")
    page = text_of(as_role("auditor").get("/models/"))
    assert "2 models" in page
    assert '<a href="/models/pricing/versions/1">v1</a>' in page
    assert '2 · newest <a href="/models/pricing/versions/3">v3</a>' in page
    assert '<a href="/models/churn">churn</a>' in page
    assert "Register a model" not in page  # the auditor reads only


def test_the_list_is_paginated_with_a_bounded_number_of_queries(
    as_role, people, media_root, django_assert_max_num_queries
):
    for index in range(30):
        make_model(people["ml_engineer"], name=f"model-{index:02d}")
    client = as_role("auditor")
    with django_assert_max_num_queries(16):
        first = text_of(client.get("/models/"))
    assert "30 models, page 1 of 2" in first and "model-24" in first and "model-25" not in first
    second = text_of(client.get("/models/?page=2"))
    assert "model-25" in second and "model-29" in second


def test_the_forms_help_texts_are_shown_as_text_not_html(as_role, model):
    client = as_role("ml_engineer")
    assert "predict:&lt;name&gt; key scopes" in client.get("/models/").content.decode()
    upload_page = client.get("/models/pricing/versions/new").content.decode()
    assert "&quot;threshold&quot;: 0 &lt; t &lt;= 1}" in upload_page


def test_an_ml_engineer_registers_a_model_and_owns_it(as_role, people, media_root):
    client = as_role("other_engineer")
    assert "Register a model" in text_of(client.get("/models/"))
    response = client.post("/models/", {"name": "churn", "description": "Who leaves."})
    assert response.status_code == 302 and response["Location"] == "/models/churn"
    page = text_of(client.get("/models/churn"))
    assert "Registered churn: you are its owner." in page
    assert people["other_engineer"].username in page and "Upload a version" in page
    [event] = audit_events("model.created")
    assert event["target"] == {"type": "model", "id": "churn"}


@pytest.mark.parametrize(
    ("name", "status", "message"),
    [
        ("pricing", 409, "A model with this name already exists."),
        ("no spaces", 400, "Use 1 to 64 letters, digits, hyphens or underscores."),
        ("", 400, "This field is required."),
        ("x" * 65, 400, "at most 64 characters"),
    ],
)
def test_a_refused_registration_says_why_and_registers_nothing(
    as_role, model, name, status, message
):
    response = as_role("ml_engineer").post("/models/", {"name": name})
    assert response.status_code == status
    page = text_of(response)
    assert "Not registered." in page and message in page
    assert [event["target"]["id"] for event in audit_events("model.created")] == ["pricing"]


@pytest.mark.parametrize("role", ["auditor", "security_officer"])
def test_readers_and_officers_may_not_register_a_model(as_role, media_root, role):
    response = as_role(role).post("/models/", {"name": "churn"})
    assert response.status_code == 403
    assert not registered_model_exists("churn")


# --- one model -----------------------------------------------------------------------------


def test_the_model_page_shows_owners_and_versions_newest_first(as_role, people, v1, settings):
    owner = people["ml_engineer"]
    make_version(owner)
    page = text_of(as_role("auditor").get("/models/pricing"))
    assert owner.username in page and "House prices." in page
    assert page.index(">v2</a>") < page.index(">v1</a>")
    assert "Predict calls are answered by" in page and "Upload a version" not in page


def test_the_versions_are_paginated(as_role, people, v1, monkeypatch):
    from apps.console.views import models as views

    monkeypatch.setattr(views, "PAGE_SIZE", 2)
    for _ in range(2):
        make_version(people["ml_engineer"])
    client = as_role("ml_engineer")
    first = text_of(client.get("/models/pricing"))
    assert ">v3</a>" in first and ">v2</a>" in first and ">v1</a>" not in first
    assert "3 versions, newest first, page 1 of 2" in first
    assert ">v1</a>" in text_of(client.get("/models/pricing?page=2"))


@pytest.mark.parametrize(
    ("role", "may_upload"),
    [("ml_engineer", True), ("admin", True), ("other_engineer", False), ("auditor", False)],
)
def test_upload_is_offered_to_owners_and_admins_only(as_role, model, role, may_upload):
    page = text_of(as_role(role).get("/models/pricing"))
    assert ("Upload a version" in page) is may_upload


# --- uploading ---------------------------------------------------------------------------


def test_the_upload_form_is_prefilled_with_the_previous_versions_schema(as_role, people, model):
    schema = {
        "type": "object",
        "properties": {"floors": {"type": "integer"}, "garden": {"type": "boolean"}},
        "required": ["floors"],
    }
    make_version(people["ml_engineer"], schema=SCHEMA)
    make_version(people["ml_engineer"], schema=schema)
    response = as_role("ml_engineer").get("/models/pricing/versions/new")
    assert response.status_code == 200
    form = response.context["form"]
    assert json.loads(form["input_schema"].value()) == schema
    assert json.loads(form["feature_order"].value()) == ["floors", "garden"]
    page = text_of(response)
    assert "Prefilled from" in page and "v2</a>'s input schema and feature order" in page
    assert "&quot;floors&quot;" in response.content.decode()  # in the textarea, escaped


def test_a_version_uploaded_from_the_prefilled_form_keeps_the_feature_order(as_role, people, model):
    # The stored schema's properties come back in another order (jsonb): without the
    # prefilled feature order, the schema's order would silently swap the model's features.
    v1 = make_version(people["ml_engineer"])
    assert v1.feature_order == ["rooms", "area"]
    client = as_role("ml_engineer")
    form = client.get("/models/pricing/versions/new").context["form"]
    assert list(json.loads(form["input_schema"].value())["properties"]) == ["area", "rooms"]
    response = client.post(
        "/models/pricing/versions/new",
        upload_fields(
            trained_bytes(),
            input_schema=form["input_schema"].value(),
            feature_order=form["feature_order"].value(),
        ),
    )
    assert response.status_code == 302
    v2 = model_version_get(actor=None, model=v1.model, number=2)
    assert v2.feature_order == ["rooms", "area"] and v2.input_schema == v1.input_schema


def test_the_first_upload_form_has_no_schema_to_offer(as_role, model):
    response = as_role("ml_engineer").get("/models/pricing/versions/new")
    assert response.status_code == 200
    assert response.context["form"]["input_schema"].value() in (None, "")
    assert "Prefilled from" not in text_of(response)


def test_an_owner_uploads_a_version_encrypted_and_audited(
    as_role, people, model, media_root, no_temp_files
):
    content = trained_bytes()
    client = as_role("ml_engineer")
    response = client.post("/models/pricing/versions/new", upload_fields(content, max_batch="20"))
    assert response.status_code == 302, text_of(response)
    assert response["Location"] == "/models/pricing/versions/1"
    assert versions() == [(1, "staging", "ok")]
    [stored] = stored_files(media_root)
    assert content[:64] not in stored.read_bytes()
    [event] = audit_events("model.version.created")
    assert event["target"] == {"type": "model_version", "id": "pricing:1"}
    page = text_of(client.get(response["Location"]))
    assert "Uploaded pricing v1 (joblib" in page and "it is in staging" in page


def _posted_schema_error(response: Any) -> str:
    return " ".join(str(e) for e in response.context["form"].errors.get("input_schema", []))


@pytest.mark.parametrize(
    ("fields", "content", "field", "words"),
    [
        ({"input_schema": "{not json"}, None, "input_schema", "JSON"),
        ({"input_schema": json.dumps({"type": "array"})}, None, "input_schema", "type"),
        ({"feature_order": json.dumps(["rooms", "x"])}, None, "feature_order", "not a property"),
        ({"dp_epsilon": "0.5"}, None, "dp_epsilon", "both"),
        ({"max_batch": "10001"}, None, "max_batch", "less than or equal to 10000"),
        ({"format": "pickle"}, None, "format", "pickle is not one of the available choices"),
        ({}, b"", "artifact", "empty"),
        ({}, "evil", "artifact", "posix.system"),
        ({"format": "skops"}, b"not a zip", "artifact", "not a skops file"),
    ],
)
def test_a_refused_upload_says_why_with_its_status_and_stores_nothing(
    as_role, model, media_root, fields, content, field, words
):
    if content == "evil":
        content = evil_bytes()
    data = upload_fields(trained_bytes() if content is None else content, **fields)
    response = as_role("ml_engineer").post("/models/pricing/versions/new", data)

    assert response.status_code == 400
    errors = response.context["form"].errors
    assert field in errors, errors
    assert words in " ".join(errors[field]), errors
    page = text_of(response)
    assert "Not uploaded." in page and "Nothing was stored" in page
    assert versions() == [] and stored_files(media_root) == []
    assert audit_events("model.version.created") == []
    assert not os.path.exists("/tmp/bulwark-console-pwned")  # noqa: S108  # the evil pickle's


def test_a_refused_artifact_is_audited_as_rejected(as_role, model, media_root):
    as_role("ml_engineer").post("/models/pricing/versions/new", upload_fields(evil_bytes()))
    [event] = audit_events("model.version.rejected")
    assert event["outcome"] == "denied" and "posix.system" in json.dumps(event["details"])


def test_an_unsigned_upload_to_a_model_requiring_signatures_is_refused(
    as_role, people, model, media_root
):
    registered_model_update(actor=people["admin"], model=model, require_signed_artifacts=True)
    response = as_role("ml_engineer").post(
        "/models/pricing/versions/new", upload_fields(trained_bytes())
    )
    assert response.status_code == 400
    assert "requires artifacts signed by a trusted publisher" in text_of(response)
    assert "Signatures: <strong>required</strong>" in response.content.decode()
    assert versions() == [] and stored_files(media_root) == []
    [event] = audit_events("model.version.rejected")
    assert event["outcome"] == "denied"


def test_a_garbage_signature_bundle_is_refused(as_role, model, media_root):
    bundle = io.BytesIO(b"{not a bundle")
    bundle.name = "model.sig"
    response = as_role("ml_engineer").post(
        "/models/pricing/versions/new", upload_fields(trained_bytes(), signature=bundle)
    )
    assert response.status_code == 400
    assert "signature" in response.context["form"].errors
    assert versions() == [] and stored_files(media_root) == []


def test_an_upload_over_the_limit_is_413_and_leaves_nothing(
    as_role, model, media_root, settings, no_temp_files
):
    settings.BULWARK_MAX_ARTIFACT_BYTES = 1000
    response = as_role("ml_engineer").post(
        "/models/pricing/versions/new", upload_fields(b"x" * 5000)
    )
    assert response.status_code == 413
    assert "larger than the limit of 1000 bytes" in text_of(response)
    assert response.context["form"].is_bound is False
    assert versions() == [] and stored_files(media_root) == []


def test_a_large_upload_stays_in_memory_and_csrf_is_still_checked(
    as_role, model, media_root, no_temp_files
):
    from tests.registry.conftest import array_bytes

    client = as_role("ml_engineer", enforce_csrf_checks=True)
    content = array_bytes(3 * 1024 * 1024)  # over Django's threshold for temporary files
    refused = client.post("/models/pricing/versions/new", upload_fields(content))
    assert refused.status_code == 403 and versions() == []
    page = client.get("/models/pricing/versions/new")
    token = page.context["csrf_token"]
    accepted = client.post(
        "/models/pricing/versions/new", upload_fields(content, csrfmiddlewaretoken=str(token))
    )
    assert accepted.status_code == 302 and versions() == [(1, "staging", "ok")]


@pytest.mark.parametrize("role", ["other_engineer", "auditor", "security_officer"])
def test_who_does_not_own_the_model_may_not_upload(as_role, model, media_root, role):
    client = as_role(role)
    assert client.get("/models/pricing/versions/new").status_code == 403
    response = client.post("/models/pricing/versions/new", upload_fields(trained_bytes()))
    assert response.status_code == 403
    assert versions() == [] and stored_files(media_root) == []


# --- one version and its lifecycle -------------------------------------------------------


def test_the_version_page_shows_the_artifacts_facts(as_role, people, v1):
    page = text_of(as_role("auditor").get("/models/pricing/versions/1"))
    for fact in (
        v1.sha256,
        "joblib",
        "unsigned",
        f"{len(v1.allowed_globals)} globals imported, all allowed, all on the deployment's list",
        "Watermark</dt><dd>none",
        "not quarantined",
        f"by {people['ml_engineer'].username}",
        "&quot;rooms&quot;",
    ):
        assert fact in page, fact
    assert "Promote" not in page and "Archive" not in page  # the auditor reads only


@pytest.mark.parametrize(
    ("role", "buttons"),
    [
        ("ml_engineer", ["Move to staging", "Archive"]),
        ("admin", ["Move to staging", "Archive"]),
        ("other_engineer", []),
        ("auditor", []),
        ("security_officer", ["Archive"]),
    ],
)
def test_each_role_is_offered_only_what_it_may_do(as_role, v1, role, buttons):
    response = as_role(role).get("/models/pricing/versions/1")
    offered = [a["label"] for a in response.context["actions"]]
    assert offered == buttons


def test_promoting_asks_first_then_moves_the_former_production_version_to_staging(
    as_role, people, v1
):
    make_version(people["ml_engineer"])
    client = as_role("ml_engineer")
    page = client.get("/models/pricing/versions/2")
    assert [a["label"] for a in page.context["actions"]] == ["Promote to production", "Archive"]

    confirm = client.get("/models/pricing/versions/2/stage/production")
    assert confirm.status_code == 200
    assert "Promote to production?" in text_of(confirm)
    assert "moves back to staging" in text_of(confirm)
    assert versions() == [(1, "production", "ok"), (2, "staging", "ok")]  # GET changed nothing

    done = client.post("/models/pricing/versions/2/stage/production")
    assert done.status_code == 302 and done["Location"] == "/models/pricing/versions/2"
    assert versions() == [(1, "staging", "ok"), (2, "production", "ok")]
    moves = [e["details"] for e in audit_events("model.version.staged")]
    assert moves[-2:] == [
        {"from": "production", "to": "staging"},
        {"from": "staging", "to": "production"},
    ]
    assert "pricing v2 is now in production." in text_of(client.get(done["Location"]))

    replay = client.post("/models/pricing/versions/2/stage/production")
    assert replay.status_code == 409
    assert "v2 is already in production; nothing was changed." in text_of(replay)


def test_a_security_officer_archives_any_version(as_role, v1):
    client = as_role("security_officer")
    confirm = client.get("/models/pricing/versions/1/stage/archived")
    assert confirm.status_code == 200 and "Archive?" in text_of(confirm)
    assert "stops serving" in text_of(confirm)
    done = client.post("/models/pricing/versions/1/stage/archived")
    assert done.status_code == 302
    assert versions() == [(1, "archived", "ok")]
    [event] = [e for e in audit_events("model.version.staged") if e["details"]["to"] == "archived"]
    assert event["outcome"] == "success"
    # Only archiving: promoting stays the owners'.
    assert client.get("/models/pricing/versions/1/stage/production").status_code == 403
    assert client.post("/models/pricing/versions/1/stage/staging").status_code == 403
    assert versions() == [(1, "archived", "ok")]


@pytest.mark.parametrize("role", ["other_engineer", "auditor"])
@pytest.mark.parametrize("stage", ["production", "staging", "archived"])
def test_who_does_not_own_the_model_may_not_move_its_versions(as_role, people, v1, role, stage):
    make_version(people["ml_engineer"])
    client = as_role(role)
    for number in (1, 2):
        path = f"/models/pricing/versions/{number}/stage/{stage}"
        assert client.get(path).status_code == 403
        response = client.post(path)
        assert response.status_code == 403
        assert "text/html" in response["Content-Type"]
    assert versions() == [(1, "production", "ok"), (2, "staging", "ok")]


def test_an_archived_version_comes_back_to_staging(as_role, people, v1):
    client = as_role("ml_engineer")
    client.post("/models/pricing/versions/1/stage/archived")
    page = client.get("/models/pricing/versions/1")
    assert [a["label"] for a in page.context["actions"]] == [
        "Promote to production",
        "Move to staging",
    ]
    assert client.post("/models/pricing/versions/1/stage/staging").status_code == 302
    assert versions() == [(1, "staging", "ok")]


def test_a_quarantined_version_is_never_promoted(as_role, people, v1):
    version = make_version(people["ml_engineer"])
    model_version_quarantine(actor=people["admin"], version=version, reason="test quarantine")
    client = as_role("ml_engineer")
    page = client.get("/models/pricing/versions/2")
    assert "Quarantined:</strong> test quarantine" in text_of(page)
    assert "Promote to production" not in [a["label"] for a in page.context["actions"]]
    for method in (client.get, client.post):
        refused = method("/models/pricing/versions/2/stage/production")
        assert refused.status_code == 409
        assert "quarantined" in text_of(refused) and "never served or promoted" in text_of(refused)
    assert versions() == [(1, "production", "ok"), (2, "staging", "quarantined")]


def test_rolling_back_puts_the_previous_production_version_back(as_role, people, v1):
    make_version(people["ml_engineer"], stage="production")
    client = as_role("ml_engineer")
    page = client.get("/models/pricing/versions/2")
    assert "Roll back to v1" in [a["label"] for a in page.context["actions"]]
    assert "Roll back to v1" in text_of(client.get("/models/pricing"))

    confirm = client.get("/models/pricing/versions/2/rollback")
    assert confirm.status_code == 200
    text = text_of(confirm)
    assert "Roll back to v1?" in text and "v2 moves back to staging" in text
    assert 'name="to" value="1"' in confirm.content.decode()
    assert versions() == [(1, "staging", "ok"), (2, "production", "ok")]

    done = client.post("/models/pricing/versions/2/rollback", {"to": "1"})
    assert done.status_code == 302 and done["Location"] == "/models/pricing/versions/1"
    assert versions() == [(1, "production", "ok"), (2, "staging", "ok")]
    assert "Rolled back: v1 is in production, v2 is back in staging." in text_of(
        client.get(done["Location"])
    )
    moves = [e["details"] for e in audit_events("model.version.staged")]
    assert moves[-2:] == [
        {"from": "production", "to": "staging"},
        {"from": "staging", "to": "production"},
    ]

    replay = client.post("/models/pricing/versions/2/rollback", {"to": "1"})
    assert replay.status_code == 409
    assert "v2 is not in production" in text_of(replay)
    assert versions() == [(1, "production", "ok"), (2, "staging", "ok")]


def test_a_roll_back_refused_changes_nothing(as_role, people, v1):
    owner = people["ml_engineer"]
    make_version(owner, stage="production")
    client = as_role("ml_engineer")
    # Stale: the page named v1; meanwhile v3 became the one to roll back to.
    make_version(owner)
    client.post("/models/pricing/versions/3/stage/production")
    stale = client.post("/models/pricing/versions/3/rollback", {"to": "1"})
    assert stale.status_code == 409 and "has changed since the page was shown" in text_of(stale)
    missing = client.post("/models/pricing/versions/3/rollback", {})
    assert missing.status_code == 409
    assert versions() == [(1, "staging", "ok"), (2, "staging", "ok"), (3, "production", "ok")]
    # Nothing older in staging: v1 archived, and v2 is production after its own promotion.
    client.post("/models/pricing/versions/1/stage/archived")
    client.post("/models/pricing/versions/2/stage/production")
    nothing = client.get("/models/pricing/versions/2/rollback")
    assert nothing.status_code == 409 and "No version older than v2" in text_of(nothing)


@pytest.mark.parametrize("role", ["other_engineer", "auditor", "security_officer"])
def test_only_owners_and_admins_roll_back(as_role, people, v1, role):
    make_version(people["ml_engineer"], stage="production")
    client = as_role(role)
    assert client.get("/models/pricing/versions/2/rollback").status_code == 403
    assert client.post("/models/pricing/versions/2/rollback", {"to": "1"}).status_code == 403
    assert versions() == [(1, "staging", "ok"), (2, "production", "ok")]


def test_an_admin_rolls_back_a_model_they_do_not_own(as_role, people, v1):
    make_version(people["ml_engineer"], stage="production")
    done = as_role("admin").post("/models/pricing/versions/2/rollback", {"to": "1"})
    assert done.status_code == 302
    assert fresh(v1).stage == "production"


def test_every_form_carries_a_csrf_token_and_is_refused_without_it(as_role, v1):
    client = as_role("ml_engineer", enforce_csrf_checks=True)
    for path in ("/models/pricing/versions/1/stage/archived",):
        assert "csrfmiddlewaretoken" in client.get(path).content.decode()
        assert client.post(path).status_code == 403
    assert client.post("/models/", {"name": "churn"}).status_code == 403
    assert versions() == [(1, "production", "ok")] and not registered_model_exists("churn")


# --- the admin's links ---------------------------------------------------------------------


@pytest.fixture
def admin_client_verified(people: dict[str, Any], verified_login: Any) -> Client:
    admin = people["admin"]
    admin.is_staff = admin.is_superuser = True
    admin.save()
    return verified_login(Client(), admin)


def test_the_admins_registry_pages_lead_to_the_console(admin_client_verified, v1):
    client = admin_client_verified
    listing = client.get("/admin/registry/registeredmodel/").content.decode()
    assert 'href="/models/#register"' in listing and "Register a model" in listing
    model_page = client.get(f"/admin/registry/registeredmodel/{v1.model.pk}/change/")
    assert 'href="/models/pricing"' in model_page.content.decode()
    version_page = client.get(f"/admin/registry/modelversion/{v1.pk}/change/")
    assert 'href="/models/pricing/versions/1"' in version_page.content.decode()


def test_the_admins_upload_form_offers_the_previous_versions_schema(admin_client_verified, v1):
    page = admin_client_verified.get(
        f"/admin/registry/registeredmodel/{v1.model.pk}/upload-version/"
    )
    assert page.status_code == 200
    assert json.loads(page.context["form"]["input_schema"].value()) == SCHEMA
    assert json.loads(page.context["form"]["feature_order"].value()) == ["rooms", "area"]
    assert "prefilled from version 1" in text_of(page)


# --- signatures and watermarks through the pages -------------------------------------------


def test_a_signed_upload_names_its_publisher_on_the_version_page(
    as_role, people, model, media_root, tmp_path
):
    from apps.registry.publishers import publisher_create, publisher_remove
    from tests.registry.test_signed_artifacts import private_key_file, signed

    key, public = private_key_file(tmp_path, "trusted")
    publisher = publisher_create(
        actor=people["security_officer"], name="ml-platform", public_key=public
    )
    registered_model_update(actor=people["admin"], model=model, require_signed_artifacts=True)
    content = trained_bytes()
    bundle = io.BytesIO(signed(content, key, tmp_path).encode())
    bundle.name = "model.sig"
    client = as_role("ml_engineer")
    upload_page = text_of(client.get("/models/pricing/versions/new"))
    assert "Signatures: <strong>required</strong>" in upload_page and "ml-platform" in upload_page

    response = client.post("/models/pricing/versions/new", upload_fields(content, signature=bundle))
    assert response.status_code == 302, text_of(response)
    page = text_of(client.get(response["Location"]))
    assert "verified at upload: signed by <strong>ml-platform</strong>" in page
    assert publisher.key_id[:12] in page
    [event] = audit_events("model.version.signature_verified")
    assert event["details"]["publisher"] == "ml-platform"

    publisher_remove(actor=people["security_officer"], publisher=publisher)
    assert "publisher since removed" in text_of(client.get(response["Location"]))


def test_a_watermarked_upload_shows_its_watermark_state(as_role, model, media_root):
    from tests.registry.test_watermarks import WATERMARK, classifier_bytes

    client = as_role("ml_engineer")
    response = client.post(
        "/models/pricing/versions/new",
        upload_fields(classifier_bytes(), watermark=json.dumps(WATERMARK)),
    )
    assert response.status_code == 302, text_of(response)
    page = text_of(client.get(response["Location"]))
    assert "Watermark</dt><dd>pending" in page  # queued after commit, not run in this test
    assert json.dumps(WATERMARK["inputs"][0]) not in page  # the set itself is never shown


def test_the_model_page_needs_a_bounded_number_of_queries(
    as_role, people, v1, django_assert_max_num_queries
):
    for _ in range(4):
        make_version(people["ml_engineer"])
    client = as_role("ml_engineer")
    with django_assert_max_num_queries(20) as few:
        client.get("/models/pricing")
    for _ in range(8):
        make_version(people["ml_engineer"])
    with django_assert_max_num_queries(len(few.captured_queries)):
        page = client.get("/models/pricing")
    assert "13 versions" in text_of(page)
