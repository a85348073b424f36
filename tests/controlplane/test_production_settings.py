"""BULWARK_ENV=production: refuses weak configuration with one sentence; check --deploy clean."""

from __future__ import annotations

import os
import stat

import pytest

from tests.controlplane.startup import base_env, good_secrets, manage, owner_url

PRODUCTION = {"BULWARK_ENV": "production", "ALLOWED_HOSTS": "bulwark.example.com"}


def production_env(**overrides: str) -> dict[str, str]:
    return base_env(
        **{**PRODUCTION, "DATABASE_OWNER_URL": owner_url(), **good_secrets(), **overrides}
    )


def assert_refused(result, *, naming: str) -> None:
    assert result.returncode != 0
    assert result.stderr.startswith("Bulwark cannot start:"), result.stderr
    assert naming in result.stderr
    assert "Traceback" not in result.stderr


def test_check_deploy_is_clean_under_production_settings():
    result = manage("check", "--deploy", "--fail-level", "WARNING", env=production_env())
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout


def test_production_forces_debug_off_and_transport_security():
    code = (
        "from django.conf import settings as s; "
        "print(s.DEBUG, s.SECURE_SSL_REDIRECT, s.SESSION_COOKIE_SECURE, s.CSRF_COOKIE_SECURE, "
        "s.SECURE_HSTS_SECONDS >= 31536000, s.SECURE_HSTS_INCLUDE_SUBDOMAINS)"
    )
    result = manage("shell", "--no-imports", "-c", code, env=production_env(DJANGO_DEBUG="true"))
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["False", "True", "True", "True", "True", "True"]


@pytest.mark.parametrize(
    "name",
    [
        "DJANGO_SECRET_KEY",
        "JWT_SIGNING_KEY",
        "API_KEY_PEPPER",
        "AUDIT_HMAC_KEY",
        "AUDIT_SIGNING_KEY",
        "BULWARK_MASTER_KEYS",
    ],
)
def test_production_refuses_to_start_without_each_secret(name):
    env = production_env()
    del env[name]
    result = manage("check", env=env)
    assert_refused(result, naming=name)


@pytest.mark.parametrize(
    ("name", "value", "reason"),
    [
        ("DJANGO_SECRET_KEY", "tooshort-but-random-Q7x", "shorter than 50"),
        (
            "DJANGO_SECRET_KEY",
            "django-insecure-" + "abcdefghijklmnopqrstuvwxyz0123456789",
            "insecure",
        ),
        ("DJANGO_SECRET_KEY", "change-me-" + "x9Kq2LmN4pR7sT1vW3yZ5bD8fH0jA6cE" * 2, "placeholder"),
        ("JWT_SIGNING_KEY", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "distinct characters"),
        ("API_KEY_PEPPER", "Zq81-pepper", "shorter than 32"),
        ("AUDIT_HMAC_KEY", "your-example-value-0123456789-abcdefghijkl", "placeholder"),
        ("AUDIT_SIGNING_KEY", "Xk3 garbage key", "PEM"),
        ("BULWARK_MASTER_KEYS", "mk1:AAAA", "not 32"),
        ("BULWARK_MASTER_KEYS", "mk1:" + "A" * 43 + "=", "distinct bytes"),
        ("AUDIT_HMAC_KEYS_RETIRED", "old:" + "QnVsd2FyayBvbGQga2V5IDAxMjM0NTY3ODk=", "id:base64"),
        (
            "AUDIT_HMAC_KEYS_RETIRED",
            "0123456789abcdef:" + "QnVsd2FyayBvbGQga2V5IDAxMjM0NTY3ODk=",
            "do not belong together",
        ),
    ],
)
def test_production_refuses_weak_or_default_secrets(name, value, reason):
    result = manage("check", env=production_env(**{name: value}))
    assert_refused(result, naming=name)
    assert reason in result.stderr
    assert value not in result.stderr  # the message names the secret, never its value


def test_a_malformed_retired_audit_key_list_stops_development_too():
    # Key material that cannot be read cannot verify anything, whatever the environment.
    result = manage("check", env=base_env(**good_secrets(), AUDIT_HMAC_KEYS_RETIRED="nonsense"))
    assert_refused(result, naming="AUDIT_HMAC_KEYS_RETIRED")
    assert "not id:base64" in result.stderr


def test_production_starts_with_retired_audit_keys():
    from apps.core.secrets.required import audit_hmac_keys_retired_entry

    retired = audit_hmac_keys_retired_entry(b"the key before the current one, 0123456789")
    result = manage("check", env=production_env(AUDIT_HMAC_KEYS_RETIRED=retired))
    assert result.returncode == 0, result.stderr


def test_production_needs_allowed_hosts():
    env = production_env()
    del env["ALLOWED_HOSTS"]
    assert_refused(manage("check", env=env), naming="ALLOWED_HOSTS")


def test_production_runs_models_in_runners_only():
    result = manage("check", env=production_env(MODEL_ISOLATION="inprocess"))
    assert_refused(result, naming="MODEL_ISOLATION")
    code = "from django.conf import settings as s; print(s.MODEL_ISOLATION, s.MODEL_RUNNER_SANDBOX)"
    shown = manage("shell", "--no-imports", "-c", code, env=production_env())
    assert shown.stdout.split() == ["process", "required"], shown.stderr


@pytest.mark.parametrize("name", ["os.system", "builtins.eval", "not a name"])
def test_an_allow_list_addition_that_is_never_allowed_stops_startup(name):
    result = manage("check", env=production_env(PICKLE_TRUSTED_GLOBALS_EXTRA=f"numpy.int8,{name}"))
    assert_refused(result, naming="PICKLE_TRUSTED_GLOBALS_EXTRA")


def test_a_malformed_setting_is_one_sentence_not_a_traceback():
    result = manage("check", env=production_env(TRUSTED_PROXIES="10.0.0.0/8,nonsense"))
    assert_refused(result, naming="TRUSTED_PROXIES")


def test_development_generates_missing_secrets_once_into_a_private_dotenv(tmp_path):
    dotenv = tmp_path / ".env"
    env = base_env(BULWARK_DOTENV=str(dotenv))
    first = manage("check", env=env)
    assert first.returncode == 0, first.stderr
    assert "generated development secrets" in first.stderr
    assert dotenv.stat().st_mode & 0o777 == 0o600
    content = dotenv.read_text()
    for name in (
        "DJANGO_SECRET_KEY",
        "JWT_SIGNING_KEY",
        "AUDIT_SIGNING_KEY",
        "BULWARK_MASTER_KEYS",
    ):
        assert f"{name}=" in content
    second = manage("check", env=env)
    assert second.returncode == 0, second.stderr
    assert "generated" not in second.stderr
    assert dotenv.read_text() == content  # generated once, then reused


def test_generated_secrets_never_touch_a_dotenv_that_is_not_a_regular_file():
    # BULWARK_DOTENV=/dev/null (as the tests and the image's build step set it): generating
    # secrets must neither write to it nor chmod it (0600 on /dev/null breaks the machine).
    before = os.stat(os.devnull).st_mode
    try:
        result = manage("check", env=base_env(BULWARK_DOTENV=os.devnull))
        assert result.returncode == 0, result.stderr
        assert "into this process only" in result.stderr
        assert os.stat(os.devnull).st_mode == before
    finally:
        if os.stat(os.devnull).st_mode != before:
            os.chmod(os.devnull, stat.S_IMODE(before))


def test_environment_wins_over_dotenv(tmp_path):
    dotenv = tmp_path / ".env"
    dotenv.write_text('LOG_LEVEL="error"\nPREDICT_USER_RATE_LIMIT=5/s\n')
    env = base_env(BULWARK_DOTENV=str(dotenv), **good_secrets(), LOG_LEVEL="warning")
    code = "from django.conf import settings as s; print(s.LOG_LEVEL, s.PREDICT_USER_RATE_LIMIT)"
    result = manage("shell", "--no-imports", "-c", code, env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["WARNING", "5/s"]


def test_development_fills_secrets_left_empty_in_a_copied_example(tmp_path):
    dotenv = tmp_path / ".env"
    dotenv.write_text("DJANGO_SECRET_KEY=\nJWT_SIGNING_KEY=\nLOG_LEVEL=\n")
    env = base_env(BULWARK_DOTENV=str(dotenv))
    first = manage("check", env=env)
    assert first.returncode == 0, first.stderr
    assert "generated development secrets DJANGO_SECRET_KEY, JWT_SIGNING_KEY" in first.stderr
    assert manage("check", env=env).returncode == 0
