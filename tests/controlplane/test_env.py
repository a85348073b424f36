from __future__ import annotations

from pathlib import Path

import pytest
from django.db import connection

from apps.core.env import (
    StartupError,
    database_from_url,
    dotenv_quote,
    parse_dotenv,
    parse_rate,
    redact_url,
)
from apps.core.secrets.required import (
    audit_hmac_key_id,
    audit_hmac_keys_retired_entry,
    parse_audit_hmac_keys_retired,
    parse_master_keys,
)


def test_dotenv_round_trips_multiline_pem_and_quotes():
    pem = '-----BEGIN TEST-----\nabc"def\\ghi\n-----END TEST-----\n'
    text = (
        f"# comment\nexport A=plain value # trailing comment\nB={dotenv_quote(pem)}\nC='lit\\n'\n"
    )
    values = parse_dotenv(text)
    assert values == {"A": "plain value", "B": pem, "C": "lit\\n"}


def test_sqlite_is_the_default_database(tmp_path: Path):
    assert database_from_url("", base_dir=tmp_path) == {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": tmp_path / "db.sqlite3",
        "OPTIONS": {"transaction_mode": "IMMEDIATE", "timeout": 20},
    }
    assert (
        database_from_url("sqlite:///data/x.db", base_dir=tmp_path)["NAME"]
        == tmp_path / "data/x.db"
    )
    assert database_from_url("sqlite:////var/x.db", base_dir=tmp_path)["NAME"] == Path("/var/x.db")


def test_postgres_url_is_parsed_with_options(tmp_path: Path):
    config = database_from_url(
        "postgres://bulwark:p%40ss@db.internal:5433/control?sslmode=require", base_dir=tmp_path
    )
    assert config["ENGINE"] == "django.db.backends.postgresql"
    assert (config["USER"], config["PASSWORD"], config["HOST"], config["PORT"], config["NAME"]) == (
        "bulwark",
        "p@ss",
        "db.internal",
        "5433",
        "control",
    )
    assert config["OPTIONS"] == {"sslmode": "require", "connect_timeout": "10"}
    assert config["CONN_MAX_AGE"] == 60


def test_unknown_database_scheme_is_refused_without_echoing_the_url(tmp_path: Path):
    with pytest.raises(StartupError) as excinfo:
        database_from_url("mysql://root:hunter2@db/x", base_dir=tmp_path)
    assert "hunter2" not in str(excinfo.value)
    assert redact_url("redis://:hunter2@r:6379/0") == "redis://:***@r:6379/0"


@pytest.mark.parametrize(
    ("rate", "expected"),
    [("60/m", (60, 60)), ("1/s", (1, 1)), ("1000000/h", (1_000_000, 3600))],
)
def test_rates_follow_api_md(rate, expected):
    assert parse_rate(rate) == expected


@pytest.mark.parametrize("rate", ["0/m", "1000001/s", "60/d", "60", "-1/m", "1.5/s", " /m"])
def test_bad_rates_are_refused(rate):
    with pytest.raises(ValueError, match="not a rate"):
        parse_rate(rate)


def test_master_keys_parse_and_refuse_bad_entries():
    import base64

    key = base64.b64encode(bytes(range(32))).decode()
    assert parse_master_keys(f"new:{key},old:{key}") == [
        ("new", bytes(range(32))),
        ("old", bytes(range(32))),
    ]
    for bad in (f"{key}", f"a b:{key}", "k:!!!", f"k:{key},k:{key}"):
        with pytest.raises(ValueError):
            parse_master_keys(bad)


def test_retired_audit_hmac_keys_parse_and_refuse_bad_entries():
    import base64

    # Any text is a key, commas and colons included: entries carry it in base64.
    old, older = b"an old key, with: commas", b"an older one"
    value = f"{audit_hmac_keys_retired_entry(old)},{audit_hmac_keys_retired_entry(older)}"
    assert parse_audit_hmac_keys_retired(value) == [
        (audit_hmac_key_id(old), old),
        (audit_hmac_key_id(older), older),
    ]
    assert audit_hmac_key_id(old) == audit_hmac_key_id(old) != audit_hmac_key_id(older)
    assert len(audit_hmac_key_id(old)) == 16
    wrong_id = f"{audit_hmac_key_id(older)}:{base64.b64encode(old).decode()}"
    for bad, reason in (
        (base64.b64encode(old).decode(), "not id:base64"),
        (f"OLD:{base64.b64encode(old).decode()}", "not id:base64"),
        (f"{audit_hmac_key_id(old)}:!!!", "not valid base64"),
        (f"{audit_hmac_key_id(b'')}:", "empty key"),
        (wrong_id, "do not belong together"),
        (f"{audit_hmac_keys_retired_entry(old)},{audit_hmac_keys_retired_entry(old)}", "twice"),
    ):
        with pytest.raises(ValueError, match=reason) as refused:
            parse_audit_hmac_keys_retired(bad)
        assert "old key" not in str(refused.value)
        assert base64.b64encode(old).decode() not in str(refused.value)


@pytest.mark.django_db
def test_tests_run_on_postgresql_when_database_url_is_set():
    import os

    url = os.environ.get("DATABASE_URL", "")
    if url.startswith(("postgres://", "postgresql://")):
        assert connection.vendor == "postgresql"
        with connection.cursor() as cursor:
            cursor.execute("SELECT current_setting('server_version_num')::int")
            assert cursor.fetchone()[0] >= 150000
    else:
        assert connection.vendor == "sqlite"


def test_an_empty_variable_means_its_default(monkeypatch):
    from apps.core.env import env_bool, env_choice, env_int, env_list, env_rate, env_str

    for name in ("A_STR", "A_BOOL", "A_CHOICE", "A_INT", "A_LIST", "A_RATE"):
        monkeypatch.setenv(name, "  ")
    assert env_str("A_STR", default="d") == "d"
    assert env_bool("A_BOOL", default=True) is True
    assert env_choice("A_CHOICE", choices=("x", "y"), default="y") == "y"
    assert env_int("A_INT", default=7) == 7
    assert env_list("A_LIST", default=["a"]) == ["a"]
    assert env_rate("A_RATE", default="60/m") == "60/m"
