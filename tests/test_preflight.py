"""The test command stops at once with one sentence when PostgreSQL or Redis is missing."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.preflight import postgres_problem, redis_problem
from tests.services import free_port

ROOT = Path(__file__).resolve().parents[1]


def test_unreachable_postgres_is_named_with_how_to_start_it():
    port = free_port()
    problem = postgres_problem(f"postgres://postgres@127.0.0.1:{port}/bulwark")
    assert problem.startswith(f"PostgreSQL is not reachable at 127.0.0.1:{port}")
    assert "pg_ctlcluster" in problem


def test_unreachable_redis_is_named_with_how_to_start_it():
    port = free_port()
    problem = redis_problem(f"redis://127.0.0.1:{port}/1")
    assert problem.startswith(f"Redis is not reachable at 127.0.0.1:{port}")
    assert "redis-server" in problem


def test_reachable_services_are_no_problem():
    assert redis_problem(os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/1")) is None
    assert postgres_problem("postgres://postgres@127.0.0.1:5432/bulwark") is None


def test_the_suite_stops_at_once_when_a_service_is_missing():
    env = {
        **os.environ,
        "DATABASE_URL": "postgres://postgres@127.0.0.1:5432/bulwark",
        "REDIS_URL": f"redis://127.0.0.1:{free_port()}/1",
    }
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "tests/test_preflight.py"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 3
    output = result.stdout + result.stderr
    assert "Redis is not reachable" in output
    assert "Traceback" not in output
    assert "passed" not in output
