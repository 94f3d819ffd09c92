"""The pages' plumbing over real HTTP: language choice, ETag/304, gzip (never on ingest),
long-cached static files, vendored Swagger UI, and the Vietnamese number and date forms."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from server.i18n import date, negotiate, number
from tests.conftest import REPO
from tests.server.helpers import batch, block, post
from tests.support.pages_world import GATEWAY, HAMLET, World, pages_world


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    with pages_world(tmp_path_factory.mktemp("pages-http"), refresh_s=30) as w:
        yield w


def test_language_query_then_cookie_then_accept_language(world: World) -> None:
    with httpx.Client(base_url=world.server.url) as c:
        assert '<html lang="vi">' in c.get(f"/h/{HAMLET}").text  # nothing said: Vietnamese
        r = c.get(f"/h/{HAMLET}", headers={"Accept-Language": "en-GB,en;q=0.9"})
        assert '<html lang="en">' in r.text
        assert "lang" not in r.cookies  # only an explicit choice is remembered
        r = c.get(f"/h/{HAMLET}", params={"lang": "en"})
        assert r.cookies.get("lang") == "en"
        # The cookie now beats the browser's Vietnamese preference.
        r = c.get(f"/h/{HAMLET}", headers={"Accept-Language": "vi"})
        assert '<html lang="en">' in r.text
        assert '<html lang="vi">' in c.get("/", params={"lang": "vi"}).text
        assert '<html lang="vi">' in c.get("/installer").text


def test_unchanged_live_part_is_a_304_and_a_new_reading_changes_it(world: World) -> None:
    with httpx.Client(base_url=world.server.url) as c:
        first = c.get(f"/h/{HAMLET}", params={"partial": "1"})
        tag = first.headers["etag"]
        assert first.headers["cache-control"] == "private, no-cache"
        again = c.get(f"/h/{HAMLET}", params={"partial": "1"}, headers={"If-None-Match": tag})
        assert again.status_code == 304
        assert again.content == b""
        b = block("wl-1", "water_level", [700_001], values=[1.41])
        post(c, world.token, batch(GATEWAY, [b])).raise_for_status()
        changed = c.get(f"/h/{HAMLET}", params={"partial": "1"}, headers={"If-None-Match": tag})
        assert changed.status_code == 200
        assert "1,41" in changed.text


def test_gzip_on_pages_json_and_static_but_not_on_ingest(world: World) -> None:
    gz = {"Accept-Encoding": "gzip"}
    with httpx.Client(base_url=world.server.url, headers=gz) as c:
        for path in (f"/h/{HAMLET}", f"/api/v1/hamlets/{HAMLET}/latest", "/openapi.json"):
            assert c.get(path).headers.get("content-encoding") == "gzip", path
        page = c.get(f"/h/{HAMLET}").text
        js = next(p.split('"')[0] for p in page.split('src="')[1:] if "app.js" in p)
        r = c.get(js)
        assert r.headers.get("content-encoding") == "gzip"
        assert "immutable" in r.headers["cache-control"]
        assert "max-age=31536000" in r.headers["cache-control"]
        ing = post(c, world.token, batch(GATEWAY, [block("wl-1", "rain", [700_100])]))
        assert ing.status_code == 200
        assert "content-encoding" not in ing.headers


def test_swagger_ui_comes_from_this_server(world: World) -> None:
    with httpx.Client(base_url=world.server.url) as c:
        html = c.get("/docs").text
        assert "cdn" not in html.lower()
        assert "<script>" not in html  # no inline script: works under a strict CSP
        for ref in ("swagger-ui-bundle.js", "swagger-ui.css", "docs.js"):
            src = next(p.split('"')[0] for p in html.split('"/static/')[1:] if ref in p)
            assert c.get(f"/static/{src}").status_code == 200, ref


def test_no_inline_script_in_any_template() -> None:
    """A strict Content-Security-Policy (script-src 'self') must not break any page."""
    for path in (REPO / "server" / "templates").glob("*.html"):
        text = path.read_text()
        assert "<script>" not in text, path.name
        assert " onclick=" not in text, path.name
        assert " onload=" not in text, path.name


def test_vietnamese_forms() -> None:
    assert number(0.7, "vi") == "0,7"
    assert number(1350, "vi") == "1.350"
    assert number(1350.5, "en") == "1,350.5"
    assert date(1795852800000, "vi") == "28/11/2026"  # 2026-11-28 05:00 UTC+7


@given(st.text(max_size=300), st.sampled_from([None, "vi", "en", "fr", ""]))
def test_negotiate_always_gives_a_supported_language(header: str, cookie: str | None) -> None:
    assert negotiate(None, cookie, header) in ("vi", "en")
    assert negotiate("en", cookie, header) == "en"
    if cookie in ("vi", "en"):
        assert negotiate(None, cookie, header) == cookie


@given(st.floats(min_value=-1e8, max_value=1e8, allow_nan=False))
def test_vietnamese_number_round_trips(v: float) -> None:
    text = number(v, "vi")
    back = float(text.replace(".", "").replace(",", "."))
    assert abs(back - round(v, 2)) <= 0.005 + 1e-9 * abs(v)
