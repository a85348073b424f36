"""The per-process model cache: an LRU bounded by count and bytes, one load for concurrent
first requests, and eviction in every web process as soon as a version stops serving."""

from __future__ import annotations

import http.client
import json
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from django.db import connection

from apps.registry.artifacts.loading import ModelFacts
from apps.registry.servable import InProcessModel
from apps.registry.services import model_version_stage
from apps.serving.model_cache import LoadedModel, ModelCache, models
from tests.apikeys.factories import ApiKeyFactory
from tests.services import database_url_of, web_process
from tests.serving.conftest import ROW, add_version, post


def loaded(size: int) -> InProcessModel:
    return InProcessModel(
        object(), facts=ModelFacts(feature_names=None, classifier=False), size=size
    )


def test_an_evicted_model_is_closed_and_an_expired_one_is_replaced():
    cache = ModelCache(max_models=1, max_bytes=10**9)
    a, b = uuid.uuid4(), uuid.uuid4()
    first = cache.get(a, lambda: loaded(1))
    cache.get(b, lambda: loaded(1))
    assert first.estimator is None  # closed: a runner behind it would have stopped
    current = cache.get(b, lambda: pytest.fail("b is cached"))
    current.expired = True  # its runner died, or is near its CPU limit
    replacement = cache.get(b, lambda: loaded(1))
    assert replacement is not current and current.estimator is None


def test_lru_is_bounded_by_count():
    cache = ModelCache(max_models=2, max_bytes=10**9)
    a, b, c = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    cache.get(a, lambda: loaded(1))
    cache.get(b, lambda: loaded(1))
    cache.get(a, lambda: pytest.fail("a is cached"))  # a is now the most recent
    cache.get(c, lambda: loaded(1))
    assert set(cache.keys()) == {a, c}


def test_lru_is_bounded_by_bytes_but_keeps_one_oversized_model():
    cache = ModelCache(max_models=10, max_bytes=100)
    a, b, c = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    cache.get(a, lambda: loaded(60))
    cache.get(b, lambda: loaded(30))
    cache.get(c, lambda: loaded(50))
    assert cache.keys() == [b, c]
    big = uuid.uuid4()
    cache.get(big, lambda: loaded(500))
    assert cache.keys() == [big]


def test_concurrent_first_requests_load_once():
    cache = ModelCache(max_models=2, max_bytes=10**9)
    key = uuid.uuid4()
    calls = []

    def slow_load() -> LoadedModel:
        calls.append(threading.get_ident())
        time.sleep(0.2)
        return loaded(1)

    with ThreadPoolExecutor(max_workers=16) as pool:
        results = list(pool.map(lambda _: cache.get(key, slow_load), range(16)))
    assert len(calls) == 1 and cache.loads == 1
    assert all(result is results[0] for result in results)


def test_a_failed_load_is_not_cached_and_is_tried_again():
    cache = ModelCache(max_models=2, max_bytes=10**9)
    key = uuid.uuid4()

    def failing() -> LoadedModel:
        raise RuntimeError("refused")

    with pytest.raises(RuntimeError):
        cache.get(key, failing)
    assert cache.keys() == [] and cache.get(key, lambda: loaded(1)).size == 1


@pytest.mark.django_db(transaction=True)
def test_concurrent_first_predicts_decrypt_the_model_once(live_server, actors, pricing):
    _, key = ApiKeyFactory.issue(owner=actors["ml_engineer"], rate_limit="1000/m")
    host, port = live_server.url.removeprefix("http://").split(":")

    def call(_: int) -> int:
        client = http.client.HTTPConnection(host, int(port), timeout=60)
        client.request(
            "POST", "/api/v1/models/pricing/predict", json.dumps({"inputs": [ROW]}),
            {"Content-Type": "application/json", "X-API-Key": key},
        )  # fmt: skip
        return client.getresponse().status

    # Few enough at once for the live server's listen backlog (5), enough to race the load.
    with ThreadPoolExecutor(max_workers=4) as pool:
        assert set(pool.map(call, range(8))) == {200}
    assert models.loads == 1


@pytest.mark.django_db
def test_archiving_evicts_the_model_in_this_process(client, actors, pricing):
    _, key = ApiKeyFactory.issue(owner=actors["ml_engineer"])
    assert post(client, {"inputs": [ROW]}, HTTP_X_API_KEY=key).status_code == 200
    assert models.keys() == [pricing.pk]
    model_version_stage(actor=actors["ml_engineer"], version=pricing, stage="archived")
    assert post(client, {"inputs": [ROW]}, HTTP_X_API_KEY=key).status_code == 404
    assert models.keys() == []


@pytest.mark.django_db(transaction=True)
def test_a_stage_change_reaches_every_web_process_on_its_next_request(
    actors, pricing, media_root: Path, tmp_path: Path
):
    _, key = ApiKeyFactory.issue(owner=actors["ml_engineer"], rate_limit="1000/m")
    env = {
        "DATABASE_URL": database_url_of(connection.settings_dict),
        "MEDIA_ROOT": str(media_root),
    }

    def call(port: int) -> tuple[int, int | None]:
        client = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        client.request(
            "POST", "/api/v1/models/pricing/predict", json.dumps({"inputs": [ROW]}),
            {"Content-Type": "application/json", "X-API-Key": key},
        )  # fmt: skip
        response = client.getresponse()
        body = json.loads(response.read())
        return response.status, body.get("version")

    with (
        web_process(env, tmp_path / "web1.log") as first,
        web_process(env, tmp_path / "web2.log") as second,
    ):
        assert (call(first), call(second)) == ((200, 1), (200, 1))  # each has v1 loaded
        model_version_stage(actor=actors["ml_engineer"], version=pricing, stage="archived")
        assert (call(first)[0], call(second)[0]) == (404, 404)
        v2 = add_version(actors["ml_engineer"], pricing.model)
        model_version_stage(actor=actors["ml_engineer"], version=v2, stage="production")
        # The next request of each process serves the new production version.
        assert (call(first), call(second)) == ((200, 2), (200, 2))
