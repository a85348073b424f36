"""The console's home: a landing page for visitors, each person's dashboard once signed in."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from apps.accounts.web_access import ui_view
from apps.console.selectors import KEYS_HORIZON, TRAFFIC_WINDOW, dashboard_for


def home(request: HttpRequest) -> HttpResponse:
    if not request.user.is_authenticated:
        return render(request, "home.html")
    return _dashboard(request)


@ui_view(None, home="home")
def _dashboard(request: HttpRequest) -> HttpResponse:
    board = dashboard_for(request.user)
    return render(
        request,
        "console/dashboard.html",
        {
            "board": board,
            "keys_days": KEYS_HORIZON.days,
            "traffic_minutes": int(TRAFFIC_WINDOW.total_seconds() // 60),
        },
    )
