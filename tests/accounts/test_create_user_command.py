from __future__ import annotations

import io

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from apps.accounts.models import User


class Stdin(io.StringIO):
    def isatty(self) -> bool:
        return False


pytestmark = pytest.mark.django_db


def run(monkeypatch, *args: str, stdin: str = "a long passphrase nobody guesses\n") -> str:  # type: ignore[no-untyped-def]
    monkeypatch.setattr("sys.stdin", Stdin(stdin))
    out = io.StringIO()
    call_command("create_user", *args, stdout=out)
    return out.getvalue()


def test_create_user_reads_the_first_line_of_stdin(monkeypatch):
    output = run(
        monkeypatch,
        *("alice", "--role", "auditor", "--role", "security_officer", "--email", "a@example.test"),
        stdin="a long passphrase nobody guesses\nignored second line\n",
    )
    user = User.objects.get(username="alice")
    assert user.check_password("a long passphrase nobody guesses")
    assert user.role_names() == {"auditor", "security_officer"}
    assert user.email == "a@example.test" and user.is_staff and not user.is_superuser
    assert "a long passphrase" not in output


def test_an_admin_is_staff_and_superuser(monkeypatch):
    run(monkeypatch, "root-person", "--role", "admin")
    user = User.objects.get(username="root-person")
    assert user.is_superuser and user.is_staff


@pytest.mark.parametrize(
    ("args", "stdin", "message"),
    [
        (["bob", "--role", "wizard"], "a long passphrase nobody guesses\n", "invalid choice"),
        (["bob", "--role", "auditor"], "short\n", "too short"),
        (["bob", "--role", "auditor"], "1q2w3e4r5t6y7u8i9o0p\n", "too common"),
        (["bob", "--role", "auditor"], "\n", "No password"),
    ],
)
def test_create_user_refuses_bad_input(monkeypatch, args, stdin, message):
    with pytest.raises((CommandError, SystemExit)) as excinfo:
        run(monkeypatch, *args, stdin=stdin)
    if isinstance(excinfo.value, CommandError):
        assert message in str(excinfo.value)
    assert not User.objects.filter(username="bob").exists()


def test_a_taken_username_is_refused(monkeypatch):
    run(monkeypatch, "carol", "--role", "auditor")
    with pytest.raises(CommandError, match="already exists"):
        run(monkeypatch, "carol", "--role", "auditor")
