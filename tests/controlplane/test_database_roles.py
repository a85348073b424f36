"""The database protects the trail: on a database of its own, `migrate` runs as the owner role
(DATABASE_OWNER_URL) and grants the application role (DATABASE_URL) rows only; connected as
the application role, an attacker is refused TRUNCATE, DROP, ALTER, changing audit rows and
the migration record; Bulwark itself still works as that role; `check --deploy` warns when
the application owns its tables."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import urlsplit

import psycopg
import pytest
from psycopg import errors, sql

from apps.core.database_roles import scram_verifier
from tests.controlplane.startup import base_env, good_secrets, manage

APP_PASSWORD = "app-" + "x" * 20  # a test role's password, trust auth ignores it


@dataclass(frozen=True)
class Scratch:
    database: str
    owner: str
    app: str
    host: str
    port: int
    admin: str  # the cluster's superuser, which made all this

    def url(self, role: str, password: str = "") -> str:
        secret = f":{password}" if password else ""
        return f"postgres://{role}{secret}@{self.host}:{self.port}/{self.database}"

    def connect(self, role: str, database: str | None = None) -> psycopg.Connection:
        return psycopg.connect(
            host=self.host, port=self.port, user=role, dbname=database or self.database,
            autocommit=True,
        )  # fmt: skip


def _env(scratch: Scratch, **overrides: str) -> dict[str, str]:
    settings = {
        "DATABASE_URL": scratch.url(scratch.app, APP_PASSWORD),
        "DATABASE_OWNER_URL": scratch.url(scratch.owner),
        **overrides,
    }
    return base_env(**good_secrets(), **settings)


@pytest.fixture(scope="module")
def scratch() -> Iterator[Scratch]:
    """A database owned by an owner role that may create roles, with no application role yet:
    what an operator starts from (README, Database roles)."""
    parts = urlsplit(os.environ["DATABASE_URL"])
    suffix = secrets.token_hex(4)
    made = Scratch(
        database=f"bulwark_roles_{suffix}",
        owner=f"bulwark_owner_{suffix}",
        app=f"bulwark_app_{suffix}",
        host=parts.hostname or "127.0.0.1",
        port=parts.port or 5432,
        admin=parts.username or "postgres",
    )
    with made.connect(made.admin, "postgres") as admin:
        admin.execute(sql.SQL("CREATE ROLE {} LOGIN CREATEROLE").format(sql.Identifier(made.owner)))
        admin.execute(
            sql.SQL("CREATE DATABASE {} OWNER {}").format(
                sql.Identifier(made.database), sql.Identifier(made.owner)
            )
        )
    try:
        result = manage("migrate", "--noinput", env=_env(made), timeout=600)
        assert result.returncode == 0, result.stdout + result.stderr
        assert f"Application role {made.app}: created and granted rows only" in result.stdout
        yield made
    finally:
        with made.connect(made.admin, "postgres") as admin:
            admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                    sql.Identifier(made.database)
                )
            )
            for role in (made.app, made.owner):
                admin.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))


def test_migrate_runs_as_the_owner_and_makes_an_application_role_that_owns_nothing(scratch):
    with scratch.connect(scratch.admin) as admin:
        owners = admin.execute(
            "SELECT DISTINCT tableowner FROM pg_tables WHERE schemaname = 'public'"
        ).fetchall()
        assert owners == [(scratch.owner,)]
        flags = admin.execute(
            "SELECT rolsuper, rolcreatedb, rolcreaterole, rolcanlogin, rolpassword"
            " FROM pg_authid WHERE rolname = %s",
            [scratch.app],
        ).fetchone()
    assert flags[:4] == (False, False, False, True)
    # Stored as a SCRAM verifier made client-side: the password was never in a statement.
    assert flags[4].startswith("SCRAM-SHA-256$4096:")
    assert APP_PASSWORD not in flags[4]


@pytest.mark.parametrize(
    "statement",
    [
        "TRUNCATE audit_auditevent",
        "TRUNCATE audit_auditevent, audit_pendingevent CASCADE",
        "TRUNCATE incidents_incident CASCADE",
        "DROP TABLE audit_auditevent CASCADE",
        "ALTER TABLE audit_auditevent DISABLE TRIGGER ALL",
        "DROP TRIGGER audit_event_append_only ON audit_auditevent",
        "UPDATE audit_auditevent SET action = 'forged'",
        "DELETE FROM audit_auditevent",
        "DELETE FROM audit_checkpoint",
        "UPDATE audit_checkpoint SET head = 'forged'",
        "UPDATE django_migrations SET app = 'forged'",
        "UPDATE audit_pendingevent SET body = 'forged'",
        "UPDATE audit_actorpseudonym SET pseudonym = 'forged'",
        "DELETE FROM django_migrations",
        "CREATE TABLE planted (x int)",
        "ALTER TABLE accounts_user ADD COLUMN planted int",
    ],
)
def test_the_application_role_is_refused_what_would_destroy_evidence(scratch, statement):
    with scratch.connect(scratch.app) as app, pytest.raises(errors.InsufficientPrivilege):
        app.execute(statement)


def test_the_application_role_reads_and_writes_rows(scratch):
    with scratch.connect(scratch.app) as app:
        app.execute("INSERT INTO audit_pendingevent (body) VALUES ('{}')")
        assert app.execute("DELETE FROM audit_pendingevent").rowcount == 1  # chaining does
        assert app.execute("SELECT count(*) FROM accounts_user").fetchone() == (0,)


def test_bulwark_works_as_the_application_role(scratch, tmp_path):
    env = _env(scratch, MEDIA_ROOT=str(tmp_path))
    del env["DATABASE_OWNER_URL"]  # the processes that serve never need it
    # The demo data: users, keys, a trained model uploaded and promoted, audit events chained.
    demo = manage("bootstrap_demo", env=env, timeout=300)
    assert demo.returncode == 0, demo.stdout + demo.stderr
    created = manage(
        "create_user", "carol", "--role", "auditor", env=env, input_text=f"{'p' * 16}!x9\n"
    )
    assert created.returncode == 0, created.stdout + created.stderr
    verified = manage("audit_verify", env=env)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert verified.stdout.startswith("OK: ")  # chained as this role, verified as this role
    with scratch.connect(scratch.app) as app:
        assert app.execute("SELECT count(*) FROM audit_auditevent").fetchone()[0] >= 5
        assert app.execute("SELECT count(*) FROM registry_modelversion").fetchone()[0] >= 1


PRODUCTION = {"BULWARK_ENV": "production", "ALLOWED_HOSTS": "bulwark.example.com"}


def test_check_deploy_is_clean_with_two_roles(scratch):
    result = manage("check", "--deploy", "--fail-level", "WARNING", env=_env(scratch, **PRODUCTION))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "bulwark.W10" not in result.stdout + result.stderr


def test_check_deploy_warns_when_the_application_owns_its_tables(scratch):
    env = _env(scratch, **PRODUCTION, DATABASE_URL=scratch.url(scratch.owner))
    del env["DATABASE_OWNER_URL"]
    result = manage("check", "--deploy", env=env)
    output = result.stdout + result.stderr
    assert "bulwark.W101" in output and "owns its tables (" in output
    assert "TRUNCATE" in output


def test_migrate_refuses_one_role_for_both(scratch):
    env = _env(scratch, DATABASE_URL=scratch.url(scratch.owner))
    result = manage("migrate", "--noinput", env=env)
    assert result.returncode != 0
    assert "name the same role: the application would own its tables" in result.stderr


def test_an_owner_url_for_another_database_stops_startup(scratch):
    env = _env(scratch, DATABASE_OWNER_URL=scratch.url(scratch.owner).replace("roles", "other"))
    result = manage("check", env=env)
    assert result.returncode != 0
    assert result.stderr.startswith("Bulwark cannot start:")
    assert "DATABASE_OWNER_URL must name the same PostgreSQL database" in result.stderr


def test_an_owner_that_may_not_create_roles_names_the_missing_one(scratch):
    missing = scratch.app + "_missing"
    with scratch.connect(scratch.admin) as admin:
        admin.execute(sql.SQL("ALTER ROLE {} NOCREATEROLE").format(sql.Identifier(scratch.owner)))
    try:
        result = manage(
            "migrate", "--noinput", env=_env(scratch, DATABASE_URL=scratch.url(missing))
        )
    finally:
        with scratch.connect(scratch.admin) as admin:
            admin.execute(sql.SQL("ALTER ROLE {} CREATEROLE").format(sql.Identifier(scratch.owner)))
    assert result.returncode != 0
    assert f"The application role {missing} does not exist" in result.stderr


def test_the_scram_verifier_is_the_one_postgresql_makes(scratch):
    # PostgreSQL hashes a password itself (random salt); ours, given that salt, must match.
    import base64

    role = scratch.app + "_scram"
    with scratch.connect(scratch.admin) as admin:
        admin.execute("SET password_encryption = 'scram-sha-256'")
        admin.execute(
            sql.SQL("CREATE ROLE {} PASSWORD {}").format(
                sql.Identifier(role), sql.Literal("pencil and paper")
            )
        )
        try:
            (stored,) = admin.execute(
                "SELECT rolpassword FROM pg_authid WHERE rolname = %s", [role]
            ).fetchone()
        finally:
            admin.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))
    salt = base64.b64decode(stored.split("$")[1].split(":")[1])
    assert scram_verifier("pencil and paper", salt=salt) == stored
    assert scram_verifier("pencil and paper") != stored  # a fresh salt each time
