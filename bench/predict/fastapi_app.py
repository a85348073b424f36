"""Baseline (d): the common tutorial design. FastAPI, an `X-API-Key` header compared with a
constant, an in-memory per-IP fixed-window limiter (per process: two workers, two limiters),
pydantic models for the rows; served by uvicorn with 2 workers (bench.predict.run starts it).

    BENCH_PREDICT_MODEL=model.joblib BENCH_FASTAPI_KEY=... \\
    .venv/bin/uvicorn bench.predict.fastapi_app:app --workers 2 --no-access-log

With BENCH_GC_FREEZE=true (the bench's default) each worker calls gc.freeze() once the model is
loaded, as controlplane/gunicorn.conf.py does for Bulwark's workers; its collector pauses are
reported in the log at shutdown (bench.predict.gcstats).
"""

from __future__ import annotations

import gc
import os
import secrets
import time
from contextlib import asynccontextmanager
from typing import Annotated

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.security import APIKeyHeader
from pydantic import BaseModel, Field

from bench.predict import gcstats
from bench.predict.model import FEATURES, served_model

API_KEY = os.environ["BENCH_FASTAPI_KEY"]
RATE_LIMIT = 1_000_000  # per IP and minute: counted on every request, never reached
WINDOW = 60
_windows: dict[str, tuple[int, int]] = {}


@asynccontextmanager
async def lifespan(app: FastAPI):  # type: ignore[no-untyped-def]
    served_model()
    if os.environ.get("BENCH_GC_FREEZE", "true") == "true":
        gc.freeze()
    gcstats.install()
    yield
    gcstats.report()


app = FastAPI(lifespan=lifespan)
api_key_header = APIKeyHeader(name="X-API-Key")


class Row(BaseModel):
    price: float
    demand: float
    inventory: float


class PredictIn(BaseModel):
    inputs: list[Row] = Field(min_length=1, max_length=100)


class PredictOut(BaseModel):
    model: str
    predictions: list[float]


def check_key(key: Annotated[str, Depends(api_key_header)]) -> str:
    if not secrets.compare_digest(key, API_KEY):
        raise HTTPException(status_code=401, detail="Invalid API key")
    return key


def limit_ip(request: Request) -> None:
    ip = request.client.host if request.client else "unknown"
    window = int(time.time()) // WINDOW
    start, count = _windows.get(ip, (window, 0))
    if start != window:
        start, count = window, 0
    if count >= RATE_LIMIT:
        raise HTTPException(status_code=429, detail="Too many requests")
    _windows[ip] = (start, count + 1)


@app.post("/predict", dependencies=[Depends(check_key), Depends(limit_ip)])
async def predict(payload: PredictIn) -> PredictOut:
    features = [[getattr(row, name) for name in FEATURES] for row in payload.inputs]
    predictions = served_model().predict(features).tolist()
    return PredictOut(model="pricing", predictions=predictions)
