"""Models never share a process with the platform's secrets: unpickling and predict run in
model runners started with an empty environment, locked in by Landlock and seccomp, and a
runner that dies, hangs or answers garbage is replaced with a 503 and an audit event."""

from __future__ import annotations

import io
import json
import os
import signal
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import joblib
import pytest
from django.conf import settings as django_settings

from apps.core.secrets.required import REQUIRED_SECRETS
from apps.registry.isolation.client import zygote
from apps.serving.model_cache import models
from tests.serving import odd_models
from tests.serving.conftest import PREDICT, ROW, add_version, assert_error, bearer, post

ROOT = Path(django_settings.BASE_DIR)


def odd_version(actors: dict[str, Any], model: Any, kind: str) -> int:
    buffer = io.BytesIO()
    joblib.dump(getattr(odd_models, kind)(), buffer)
    version = add_version(actors["ml_engineer"], model, content=buffer.getvalue())
    return version.number


def servables() -> list[Any]:
    return list(models._models.values())


def platform_secrets() -> dict[str, str]:
    """Every secret this (web) process holds, by name: none may reach a runner."""
    values = {spec.name: os.environ[spec.name] for spec in REQUIRED_SECRETS}
    values["DATABASE_URL"] = os.environ["DATABASE_URL"]
    values["REDIS_URL"] = os.environ["REDIS_URL"]
    values["SECRET_KEY"] = django_settings.SECRET_KEY
    return {name: value for name, value in values.items() if value}


@pytest.fixture
def canary() -> Any:
    """A secret in a file under the project, as a deployment's .env would hold one."""
    path = ROOT / "var" / "runner-canary.txt"
    path.parent.mkdir(exist_ok=True)
    path.write_text("CANARY-" + os.urandom(16).hex())
    path.chmod(0o600)
    yield path.read_text()
    path.unlink()


@pytest.mark.django_db
def test_a_model_hunting_for_secrets_finds_none_of_them(client, actors, pricing, canary):
    number = odd_version(actors, pricing.model, "SecretsHunter")

    response = post(
        client,
        {"inputs": [ROW]},
        path=f"{PREDICT}?version={number}",
        **bearer(actors["ml_engineer"]),
    )

    assert response.status_code == 200, response.content
    [answer] = response.json()["predictions"]
    found = json.loads(answer)["found"]
    everything = json.dumps(found)
    for name, value in {**platform_secrets(), "canary": canary}.items():
        assert value not in everything, f"the runner reached {name}"
    # What it saw: an environment with no secret, a directory of its own, no settings.
    # scikit-learn's import sets KMP_DUPLICATE_LIB_OK and KMP_INIT_AT_FORK itself.
    assert {name for name in found["environ"] if not name.startswith("KMP_")} <= {
        "PATH",
        "LANG",
        "OMP_NUM_THREADS",
        "OPENBLAS_NUM_THREADS",
        "MKL_NUM_THREADS",
        "JOBLIB_MULTIPROCESSING",
        "PYTHONHASHSEED",
        "LC_CTYPE",
        "DJANGO_SETTINGS_MODULE",  # set by the model itself, to try
    }
    assert found["modules"] == []
    runner_dirs = os.path.join(tempfile.gettempdir(), "bulwark-runner-")
    assert found["cwd"].startswith(runner_dirs) and found["cwd"] != os.getcwd()
    for attempt in (
        "proc_self_environ",
        "proc_parent_environ",
        "proc_grandparent_status",
        "dotenv",
        "canary",
        "settings_file",
        "django_settings",
        "postgres_tcp",
        "redis_tcp",
        "postgres_unix",
        "fork",
        "write",
        "kill_parent",
    ):
        assert str(found[attempt]).startswith("refused"), (attempt, found[attempt])
    assert found["project_files"] == {}  # not one file of the project can be listed or read
    assert found["system"] != 0  # os.system cannot start a shell (exec is refused)
    assert not list(Path(found["cwd"]).glob("dropped.txt"))


@pytest.mark.django_db
def test_a_runner_killed_mid_call_is_a_503_with_an_event_and_the_next_call_succeeds(
    client, actors, pricing, settings
):
    number = odd_version(actors, pricing.model, "SlowModel")
    path = f"{PREDICT}?version={number}"
    slow_row = {**ROW, "inventory": 3000}  # sleeps three seconds
    quick_row = {**ROW, "inventory": 0}
    assert post(client, {"inputs": [quick_row]}, path=path, **bearer(
        actors["ml_engineer"])).status_code == 200  # fmt: skip
    [served] = servables()
    pid = served.runner.pid

    killer = threading.Timer(0.5, os.kill, args=(pid, signal.SIGKILL))
    killer.start()
    response = post(client, {"inputs": [slow_row]}, path=path, **bearer(actors["ml_engineer"]))
    killer.join()

    error = assert_error(response, 503, "service_unavailable")
    assert "runner" in error["message"] and response["Retry-After"]
    from tests.serving.conftest import audit_events

    [event] = audit_events("model.runner.failed")
    assert event["details"] == {"reason": "the runner died"}
    assert event["target"] == {"type": "model_version", "id": f"pricing:{number}"}
    again = post(client, {"inputs": [quick_row]}, path=path, **bearer(
        actors["ml_engineer"]))  # fmt: skip
    assert again.status_code == 200, again.content
    [replacement] = servables()
    assert replacement.runner.pid != pid


@pytest.mark.django_db
def test_a_runner_that_hangs_past_its_deadline_is_stopped(client, actors, pricing, settings):
    settings.MODEL_RUNNER_TIMEOUT = 0.5
    number = odd_version(actors, pricing.model, "SlowModel")
    started = time.monotonic()

    response = post(
        client,
        {"inputs": [{**ROW, "inventory": 30000}]},
        path=f"{PREDICT}?version={number}",
        **bearer(actors["ml_engineer"]),
    )

    assert time.monotonic() - started < 10
    assert_error(response, 503, "service_unavailable")
    from tests.serving.conftest import audit_events

    [event] = audit_events("model.runner.failed")
    assert event["details"]["reason"] == "no answer within 0.5 s"
    assert all(servable.expired for servable in servables())


@pytest.mark.django_db
@pytest.mark.parametrize("kind", ["WrongLengthModel", "MemoryHog"])
def test_garbage_or_a_crash_inside_the_model_is_a_503_never_a_500(client, actors, pricing, kind):
    number = odd_version(actors, pricing.model, kind)

    response = post(
        client, {"inputs": [ROW]}, path=f"{PREDICT}?version={number}", **bearer(actors["admin"])
    )

    assert_error(response, 503, "service_unavailable")
    [event] = [e for e in _events() if e["action"] == "predict.rejected"]
    assert event["details"]["code"] == "service_unavailable"
    failures = [e["details"]["reason"] for e in _events() if e["action"] == "model.runner.failed"]
    if kind == "WrongLengthModel":  # a runner that breaks the protocol is stopped and replaced
        assert failures == ["the runner broke the protocol (outputs for other rows)"]
        assert all(servable.expired for servable in servables())
    else:  # the model's own failure (MemoryError under the runner's limit): the runner lives on
        assert failures == []


def _events() -> list[dict[str, Any]]:
    from tests.serving.conftest import audit_events

    return audit_events()


@pytest.mark.django_db
def test_the_runner_reports_its_sandbox(pricing, client, actors):
    assert post(client, {"inputs": [ROW]}, **bearer(actors["admin"])).status_code == 200
    report = zygote.report
    assert report["ready"] is True and report["landlock_abi"] >= 1
    assert report["pid"] != os.getpid()
