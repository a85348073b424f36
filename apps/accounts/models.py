from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.contrib.auth.models import AbstractUser
from django.db import models
from django.db.models.expressions import Combinable
from django.utils.crypto import salted_hmac

# The MFA devices (django-otp Devices with sealed secrets) live in their own module; importing
# them here registers them with the app, as if they were defined here.
from apps.accounts.devices import (  # noqa: F401  # re-exported models
    RecoveryCode,
    RecoveryCodeDevice,
    TotpDevice,
)
from apps.accounts.roles import RoleName


class Role(models.Model):
    """One of the five fixed roles; rows are created by a data migration, never by hand."""

    name = models.CharField(max_length=32, primary_key=True, choices=RoleName.choices)
    description = models.CharField(max_length=200, blank=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.get_name_display()


class User(AbstractUser):  # type: ignore[django-manager-missing]  # django-otp's Device is untyped
    """Bulwark's user. Random ids so that neither URLs nor audit targets reveal a count."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    roles = models.ManyToManyField(Role, blank=True, related_name="users")
    # Moves on whenever the user's access is taken away (apps.accounts.credentials): every
    # session, token family and access token made under an earlier epoch is refused from then
    # on, so reactivating the user revives none of them.
    access_epoch = models.PositiveIntegerField(default=0, editable=False)

    class Meta(AbstractUser.Meta):
        swappable = "AUTH_USER_MODEL"

    if TYPE_CHECKING:
        # Attributes other code puts on instances (none of them is a field).
        _password: str | None  # AbstractBaseUser's: the new raw password until saved
        is_verified: Callable[[], bool]  # django-otp's OTPMiddleware, on request.user
        otp_device: Any  # read by django-otp's user_logged_in receiver
        _bulwark_roles: set[str]  # the role names, cached (apps.core.permissions.roles_of)

    def __str__(self) -> str:
        return self.username

    def save(self, *args: Any, **kwargs: Any) -> None:
        # A new password (set_password, then save: the admin's forms, `manage.py
        # changepassword`, a shell) moves the access epoch with it, whoever calls: no session or
        # token made with the old one survives. Not a hash upgrade at sign-in, which clears
        # `_password` before saving. The services also revoke keys and audit the cause
        # (apps.accounts.credentials); this is the floor under every other path.
        if self._state.adding:
            super().save(*args, **kwargs)
            return
        update_fields = kwargs.get("update_fields")
        if self._password is not None:
            self.access_epoch = models.F("access_epoch") + 1
            if update_fields is not None:
                kwargs["update_fields"] = {*update_fields, "access_epoch"}
        elif update_fields is None:
            # The epoch only ever moves forward, by the UPDATEs that move it: a save of an
            # instance read before one of them must not write the old value back.
            kwargs["update_fields"] = [
                field.name
                for field in self._meta.concrete_fields
                if not field.primary_key and field.name != "access_epoch"
            ]
        super().save(*args, **kwargs)
        if isinstance(self.access_epoch, Combinable):  # moved by the UPDATE: read it back
            self.refresh_from_db(fields=["access_epoch"])

    def _session_hash(self, secret: str | bytes | None = None) -> str:
        if not self.access_epoch:  # Django's own value: sessions from before the field live
            return salted_hmac(
                "django.contrib.auth.models.AbstractBaseUser.get_session_auth_hash",
                self.password,
                secret=secret,
                algorithm="sha256",
            ).hexdigest()
        return salted_hmac(
            "bulwark.accounts.User.get_session_auth_hash",
            f"{self.password}:{self.access_epoch}",
            secret=secret,
            algorithm="sha256",
        ).hexdigest()

    def get_session_auth_hash(self) -> str:
        """Django's session check (the password hash, keyed), with the access epoch in it: a
        session started before the epoch moved no longer matches and is flushed. Epoch 0 keeps
        Django's own value, so sessions made before this field existed survive its migration."""
        return self._session_hash()

    def get_session_auth_fallback_hash(self) -> Iterator[str]:
        # Under SECRET_KEY_FALLBACKS too, or a session of an earlier epoch would match a
        # fallback key's epoch-less hash and outlive the revocation.
        for secret in settings.SECRET_KEY_FALLBACKS:
            yield self._session_hash(secret)

    def role_names(self) -> set[str]:
        return {role.name for role in self.roles.all()}

    def has_role(self, *names: str) -> bool:
        return bool(self.role_names() & set(names))


class TokenFamily(models.Model):
    """All refresh tokens descended from one sign-in, and the access tokens issued from them
    (they carry its id as the `fam` claim). Revoking the family ends them all at once."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="token_families")
    created_at = models.DateTimeField(auto_now_add=True)
    # The last sign-in or rotation: the idle timeout counts from here.
    last_used_at = models.DateTimeField(null=True, blank=True)
    # The user's access epoch when the family began; an older one is dead (see User).
    access_epoch = models.PositiveIntegerField(default=0)
    revoked_at = models.DateTimeField(null=True, blank=True)
    revoked_reason = models.CharField(max_length=32, blank=True)

    def __str__(self) -> str:
        return f"token family {self.id}"


class IssuedRefreshToken(models.Model):
    """A refresh token we issued. `used_at` is set when it is rotated: it may be used once."""

    jti = models.CharField(max_length=64, primary_key=True)
    family = models.ForeignKey(TokenFamily, on_delete=models.CASCADE, related_name="refresh_tokens")
    expires_at = models.DateTimeField()
    used_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"refresh token {self.jti}"
