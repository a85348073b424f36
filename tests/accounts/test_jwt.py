"""docs/api.md "JWT": obtain, refresh with rotation, revoke, me; forgeries; families;
deactivation."""

from __future__ import annotations

import json
import threading
import time
import uuid

import jwt
import pytest
from django.conf import settings
from django.db import connection

from apps.accounts.authentication import JwtAuthentication
from apps.audit.models import AuditEvent
from apps.audit.services import audit_chain_pending
from apps.core.permissions import roles_of
from tests.accounts.factories import UserFactory

PASSWORD = "correct horse battery staple"
pytestmark = pytest.mark.django_db


def obtain(client, username: str, password: str = PASSWORD, **extra):  # type: ignore[no-untyped-def]
    return client.post(
        "/api/v1/auth/token", {"username": username, "password": password}, format="json", **extra
    )


def pair_for(client, user) -> dict:  # type: ignore[no-untyped-def]
    response = obtain(client, user.username)
    assert response.status_code == 200, response.content
    return response.json()


def me(client, access: str):  # type: ignore[no-untyped-def]
    return client.get("/api/v1/auth/me", HTTP_AUTHORIZATION=f"Bearer {access}")


def code_of(response) -> str:  # type: ignore[no-untyped-def]
    return response.json()["error"]["code"]


def test_a_pair_has_the_claims_and_lifetimes_of_api_md(api_client):
    user = UserFactory(roles=["auditor"])
    pair = pair_for(api_client, user)
    assert set(pair) == {"access", "refresh", "access_expires_in"}
    assert pair["access_expires_in"] == 900
    header = jwt.get_unverified_header(pair["access"])
    assert header["alg"] == "HS256"
    access = jwt.decode(pair["access"], options={"verify_signature": False})
    refresh = jwt.decode(pair["refresh"], options={"verify_signature": False})
    for claims in (access, refresh):
        assert claims["iss"] == "bulwark" and claims["aud"] == "bulwark-api"
        assert claims["sub"] == str(user.pk) and claims["jti"] and claims["fam"]
    assert access["exp"] - access["iat"] == 15 * 60
    assert refresh["exp"] - refresh["iat"] == 24 * 3600
    assert access["fam"] == refresh["fam"] and access["jti"] != refresh["jti"]
    # Signed with JWT_SIGNING_KEY, not SECRET_KEY.
    jwt.decode(
        pair["access"],
        settings.SIMPLE_JWT["SIGNING_KEY"],
        algorithms=["HS256"],
        audience="bulwark-api",
    )
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(
            pair["access"], settings.SECRET_KEY, algorithms=["HS256"], audience="bulwark-api"
        )


def test_me_answers_for_the_bearer(api_client):
    user = UserFactory(roles=["auditor", "security_officer"])
    response = me(api_client, pair_for(api_client, user)["access"])
    assert response.status_code == 200
    assert response.json() == {
        "username": user.username,
        "roles": ["auditor", "security_officer"],
        "mfa_enabled": False,
    }


def test_unknown_user_and_wrong_password_answer_alike(api_client):
    UserFactory(username="known")
    unknown = obtain(api_client, "nobody-here")
    wrong = obtain(api_client, "known", "wrong password entirely")
    assert unknown.status_code == wrong.status_code == 401
    strip = lambda r: {k: v for k, v in r.json()["error"].items() if k != "request_id"}  # noqa: E731
    assert strip(unknown) == strip(wrong)
    assert code_of(unknown) == "invalid_credentials"


def test_an_inactive_user_cannot_sign_in(api_client):
    UserFactory(username="gone", is_active=False)
    assert code_of(obtain(api_client, "gone")) == "invalid_credentials"


@pytest.mark.parametrize(
    "body", [{}, {"username": "x"}, {"password": "y"}, {"username": "", "password": "y"}]
)
def test_missing_fields_are_invalid_input(api_client, body):
    response = api_client.post("/api/v1/auth/token", body, format="json")
    assert response.status_code == 400 and code_of(response) == "invalid_input"


def forge(
    claims: dict, *, key: str | None = None, algorithm: str = "HS256", headers: dict | None = None
) -> str:
    return jwt.encode(
        claims, key or settings.SIMPLE_JWT["SIGNING_KEY"], algorithm=algorithm, headers=headers
    )


def good_claims(user, pair) -> dict:  # type: ignore[no-untyped-def]
    return jwt.decode(pair["access"], options={"verify_signature": False})


@pytest.mark.parametrize(
    "forgery",
    [
        "alg_none",
        "other_key",
        "other_issuer",
        "no_issuer",
        "other_audience",
        "expired",
        "tampered_payload",
        "hs512",
        "refresh_as_access",
        "garbage",
    ],
)
def test_forged_tokens_are_token_invalid(api_client, forgery):
    user = UserFactory()
    victim = UserFactory(roles=["admin"])
    pair = pair_for(api_client, user)
    claims = good_claims(user, pair)
    if forgery == "alg_none":
        token = jwt.encode({**claims, "sub": str(victim.pk)}, key="", algorithm="none")
    elif forgery == "other_key":
        token = forge(claims, key="an-attacker-key-of-sufficient-length-0123456789")
    elif forgery == "other_issuer":
        token = forge({**claims, "iss": "evil"})
    elif forgery == "no_issuer":
        token = forge({k: v for k, v in claims.items() if k != "iss"})
    elif forgery == "other_audience":
        token = forge({**claims, "aud": "another-api"})
    elif forgery == "expired":
        token = forge({**claims, "iat": int(time.time()) - 3600, "exp": int(time.time()) - 1})
    elif forgery == "tampered_payload":
        header, _payload, signature = pair["access"].split(".")
        payload = jwt.utils.base64url_encode(
            json.dumps({**claims, "sub": str(victim.pk)}).encode()
        ).decode()
        token = f"{header}.{payload}.{signature}"
    elif forgery == "hs512":
        token = forge(claims, algorithm="HS512")
    elif forgery == "refresh_as_access":
        token = pair["refresh"]
    else:
        token = "not.a.jwt"
    response = me(api_client, token)
    assert response.status_code == 401
    assert code_of(response) == "token_invalid"
    assert response["WWW-Authenticate"].startswith("Bearer")


def test_no_token_is_authentication_required(api_client):
    response = api_client.get("/api/v1/auth/me")
    assert response.status_code == 401 and code_of(response) == "authentication_required"


def test_refresh_rotates_and_the_old_refresh_token_is_dead(api_client):
    user = UserFactory()
    first = pair_for(api_client, user)
    rotated = api_client.post(
        "/api/v1/auth/token/refresh", {"refresh": first["refresh"]}, format="json"
    )
    assert rotated.status_code == 200
    second = rotated.json()
    assert set(second) == {"access", "refresh"}
    assert me(api_client, second["access"]).status_code == 200
    reused = api_client.post(
        "/api/v1/auth/token/refresh", {"refresh": first["refresh"]}, format="json"
    )
    assert reused.status_code == 401 and code_of(reused) == "token_invalid"


def test_reusing_a_rotated_refresh_token_revokes_the_whole_family(
    api_client, django_capture_on_commit_callbacks
):
    user = UserFactory()
    first = pair_for(api_client, user)
    second = api_client.post(
        "/api/v1/auth/token/refresh", {"refresh": first["refresh"]}, format="json"
    ).json()
    other_session = pair_for(api_client, user)  # another family: untouched
    with django_capture_on_commit_callbacks(execute=True):
        stolen = api_client.post(
            "/api/v1/auth/token/refresh", {"refresh": first["refresh"]}, format="json"
        )
    assert stolen.status_code == 401
    # Everything of that family is dead now: the thief's and the victim's tokens alike.
    assert code_of(me(api_client, second["access"])) == "token_invalid"
    assert code_of(me(api_client, first["access"])) == "token_invalid"
    again = api_client.post(
        "/api/v1/auth/token/refresh", {"refresh": second["refresh"]}, format="json"
    )
    assert again.status_code == 401
    assert me(api_client, other_session["access"]).status_code == 200
    audit_chain_pending()
    reuse = AuditEvent.objects.filter(action="auth.token.revoked", outcome="denied").get()
    assert json.loads(reuse.body)["details"] == {"reason": "refresh_reused"}


def test_revoke_ends_the_refresh_token_and_the_access_tokens_issued_from_it(
    api_client, django_capture_on_commit_callbacks
):
    user = UserFactory()
    pair = pair_for(api_client, user)
    assert me(api_client, pair["access"]).status_code == 200
    with django_capture_on_commit_callbacks(execute=True):
        response = api_client.post(
            "/api/v1/auth/token/revoke", {"refresh": pair["refresh"]}, format="json"
        )
    assert response.status_code == 204 and response.content == b""
    assert code_of(me(api_client, pair["access"])) == "token_invalid"
    refreshed = api_client.post(
        "/api/v1/auth/token/refresh", {"refresh": pair["refresh"]}, format="json"
    )
    assert code_of(refreshed) == "token_invalid"


def test_revoking_a_forged_refresh_token_is_token_invalid(api_client):
    response = api_client.post("/api/v1/auth/token/revoke", {"refresh": "x.y.z"}, format="json")
    assert response.status_code == 401 and code_of(response) == "token_invalid"


def test_a_deactivated_user_is_refused_at_once(api_client, django_capture_on_commit_callbacks):
    user = UserFactory()
    pair = pair_for(api_client, user)
    assert me(api_client, pair["access"]).status_code == 200  # now cached
    with django_capture_on_commit_callbacks(execute=True):
        user.is_active = False
        user.save()
    assert code_of(me(api_client, pair["access"])) == "token_invalid"
    refreshed = api_client.post(
        "/api/v1/auth/token/refresh", {"refresh": pair["refresh"]}, format="json"
    )
    assert code_of(refreshed) == "token_invalid"


def test_an_erased_user_is_refused_at_once(api_client, django_capture_on_commit_callbacks):
    user = UserFactory()
    pair = pair_for(api_client, user)
    assert me(api_client, pair["access"]).status_code == 200
    with django_capture_on_commit_callbacks(execute=True):
        user.delete()
    assert code_of(me(api_client, pair["access"])) == "token_invalid"


def test_role_changes_apply_to_the_next_request(api_client, django_capture_on_commit_callbacks):
    user = UserFactory(roles=["auditor"])
    access = pair_for(api_client, user)["access"]
    assert me(api_client, access).json()["roles"] == ["auditor"]
    with django_capture_on_commit_callbacks(execute=True):
        user.roles.clear()
    assert me(api_client, access).json()["roles"] == []


def test_an_authenticated_request_costs_no_database_query(
    api_client, rf, django_assert_num_queries, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):  # the user's record, once committed
        user = UserFactory(roles=["auditor"])
    access = pair_for(api_client, user)["access"]
    me(api_client, access)  # fills the cache
    request = rf.get("/", HTTP_AUTHORIZATION=f"Bearer {access}")
    from rest_framework.request import Request

    with django_assert_num_queries(0):
        authenticated, _token = JwtAuthentication().authenticate(Request(request))
        roles = roles_of(authenticated)  # carried by the cached record: no query either
    assert authenticated.pk == user.pk and "auditor" in roles


def test_every_attempt_is_audited_without_the_password(api_client):
    user = UserFactory()
    obtain(api_client, user.username, "a wrong password here")
    obtain(api_client, "no-such-user", "another secret here")
    pair_for(api_client, user)
    audit_chain_pending()
    events = list(AuditEvent.objects.order_by("seq").values_list("action", "outcome", "body"))
    actions = [(action, outcome) for action, outcome, _ in events]
    assert actions.count(("auth.token.failed", "failure")) == 2
    assert ("auth.token.issued", "success") in actions
    text = "".join(body for _, _, body in events)
    for secret in (
        "a wrong password here",
        "another secret here",
        PASSWORD,
        "no-such-user",
        user.username,
    ):
        assert secret not in text


def test_passwords_are_hashed_with_argon2_in_production_settings():
    import controlplane.settings as production

    assert production.PASSWORD_HASHERS[0].endswith("Argon2PasswordHasher")


@pytest.mark.django_db(transaction=True)
def test_twenty_parallel_refreshes_with_one_token_exactly_one_succeeds():
    from rest_framework.test import APIClient

    assert connection.vendor == "postgresql"
    user = UserFactory()
    refresh = pair_for(APIClient(), user)["refresh"]
    barrier = threading.Barrier(20)
    statuses: list[int] = []

    def attempt() -> None:
        client = APIClient()
        barrier.wait()
        statuses.append(
            client.post(
                "/api/v1/auth/token/refresh", {"refresh": refresh}, format="json"
            ).status_code
        )
        connection.close()

    threads = [threading.Thread(target=attempt) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(statuses) == [200] + [401] * 19


def test_a_refresh_token_of_another_family_claim_is_refused(api_client):
    user = UserFactory()
    pair = pair_for(api_client, user)
    claims = jwt.decode(pair["refresh"], options={"verify_signature": False})
    forged = forge({**claims, "fam": str(uuid.uuid4())})
    response = api_client.post("/api/v1/auth/token/refresh", {"refresh": forged}, format="json")
    assert code_of(response) == "token_invalid"


def test_failed_token_authentication_is_limited_per_address(api_client, settings):
    settings.AUTH_FAILURES_PER_IP_RATE = "3/m"
    user = UserFactory()
    good = pair_for(api_client, user)["access"]
    for _ in range(3):
        response = api_client.get(
            "/api/v1/auth/me", HTTP_AUTHORIZATION="Bearer x.y.z", REMOTE_ADDR="203.0.113.5"
        )
        assert code_of(response) in {"token_invalid", "rate_limited"}
    limited = api_client.get(
        "/api/v1/auth/me", HTTP_AUTHORIZATION=f"Bearer {good}", REMOTE_ADDR="203.0.113.5"
    )
    assert limited.status_code == 429 and code_of(limited) == "rate_limited"
    assert int(limited["Retry-After"]) > 0
    other = api_client.get(
        "/api/v1/auth/me", HTTP_AUTHORIZATION=f"Bearer {good}", REMOTE_ADDR="203.0.113.6"
    )
    assert other.status_code == 200


def test_a_revocation_survives_the_cache_losing_its_mark(
    api_client, django_capture_on_commit_callbacks
):
    from django.core.cache import cache

    user = UserFactory()
    pair = pair_for(api_client, user)
    with django_capture_on_commit_callbacks(execute=True):
        api_client.post("/api/v1/auth/token/revoke", {"refresh": pair["refresh"]}, format="json")
    cache.clear()  # eviction, a restart without persistence, a FLUSHDB
    assert code_of(me(api_client, pair["access"])) == "token_invalid"


def test_a_revocation_redis_cannot_record_is_refused_not_half_done(api_client, monkeypatch):
    import redis

    from apps.accounts import tokens

    user = UserFactory()
    pair = pair_for(api_client, user)

    def down(family_id):  # type: ignore[no-untyped-def]
        raise redis.exceptions.ConnectionError("Redis is down")

    monkeypatch.setattr(tokens, "mark_family_revoked", down)
    response = api_client.post(
        "/api/v1/auth/token/revoke", {"refresh": pair["refresh"]}, format="json"
    )
    assert response.status_code == 503 and code_of(response) == "service_unavailable"
    monkeypatch.undo()
    assert me(api_client, pair["access"]).status_code == 200  # nothing was half-revoked
    from apps.accounts.models import TokenFamily

    assert TokenFamily.objects.get().revoked_at is None


def test_a_refresh_is_audited_as_issued(api_client):
    user = UserFactory()
    pair = pair_for(api_client, user)
    api_client.post("/api/v1/auth/token/refresh", {"refresh": pair["refresh"]}, format="json")
    audit_chain_pending()
    methods = [
        json.loads(body)["details"]["method"]
        for body in AuditEvent.objects.filter(action="auth.token.issued").values_list(
            "body", flat=True
        )
    ]
    assert methods == ["password", "refresh"]


def test_clearing_a_role_from_the_role_side_applies_at_once(
    api_client, django_capture_on_commit_callbacks
):
    from apps.accounts.models import Role

    user = UserFactory(roles=["auditor"])
    access = pair_for(api_client, user)["access"]
    assert me(api_client, access).json()["roles"] == ["auditor"]
    with django_capture_on_commit_callbacks(execute=True):
        Role.objects.get(name="auditor").users.clear()
    assert me(api_client, access).json()["roles"] == []


@pytest.mark.parametrize("claim", ["exp", "iat", "nbf"])
@pytest.mark.parametrize("value", [1e20, "9999999999", -1e20, 10**30, None, [1]])
def test_a_time_claim_that_is_no_valid_time_is_token_invalid_never_a_500(api_client, claim, value):
    # Signed with the real key, as a leaked or mis-minted token would be.
    user = UserFactory()
    pair = pair_for(api_client, user)
    claims = {**good_claims(user, pair), claim: value}
    response = me(api_client, forge(claims))
    assert response.status_code == 401 and code_of(response) == "token_invalid"
    refresh = {**jwt.decode(pair["refresh"], options={"verify_signature": False}), claim: value}
    refreshed = api_client.post(
        "/api/v1/auth/token/refresh", {"refresh": forge(refresh)}, format="json"
    )
    assert refreshed.status_code == 401 and code_of(refreshed) == "token_invalid"
