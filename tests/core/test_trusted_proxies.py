from __future__ import annotations

import ipaddress

import pytest

pytestmark = [pytest.mark.urls("tests.core.urls")]


@pytest.fixture
def proxies(settings):
    settings.TRUSTED_PROXIES = (ipaddress.ip_network("10.0.0.0/8"),)


def whoami(client, peer: str, **headers: str) -> dict:
    return client.get("/api/test/whoami", REMOTE_ADDR=peer, **headers).json()


def test_nobody_is_trusted_by_default(client):
    seen = whoami(
        client, "203.0.113.9", HTTP_X_FORWARDED_FOR="1.2.3.4", HTTP_X_FORWARDED_PROTO="https"
    )
    assert seen == {"ip": "203.0.113.9", "secure": False}


def test_spoofed_header_from_an_untrusted_peer_changes_nothing(client, proxies):
    seen = whoami(
        client, "203.0.113.9", HTTP_X_FORWARDED_FOR="10.1.1.1", HTTP_X_FORWARDED_PROTO="https"
    )
    assert seen == {"ip": "203.0.113.9", "secure": False}


def test_trusted_proxy_names_the_client(client, proxies):
    seen = whoami(
        client, "10.0.0.2", HTTP_X_FORWARDED_FOR="198.51.100.7", HTTP_X_FORWARDED_PROTO="https"
    )
    assert seen == {"ip": "198.51.100.7", "secure": True}


def test_client_written_hops_left_of_the_real_client_are_ignored(client, proxies):
    # The client sent "X-Forwarded-For: 1.1.1.1"; our proxies appended the real address
    # and themselves.
    seen = whoami(client, "10.0.0.2", HTTP_X_FORWARDED_FOR="1.1.1.1, 198.51.100.7, 10.0.0.3")
    assert seen["ip"] == "198.51.100.7"


def test_garbage_forwarded_for_keeps_the_peer(client, proxies):
    assert whoami(client, "10.0.0.2", HTTP_X_FORWARDED_FOR="not-an-ip")["ip"] == "10.0.0.2"
