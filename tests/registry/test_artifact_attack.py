"""The attack of issue 12, as tests: a working model whose pickle also calls a Python global
with a side effect. Refused at upload with the globals named; and the same bytes put in
storage by an insider with the master key run nothing at load, in the watermark job or on
predict (a staging version asked for with ?version= included), in a runner or in-process."""

from __future__ import annotations

import io
import json
import os
import pickle
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pytest
from django.core.files.storage import default_storage
from sklearn.linear_model import LinearRegression

from apps.registry.envelope import encrypt_artifact, master_keys_from_secrets
from apps.registry.errors import ArtifactRefused
from apps.registry.models import ModelVersion, WatermarkResult
from apps.registry.version_loading import model_version_load
from apps.registry.watermarks import watermark_seal, watermark_verify
from apps.serving.catalog import catalog
from apps.serving.model_cache import models
from tests.registry.conftest import (
    SCHEMA,
    assert_error,
    audit_events,
    make_model,
    stored_files,
    upload,
)


class OpensAFile:
    """Unpickling this calls open(path, "w"): the file appears if it ever runs."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self) -> Any:
        return (open, (self.path, "w"))


class RunsAShellCommand:
    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self) -> Any:
        return (os.system, (f"touch {self.path}",))


def working_model() -> LinearRegression:
    rng = np.random.default_rng(5)
    inputs = rng.normal(size=(40, 2))
    return LinearRegression().fit(inputs, inputs @ np.array([2.0, -1.0]) + 0.5)


def attack_bytes(payload: object, *, protocol: int | None = None) -> bytes:
    model = working_model()
    model.extra = payload  # rides along with a model that predicts as it should
    buffer = io.BytesIO()
    joblib.dump(model, buffer, protocol=protocol)
    return buffer.getvalue()


def builtins_open_bytes(marker: Path) -> bytes:
    """The same attack spelled `builtins.open` by hand (pickle itself writes `io.open`)."""
    model = pickle.dumps(working_model(), protocol=2)
    call = (
        b"cbuiltins\nopen\n"
        + pickle.dumps((str(marker), "w"), protocol=2)[2:-1]  # the argument tuple
        + b"R"
    )
    # SETITEM("extra", open(...)) on the model's state dict is not needed: a pickle runs its
    # calls in order, so a call before the model is enough. Stack: result, then the model.
    return b"\x80\x02" + call + b"0" + model[2:]


CASES = {
    "io.open": lambda marker, protocol: attack_bytes(OpensAFile(marker), protocol=protocol),
    "posix.system": lambda marker, protocol: attack_bytes(
        RunsAShellCommand(marker), protocol=protocol
    ),
    "builtins.open": lambda marker, protocol: builtins_open_bytes(marker),
}


@pytest.fixture
def marker(tmp_path: Path) -> Path:
    return tmp_path / "the-attack-ran"


@pytest.mark.django_db
@pytest.mark.parametrize("protocol", [0, 2, 4, 5])
@pytest.mark.parametrize("name", sorted(CASES))
def test_a_model_that_calls_a_global_is_refused_at_upload_with_the_global_named(
    api_client, actors, media_root, marker, name, protocol
):
    make_model(actors["ml_engineer"])
    api_client.force_authenticate(actors["ml_engineer"])

    response = upload(api_client, "pricing", CASES[name](marker, protocol))

    error = assert_error(response, 400, "invalid_input")
    assert name in error["message"]
    assert {"path": "artifact", "message": f"untrusted global: {name}"} in error["details"]
    assert not marker.exists()
    assert not ModelVersion.objects.exists() and stored_files(media_root) == []
    [event] = audit_events("model.version.rejected")
    assert event["outcome"] == "denied" and event["target"] == {"type": "model", "id": "pricing"}
    assert event["details"]["reason"] == "untrusted globals"
    assert event["details"]["globals"] == [name]


def insider_version(model: Any, content: bytes, *, recorded: list[str]) -> ModelVersion:
    """What a holder of the master key with write access to storage and the table could do:
    encrypt the bytes properly and write the row, naming whatever globals they like."""
    number = 1
    encrypted = encrypt_artifact(
        io.BytesIO(content),
        model=model.name,
        version=number,
        master_keys=master_keys_from_secrets(),
    )
    name = default_storage.save(
        "artifacts/insider.bwae", io.BytesIO(b"".join(encrypted.ciphertext))
    )
    return ModelVersion.objects.create(
        model=model,
        number=number,
        size=encrypted.size,
        sha256=encrypted.sha256,
        input_schema=SCHEMA,
        feature_order=["rooms", "area"],
        wrapped_data_key=encrypted.wrapped_key,
        master_key_id=encrypted.master_key_id,
        artifact=name,
        allowed_globals=recorded,
        watermark_sealed=watermark_seal(
            {"inputs": [{"rooms": 1.0, "area": 1.0}], "labels": [1.5], "threshold": 0.5}
        ),
    )


@pytest.mark.django_db
@pytest.mark.parametrize("isolation", ["process", "inprocess"])
@pytest.mark.parametrize("name", sorted(CASES))
def test_the_same_bytes_written_by_an_insider_run_nothing_anywhere(
    client, actors, media_root, marker, settings, name, isolation
):
    settings.MODEL_ISOLATION = isolation
    model = make_model(actors["ml_engineer"])
    content = CASES[name](marker, 4)
    from apps.registry.artifacts.pickle_scan import joblib_globals

    recorded = sorted(joblib_globals(content, limit=1 << 30))  # the attack's own names too
    assert name in recorded
    version = insider_version(model, content, recorded=recorded)

    # 1. A verified load (as the web and worker processes do).
    with pytest.raises(ArtifactRefused) as refused:
        model_version_load(version=version)
    assert refused.value.status_code == 503
    assert not marker.exists()

    # 2. The watermark job.
    result = WatermarkResult.objects.create(version=version)
    result = watermark_verify(result_id=result.id)
    assert result.status == "failed" and result.reason.startswith("artifact refused")
    assert not marker.exists()

    # 3. Predict on the staging version, asked for by number: no promotion needed.
    models.clear()
    catalog.sync(object())
    from tests.serving.conftest import bearer

    response = client.post(
        "/api/v1/models/pricing/predict?version=1",
        json.dumps({"inputs": [{"rooms": 1.0, "area": 1.0}]}),
        content_type="application/json",
        **bearer(actors["ml_engineer"]),
    )
    assert_error(response, 503, "service_unavailable")
    assert "artifact" in response.json()["error"]["message"]
    assert not marker.exists()
    reasons = [event["details"]["reason"] for event in audit_events("model.version.rejected")]
    assert reasons == ["untrusted types"] * 3
