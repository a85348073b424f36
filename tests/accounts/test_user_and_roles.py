from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model

from apps.accounts.models import Role, User
from apps.accounts.roles import RoleName
from apps.accounts.services import user_create
from apps.core.errors import Conflict, InvalidInput

pytestmark = pytest.mark.django_db


def test_the_custom_user_model_is_in_use():
    assert get_user_model() is User
    assert User._meta.pk.get_internal_type() == "UUIDField"


def test_the_five_roles_exist_after_migrations():
    assert set(Role.objects.values_list("name", flat=True)) == {
        "admin",
        "security_officer",
        "ml_engineer",
        "auditor",
        "api_client",
    }
    assert all(role.description for role in Role.objects.all())


def test_a_user_may_hold_several_roles():
    user = user_create(
        username="dana",
        password="a long passphrase nobody guesses",
        roles=[RoleName.AUDITOR, RoleName.SECURITY_OFFICER],
    )
    assert user.role_names() == {"auditor", "security_officer"}
    assert user.has_role("auditor") and not user.has_role("admin")
    assert user.check_password("a long passphrase nobody guesses")


def test_user_create_refuses_unknown_roles_weak_passwords_and_duplicates():
    with pytest.raises(InvalidInput, match="Unknown role"):
        user_create(username="x", password="a long passphrase nobody guesses", roles=["root"])
    with pytest.raises(InvalidInput, match=r"too common|too short"):
        user_create(username="y", password="1q2w3e4r5t6y7u8i9o0p", roles=[])
    user_create(username="z", password="a long passphrase nobody guesses", roles=[])
    with pytest.raises(Conflict):
        user_create(username="Z", password="a long passphrase nobody guesses", roles=[])
    assert User.objects.filter(username__in=["x", "y"]).count() == 0
