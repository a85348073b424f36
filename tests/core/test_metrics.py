"""/metrics (docs/metrics.md): what predict, refusals, the model cache and Celery record, read back
through the Prometheus text parser; who may scrape; bounded labels; and gunicorn's workers
added up in multiprocess mode."""

from __future__ import annotations

import http.client
import ipaddress
import json
import os
import re
import tempfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from celery import shared_task
from django.db import connection
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families

from apps.core.secrets import get_optional_secret
from apps.core.tasks import ping_task
from tests.apikeys.factories import ApiKeyFactory
from tests.services import database_url_of, web_process
from tests.serving.conftest import (  # noqa: F401  # fixtures
    ROW,
    _fresh_process_state,
    assert_error,
    bearer,
    media_root,
    post,
    pricing,
)

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]
ALLOWED_LABELS = {"model", "version", "code", "event", "task", "severity", "le"}
TOKEN = "metrics-" + "Zq8xV3kLm2Np7Rt4Wy9Bc6Hd1Jf5Gs0A"


def parse(text: str) -> Samples:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def scrape(client: Any, **extra: Any) -> Samples:
    response = client.get("/metrics", **extra)
    assert response.status_code == 200, response.content
    assert response["Cache-Control"] == "no-store"
    assert response["Content-Type"].startswith("text/plain; version=")
    return parse(response.content.decode())


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def _page(response: Any) -> str:
    """The page without what differs per request (its id, the CSP nonce)."""
    text = response.content.decode().replace(response["X-Request-ID"], "ID")
    return re.sub(r'nonce="[^"]*"', 'nonce=""', text)


@pytest.fixture
def metrics_token() -> Iterator[str]:
    """METRICS_TOKEN set in the environment the secrets provider reads (and forgotten after)."""
    os.environ["METRICS_TOKEN"] = TOKEN
    assert get_optional_secret("METRICS_TOKEN", fresh=True) == TOKEN
    yield TOKEN
    del os.environ["METRICS_TOKEN"]
    assert get_optional_secret("METRICS_TOKEN", fresh=True) is None


@pytest.mark.django_db
def test_predict_success_and_refusals_move_their_counters(client, actors, pricing):  # noqa: F811
    _, key = ApiKeyFactory.issue(owner=actors["ml_engineer"])
    before = scrape(client)
    assert post(client, {"inputs": [ROW]}, HTTP_X_API_KEY=key).status_code == 200
    assert post(client, {"inputs": [ROW]}, HTTP_X_API_KEY=key).status_code == 200
    refused = post(client, {"inputs": [{**ROW, "price": "cheap"}]}, HTTP_X_API_KEY=key)
    assert_error(refused, 400, "invalid_input")
    after = scrape(client)

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    ok = {"model": "pricing", "version": "1", "code": "ok"}
    bad = {**ok, "code": "invalid_input"}
    assert moved("bulwark_predict_total", **ok) == 2
    assert moved("bulwark_predict_seconds_count", **ok) == 2
    assert moved("bulwark_predict_seconds_sum", **ok) > 0
    assert moved("bulwark_predict_seconds_bucket", **ok, le="+Inf") == 2
    assert moved("bulwark_predict_total", **bad) == 1
    assert moved("bulwark_refusals_total", code="invalid_input") == 1
    assert moved("bulwark_model_cache_total", event="load") == 1
    assert moved("bulwark_model_cache_total", event="hit") == 1


@pytest.mark.django_db
def test_rate_limit_refusals_are_counted_by_code(client, actors, pricing):  # noqa: F811
    _, key = ApiKeyFactory.issue(owner=actors["ml_engineer"], rate_limit="1/m")
    before = scrape(client)
    assert post(client, {"inputs": [ROW]}, HTTP_X_API_KEY=key).status_code == 200
    assert_error(post(client, {"inputs": [ROW]}, HTTP_X_API_KEY=key), 429, "rate_limited")
    after = scrape(client)
    code = {"code": "rate_limited"}
    assert (
        value(after, "bulwark_refusals_total", **code)
        - value(before, "bulwark_refusals_total", **code)
        == 1
    )
    # Refused before the model was resolved: no model or version label value.
    labels = {"model": "unknown", "version": "unknown", "code": "rate_limited"}
    assert (
        value(after, "bulwark_predict_total", **labels)
        - value(before, "bulwark_predict_total", **labels)
        == 1
    )


@pytest.mark.django_db
def test_an_unknown_model_name_adds_no_label_value(client, actors, pricing):  # noqa: F811
    name = "no-such-model-q7"
    response = post(
        client, {"inputs": [ROW]}, path=f"/api/v1/models/{name}/predict", **bearer(actors["admin"])
    )
    assert response.status_code in {403, 404}
    text = client.get("/metrics").content.decode()
    assert name not in text
    samples = parse(text)
    code = json.loads(response.content)["error"]["code"]
    labels = {"model": "unknown", "version": "unknown", "code": code}
    assert value(samples, "bulwark_predict_total", **labels) >= 1


@pytest.mark.django_db
def test_no_user_key_or_address_in_any_label(client, actors, pricing):  # noqa: F811
    public_id, key = ApiKeyFactory.issue(owner=actors["ml_engineer"])
    post(client, {"inputs": [ROW]}, HTTP_X_API_KEY=key)
    post(client, {"inputs": [ROW]}, HTTP_X_API_KEY="bwk_guess_x")
    post(client, {"inputs": [ROW]}, **bearer(actors["ml_engineer"]))
    ping_task.delay("x")
    samples = scrape(client)
    forbidden = {
        "127.0.0.1",
        str(actors["ml_engineer"].pk),
        actors["ml_engineer"].username,
        str(public_id),
        key,
    }
    for name, labels in samples:
        assert {label for label, _ in labels} <= ALLOWED_LABELS, (name, labels)
        for _, label_value in labels:
            assert label_value not in forbidden, (name, labels)
            with pytest.raises(ValueError):
                ipaddress.ip_address(label_value)  # no address of any kind


def test_scraping_from_elsewhere_or_with_a_wrong_token_is_a_plain_404(client, metrics_token):
    outside = {"REMOTE_ADDR": "203.0.113.9"}
    nowhere = client.get("/no-such-page", **outside)
    assert nowhere.status_code == 404
    assert client.get("/metrics", **outside).status_code == 404
    wrong = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}x", **outside)
    assert wrong.status_code == 404
    # The project's own 404 page, as for a path that does not exist.
    assert _page(wrong) == _page(nowhere).replace("/no-such-page", "/metrics")
    assert client.get("/metrics", HTTP_AUTHORIZATION=TOKEN, **outside).status_code == 404
    scrape(client, HTTP_AUTHORIZATION=f"Bearer {metrics_token}", **outside)
    # A forged X-Forwarded-For from an untrusted peer changes nothing.
    forged = client.get("/metrics", HTTP_X_FORWARDED_FOR="127.0.0.1", **outside)
    assert forged.status_code == 404


def test_without_a_configured_token_no_bearer_is_accepted(client):
    assert get_optional_secret("METRICS_TOKEN", fresh=True) is None
    response = client.get("/metrics", HTTP_AUTHORIZATION="Bearer ", REMOTE_ADDR="203.0.113.9")
    assert response.status_code == 404


def test_the_allowed_networks_come_from_the_setting(client, settings):
    settings.METRICS_ALLOWED_NETWORKS = ()
    assert client.get("/metrics").status_code == 404
    settings.METRICS_ALLOWED_NETWORKS = (ipaddress.ip_network("203.0.113.0/24"),)
    scrape(client, REMOTE_ADDR="203.0.113.9")


@pytest.mark.django_db
def test_metrics_disabled_is_a_404(client, settings, metrics_token):
    settings.METRICS_ENABLED = False
    assert client.get("/metrics").status_code == 404
    assert client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {metrics_token}").status_code == 404


@shared_task(name="tests.metrics.fails")
def _failing_task() -> None:
    raise RuntimeError("this task fails on purpose")


@pytest.mark.django_db
def test_celery_runs_and_failures_are_counted_by_task(client):
    before = scrape(client)
    ping_task.delay("hello")
    # As a worker runs it: the failure recorded, not raised into the caller.
    assert _failing_task.apply(throw=False).failed()
    after = scrape(client)

    def moved(name: str, task: str) -> float:
        return value(after, name, task=task) - value(before, name, task=task)

    assert moved("bulwark_celery_task_runs_total", "core.ping") == 1
    assert moved("bulwark_celery_task_failures_total", "core.ping") == 0
    assert moved("bulwark_celery_task_runs_total", "tests.metrics.fails") == 1
    assert moved("bulwark_celery_task_failures_total", "tests.metrics.fails") == 1


@pytest.mark.django_db
def test_audit_backlog_and_open_incidents_are_read_at_scrape_time(client, actors, pricing):  # noqa: F811
    samples = scrape(client)
    assert ("bulwark_audit_pending_events", frozenset()) in samples
    assert value(samples, "bulwark_audit_pending_events") >= 1  # the registration's events
    for severity in ("sev1", "sev2", "sev3", "sev4"):
        assert ("bulwark_incidents_open", frozenset({("severity", severity)})) in samples


@pytest.mark.django_db(transaction=True)
def test_two_gunicorn_workers_add_up(actors, pricing, media_root: Path, tmp_path: Path):  # noqa: F811
    _, key = ApiKeyFactory.issue(owner=actors["ml_engineer"], rate_limit="1000/h")
    directory = tmp_path / "prometheus"
    directory.mkdir(mode=0o700)
    env = {
        "DATABASE_URL": database_url_of(connection.settings_dict),
        "MEDIA_ROOT": str(media_root),
        "PROMETHEUS_MULTIPROC_DIR": str(directory),
    }
    body = json.dumps({"inputs": [ROW]})
    calls = 40

    def call(_: int) -> int:
        client = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        try:
            client.request(
                "POST", "/api/v1/models/pricing/predict", body,
                {"Content-Type": "application/json", "X-API-Key": key},
            )  # fmt: skip
            return client.getresponse().status
        finally:
            client.close()

    with web_process(env, tmp_path / "web.log", workers=2, production_config=True) as port:
        with ThreadPoolExecutor(max_workers=8) as pool:
            statuses = list(pool.map(call, range(calls)))
        scraper = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        scraper.request("GET", "/metrics")
        response = scraper.getresponse()
        assert response.status == 200
        text = response.read().decode()
        scraper.close()
    assert statuses == [200] * calls

    samples = parse(text)
    ok = {"model": "pricing", "version": "1", "code": "ok"}
    assert value(samples, "bulwark_predict_total", **ok) == calls
    assert value(samples, "bulwark_predict_seconds_count", **ok) == calls
    # Each worker wrote its own share; the scrape (answered by one of them) added them up.
    per_worker = {}
    for path in directory.glob("counter_*.db"):
        per_worker[path.name] = sum(
            sample.value
            for metric in MultiProcessCollector.merge([str(path)])
            for sample in metric.samples
            if sample.name == "bulwark_predict_total" and dict(sample.labels) == ok
        )
    served = [count for count in per_worker.values() if count > 0]
    assert len(served) == 2, per_worker
    assert sum(served) == calls


@pytest.mark.django_db(transaction=True)
def test_gunicorn_makes_a_private_directory_and_removes_it(
    actors,
    pricing,  # noqa: F811
    media_root: Path,  # noqa: F811
    tmp_path: Path,
):
    _, key = ApiKeyFactory.issue(owner=actors["ml_engineer"], rate_limit="1000/h")
    assert "PROMETHEUS_MULTIPROC_DIR" not in os.environ
    temp = Path(tempfile.gettempdir())
    before = set(temp.glob("bulwark-metrics-*"))
    env = {"DATABASE_URL": database_url_of(connection.settings_dict), "MEDIA_ROOT": str(media_root)}
    body = json.dumps({"inputs": [ROW]})
    with web_process(env, tmp_path / "web.log", workers=2, production_config=True) as port:
        made = set(temp.glob("bulwark-metrics-*")) - before
        assert len(made) == 1
        directory = made.pop()
        assert directory.stat().st_mode & 0o777 == 0o700
        for _ in range(6):
            client = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            client.request(
                "POST", "/api/v1/models/pricing/predict", body,
                {"Content-Type": "application/json", "X-API-Key": key},
            )  # fmt: skip
            assert client.getresponse().status == 200
            client.close()
        scraper = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        scraper.request("GET", "/metrics")
        samples = parse(scraper.getresponse().read().decode())
        scraper.close()
    ok = {"model": "pricing", "version": "1", "code": "ok"}
    assert value(samples, "bulwark_predict_total", **ok) == 6
    assert not directory.exists()


@pytest.mark.django_db
def test_the_docs_and_the_dashboard_name_only_metrics_that_exist(client, actors, pricing):  # noqa: F811
    _, key = ApiKeyFactory.issue(owner=actors["ml_engineer"])
    assert post(client, {"inputs": [ROW]}, HTTP_X_API_KEY=key).status_code == 200
    ping_task.delay("x")
    text = client.get("/metrics").content.decode()
    docs = Path(__file__).resolve().parents[2] / "docs"
    dashboard = (docs / "grafana" / "bulwark.json").read_text(encoding="utf-8")
    json.loads(dashboard)
    table = (docs / "metrics.md").read_text(encoding="utf-8")
    named = set(re.findall(r"bulwark_[a-z_]+", dashboard + table))
    assert {"bulwark_predict_seconds_bucket", "bulwark_incidents_open"} <= named
    # Absent until the first signed checkpoint, as docs/metrics.md says.
    named.discard("bulwark_audit_checkpoint_age_seconds")
    assert [name for name in sorted(named) if name not in text] == []
