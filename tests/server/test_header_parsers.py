"""Hypothesis for the small header parsers: the client address behind trusted proxies, the
same-origin check, and error texts that must always encode."""

from __future__ import annotations

import ipaddress
import json

from hypothesis import given
from hypothesis import strategies as st
from starlette.datastructures import Headers
from starlette.requests import Request

from server.clientaddr import client_address, parse_networks
from server.errors import clean_text, validation_body
from server.security import same_origin

header_text = st.text(st.characters(min_codepoint=32, max_codepoint=255), max_size=200)
ips = st.one_of(st.ip_addresses(v=4).map(str), st.ip_addresses(v=6).map(str))


def _request(peer: str, forwarded: list[str]) -> Request:
    headers = [(b"x-forwarded-for", v.encode("latin-1")) for v in forwarded]
    return Request({"type": "http", "client": (peer, 1234), "headers": headers})


@given(ips, st.lists(st.one_of(header_text, ips), max_size=4), st.booleans())
def test_client_address_is_the_peer_or_an_address_from_a_trusted_proxy(
    peer: str, forwarded: list[str], trust: bool
) -> None:
    trusted = parse_networks([peer]) if trust else []
    got = client_address(_request(peer, forwarded), trusted)
    if not trust:
        assert got == peer  # nobody else may choose the address their failures count on
    else:
        assert got == peer or ipaddress.ip_address(got)
        hops = [h.strip() for v in forwarded for h in v.split(",")]
        assert got == peer or got in {str(ipaddress.ip_address(h)) for h in hops if _ip(h)}


def _ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def test_right_most_untrusted_hop_wins() -> None:
    trusted = parse_networks(["127.0.0.1", "10.0.0.0/8"])
    req = _request("127.0.0.1", ["6.6.6.6, 203.0.113.7, 10.1.2.3"])
    assert client_address(req, trusted) == "203.0.113.7"
    assert client_address(_request("192.0.2.1", ["6.6.6.6"]), trusted) == "192.0.2.1"


@given(st.dictionaries(st.sampled_from(["origin", "sec-fetch-site", "host"]), header_text))
def test_same_origin_check_never_fails(headers: dict[str, str]) -> None:
    result = same_origin(Headers(headers))
    if "sec-fetch-site" in headers:
        assert result == (headers["sec-fetch-site"].lower() in {"same-origin", "none"})


@given(st.text(max_size=300), st.lists(st.one_of(st.text(max_size=30), st.integers()), max_size=5))
def test_error_texts_always_encode(msg: str, loc: list[str | int]) -> None:
    body = validation_body([{"loc": loc, "msg": msg, "type": msg, "input": msg}])
    text = json.dumps(body, ensure_ascii=False).encode("utf-8")  # must not raise
    assert isinstance(body["detail"], str)
    assert len(clean_text(msg)) <= 4 * 200
    assert text
