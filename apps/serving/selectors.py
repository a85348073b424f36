"""What other apps may ask about serving without reaching into its views."""

from __future__ import annotations

from django.urls import Resolver404, resolve

from apps.serving.views import PredictApi


def path_is_rate_limited_predict(path: str) -> bool:
    """Whether `path` is served by the predict view, which applies every caller's limit."""
    try:
        match = resolve(path)
    except Resolver404:
        return False
    return getattr(match.func, "view_class", None) is PredictApi
