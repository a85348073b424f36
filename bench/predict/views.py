"""Baselines (b) and (c) of bench.predict, served by the same gunicorn workers as Bulwark.

- BarePredictApi (b): a DRF view with no checks at all: DRF's plain JSON parser, the rows
  turned into the feature array, `predict`, a JSON answer. What the server, the middleware
  and DRF cost with no security work.
- NaivePredictApi (c): the build most tutorials lead to: simplejwt's stock JWTAuthentication
  (a user query per request), the `django_ratelimit` decorator with its defaults (the default
  cache: the project's Redis) keyed per user, and an ORM audit insert per request
  (`NaiveAuditLog.objects.create`, autocommit: one INSERT into a bench table).

Both answer with `X-Bench-Worker: <pid>`, so the bench can see how load spreads over workers.
"""

from __future__ import annotations

import os

from django.utils.decorators import method_decorator
from django_ratelimit.decorators import ratelimit
from rest_framework.parsers import JSONParser
from rest_framework.permissions import AllowAny, IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView
from rest_framework_simplejwt.authentication import JWTAuthentication

from bench.predict.model import feature_array, served_model
from bench.predict.models import NaiveAuditLog

# A tutorial's "100/m" would stop the bench at once; the cost of counting is the same.
NAIVE_RATE = "1000000/m"
WORKER = str(os.getpid())


def _answer(inputs: list[dict[str, float]]) -> Response:
    predictions = served_model().predict(feature_array(inputs)).tolist()
    response = Response({"model": "pricing", "predictions": predictions})
    response["X-Bench-Worker"] = WORKER
    return response


class BarePredictApi(APIView):
    authentication_classes: list[type] = []
    permission_classes = [AllowAny]
    parser_classes = [JSONParser]

    def post(self, request: Request) -> Response:
        return _answer(request.data["inputs"])


@method_decorator(ratelimit(key="user_or_ip", rate=NAIVE_RATE), name="post")
class NaivePredictApi(APIView):
    authentication_classes = [JWTAuthentication]
    permission_classes = [IsAuthenticated]
    parser_classes = [JSONParser]

    def post(self, request: Request) -> Response:
        inputs = request.data["inputs"]
        response = _answer(inputs)
        NaiveAuditLog.objects.create(
            action="predict",
            user=request.user,
            model="pricing",
            rows=len(inputs),
            ip=request.META.get("REMOTE_ADDR"),
        )
        return response
