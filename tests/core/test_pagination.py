from __future__ import annotations

import pytest

from tests.accounts.factories import UserFactory

pytestmark = [pytest.mark.urls("tests.core.urls"), pytest.mark.django_db]


def test_lists_are_results_and_next_cursor(client):
    for index in range(5):
        UserFactory(username=f"u{index}")
    first = client.get("/api/test/users?limit=2").json()
    assert list(first) == ["results", "next"]
    assert [row["username"] for row in first["results"]] == ["u0", "u1"]
    assert first["next"] and "/" not in first["next"]  # a cursor, not a URL
    second = client.get(f"/api/test/users?limit=2&cursor={first['next']}").json()
    assert [row["username"] for row in second["results"]] == ["u2", "u3"]
    last = client.get(f"/api/test/users?limit=2&cursor={second['next']}").json()
    assert [row["username"] for row in last["results"]] == ["u4"]
    assert last["next"] is None


@pytest.mark.parametrize("cursor", ["bz1hYmM=", "cj14"])  # "o=abc", "r=x"
def test_a_forged_cursor_is_400_invalid_input(client, cursor):
    response = client.get(f"/api/test/users?cursor={cursor}")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_input"
    assert response.json()["error"]["details"][0]["path"] == "cursor"
