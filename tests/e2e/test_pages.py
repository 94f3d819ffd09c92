"""The pages in Debian's Chromium, driven by Playwright, against a real server seeded through
the ingest API: statuses a farmer can act on, language remembered, 360 px, offline banner.

Screenshots go to test-artifacts/pages/ (git-ignored) for a person to look at.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from bench.page_weight import first_load, hour_open
from tests.conftest import REPO, STRICT, require_tool
from tests.server.helpers import batch, block, now_ms, post
from tests.support.pages_world import GATEWAY, HAMLET, STAFF, World, pages_world
from tests.support.procs import run_hamlet

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page, ViewportSize

pytestmark = [pytest.mark.browser, pytest.mark.timeout(180)]
ARTIFACTS = REPO / "test-artifacts" / "pages"
PHONE: ViewportSize = {"width": 360, "height": 740}
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    with pages_world(tmp_path_factory.mktemp("pages")) as w:
        yield w


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    chromium = require_tool("chromium")
    try:
        from playwright import sync_api
    except ImportError:
        msg = "playwright is not installed (pip install -e '.[dev]')"
        if STRICT:
            pytest.fail(f"{msg}; HAMLET_STRICT_TESTS=1 forbids skipping", pytrace=False)
        pytest.skip(msg)
    with sync_api.sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        yield b
        b.close()


class Watched:
    """A page whose console errors and uncaught exceptions are collected."""

    def __init__(self, page: Page) -> None:
        self.page = page
        self.errors: list[str] = []
        page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: self.errors.append(str(e)))

    def shot(self, name: str) -> Path:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTIFACTS / f"{name}.png"
        self.page.screenshot(path=str(path), full_page=True)
        return path


@pytest.fixture
def phone(browser: Browser) -> Iterator[Watched]:
    ctx = browser.new_context(viewport=PHONE, locale="vi-VN")
    w = Watched(ctx.new_page())
    yield w
    ctx.close()
    assert w.errors == [], f"console errors: {w.errors}"


def _fits(page: Page) -> None:
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= PHONE["width"], f"page is {width} px wide at a 360 px screen"


def _reading(page: Page, device: str, metric: str) -> str:
    return page.locator(f'section[data-device="{device}"] [data-metric="{metric}"]').inner_text()


def test_farmer_view_shows_statuses_against_the_crop(world: World, phone: Watched) -> None:
    page = phone.page
    page.goto(f"{world.server.url}/h/{HAMLET}")
    assert page.locator("html").get_attribute("lang") == "vi"
    _fits(page)
    sal = _reading(page, "sal-1", "salinity")  # 0.7 ‰ at durian (danger above 0.5 ‰)
    assert "0,7" in sal
    assert "Nguy hiểm" in sal
    assert "sầu riêng" in sal
    assert "Cần theo dõi" in _reading(page, "sal-2", "salinity")  # 2.81 ‰ at rice
    assert "An toàn" in _reading(page, "wl-1", "water_level")  # 1.35 m
    awd = _reading(page, "awd-1", "field_water")
    assert "Nguy hiểm" in awd
    assert "bơm" in awd
    old = _reading(page, "sal-old", "salinity")  # three days old
    assert "số liệu cũ" in old
    assert "An toàn" not in old
    assert page.locator('section[data-device="sal-old"] time.stale').count() == 1
    # Dangers come first, the stale and unjudged ones last.
    order = page.locator("section.card[data-device]").evaluate_all(
        "els => els.map(e => e.dataset.device)"
    )
    assert order.index("sal-1") < order.index("sal-2") < order.index("wl-1")
    assert order.index("awd-1") < order.index("sal-2")
    assert order.index("sal-old") > order.index("wl-1")
    # The kiosk is listed although it sends no metric values, and it is down.
    assert "Mất liên lạc" in page.locator('tr[data-device="kiosk-1"]').inner_text()
    # Ages computed in the browser, not the server's clock-time fallback.
    assert re.search(r"(phút|giây) trước|vừa xong", _reading(page, "wl-1", "water_level"))
    # Technical figures folded away until asked for.
    battery = page.locator('section[data-device="soil-1"] details')
    assert not battery.locator("table").is_visible()
    battery.locator("summary").click()
    assert "3,71 V" in battery.inner_text()
    phone.shot("farmer-360-vi")


def test_language_switches_and_is_remembered(world: World, phone: Watched) -> None:
    page = phone.page
    page.goto(f"{world.server.url}/h/{HAMLET}")
    page.get_by_role("link", name="English").click()
    page.wait_for_url(re.compile(r"lang=en"))
    assert page.locator("html").get_attribute("lang") == "en"
    assert "Danger" in _reading(page, "sal-1", "salinity")
    page.goto(f"{world.server.url}/h/{HAMLET}")  # no ?lang: the cookie decides
    assert page.locator("html").get_attribute("lang") == "en"
    assert "Water is fine" not in _reading(page, "sal-1", "salinity")
    assert "Do not water durian" in _reading(page, "sal-1", "salinity")
    phone.shot("farmer-360-en")
    page.get_by_role("link", name="Tiếng Việt").click()
    page.wait_for_url(re.compile(r"lang=vi"))
    page.goto(f"{world.server.url}/")
    assert page.locator("html").get_attribute("lang") == "vi"


def test_accept_language_decides_without_a_cookie(world: World, browser: Browser) -> None:
    for locale, want in (("en-US", "en"), ("vi-VN", "vi"), ("fr-FR", "vi")):
        ctx = browser.new_context(locale=locale)
        page = ctx.new_page()
        page.goto(f"{world.server.url}/h/{HAMLET}")
        assert page.locator("html").get_attribute("lang") == want, locale
        ctx.close()


def test_field_view_draws_trend_and_ranges_are_bookmarkable(world: World, phone: Watched) -> None:
    page = phone.page
    page.goto(f"{world.server.url}/h/{HAMLET}/d/sal-1?range=7d")
    page.locator("figure.chart canvas").first.wait_for()
    _fits(page)
    assert page.locator(".ranges a[aria-current]").inner_text() == "7 ngày"
    phone.shot("field-360-7d")
    page.get_by_role("link", name="24 giờ").click()
    page.wait_for_url(re.compile(r"range=24h"))
    page.locator("figure.chart canvas").first.wait_for()
    assert page.locator(".ranges a[aria-current]").inner_text() == "24 giờ"


def test_installer_view_and_raw_readings(world: World, phone: Watched) -> None:
    page = phone.page
    page.goto(f"{world.server.url}/installer")
    gw = page.locator(f'[data-gateway="{GATEWAY}"]')
    assert gw.locator('[data-k="buffer_depth"]').inner_text() == "1.350"
    assert gw.locator('[data-k="oldest_unsent"]').inner_text() == "42,5 s"
    received = int(gw.locator('[data-k="received"]').inner_text().replace(".", ""))
    assert received >= 177  # records seeded (other tests may add more)
    assert "Nguồn hỏng: 1" in gw.locator('[data-k="sources"]').inner_text()
    assert gw.locator('[data-k="dead_lettered"]').inner_text() == "4"
    _fits(page)
    phone.shot("installer-360")
    page.locator('tr[data-device="sal-2"] a').click()
    page.wait_for_url(re.compile(r"/installer/d/dinh-phuoc/sal-2"))
    assert "2,81 ‰" in page.locator("main").inner_text()


def test_refresh_pauses_while_hidden(world: World, phone: Watched) -> None:
    page = phone.page
    asked: list[str] = []
    page.on("request", lambda r: asked.append(r.url) if "partial=1" in r.url else None)
    page.goto(f"{world.server.url}/h/{HAMLET}")
    with page.expect_request(lambda r: "partial=1" in r.url, timeout=10_000):
        pass  # refresh_s is 1 in this world: the schedule runs
    page.evaluate(
        "Object.defineProperty(document, 'hidden', {value: true, configurable: true});"
        "document.dispatchEvent(new Event('visibilitychange'))"
    )
    before = len(asked)
    page.wait_for_timeout(3500)  # three refresh periods with the tab hidden
    assert len(asked) == before, "the page kept refreshing in a hidden tab"
    with page.expect_request(lambda r: "partial=1" in r.url, timeout=5_000):
        page.evaluate(
            "Object.defineProperty(document, 'hidden', {value: false, configurable: true});"
            "document.dispatchEvent(new Event('visibilitychange'))"
        )


def test_new_reading_appears_without_reload(world: World, phone: Watched) -> None:
    page = phone.page
    page.goto(f"{world.server.url}/h/{HAMLET}")
    with httpx.Client(base_url=world.server.url) as c:
        b = block("wl-1", "water_level", [900_001], t0=now_ms(), values=[2.05])
        post(c, world.token, batch(GATEWAY, [b])).raise_for_status()
    loc = page.locator('section[data-device="wl-1"] [data-metric="water_level"]')
    loc.filter(has_text="2,05").wait_for(timeout=15_000)
    assert "Nguy hiểm" in loc.inner_text()  # over alarm II (1.90 m)


def test_offline_banner_when_the_server_stops(tmp_path: Path, browser: Browser) -> None:
    with pages_world(tmp_path) as w:
        ctx = browser.new_context(viewport=PHONE, locale="vi-VN")
        page = ctx.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(f"{w.server.url}/h/{HAMLET}")
        banner = page.locator("#offline")
        assert banner.is_hidden()
        assert w.server.process.stop() == 0
        banner.wait_for(state="visible", timeout=15_000)
        assert "Mất kết nối" in banner.inner_text()
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "farmer-offline.png"))
        ctx.close()
        assert errors == []  # failed fetches are expected; uncaught script errors are not


def test_page_weight(world: World) -> None:
    """First load of the farmer view ≤ 60 KB compressed incl. the chart library; an hour
    left open (refresh every 30 s, a reading every 5 min) ≤ 300 KB."""
    with httpx.Client(base_url=world.server.url, headers={"Accept-Encoding": "gzip"}) as c:
        hamlet = first_load(c, f"/h/{HAMLET}")
        field = first_load(c, f"/h/{HAMLET}/d/sal-1?range=24h")
        assert any("uPlot" in u for u in field.parts), field.parts
        assert hamlet.total <= 60 * 1024, hamlet.parts
        assert field.total <= 60 * 1024, field.parts
        seq = iter(range(800_000, 900_000))

        def reading() -> None:
            b = block("sal-1", "salinity", [next(seq)], t0=now_ms(), values=[0.72])
            post(c, world.token, batch(GATEWAY, [b])).raise_for_status()

        kw: dict[str, Any] = {"refresh_s": 30.0, "seconds": 3600.0, "data_every_s": 300.0}
        total, n, n304 = hour_open(c, f"/h/{HAMLET}", new_data=reading, **kw)
        assert n == 120
        assert n304 >= 100  # unchanged boards cost a 304
        assert total <= 300 * 1024, total


def test_staff_sets_a_crop_from_a_list_and_the_status_follows(
    tmp_path: Path, browser: Browser
) -> None:
    with pages_world(tmp_path) as w:
        ctx = browser.new_context(viewport=PHONE, locale="vi-VN")
        phone = Watched(ctx.new_page())
        page = phone.page
        page.goto(f"{w.server.url}/login")
        page.get_by_label("Tên đăng nhập").fill(STAFF[0])
        page.get_by_label("Mật khẩu").fill(STAFF[1])
        page.get_by_role("button", name="Đăng nhập").click()
        page.get_by_role("link", name="Quản lý").click()
        page.wait_for_url(re.compile(r"/admin/devices"))
        form = page.locator('form[data-device="sal-2"]')
        # Crop is a list of choices, not free text.
        assert form.locator('select[name="crop"] option').count() == 1 + 6
        form.get_by_label("Cây trồng").select_option("durian")
        form.get_by_label("Chu kỳ gửi").select_option("600")
        form.get_by_role("button").click()
        page.wait_for_url(re.compile(r"saved="))
        _fits(page)
        phone.shot("admin-devices-360")
        page.goto(f"{w.server.url}/h/{HAMLET}")
        # 2.81 ‰ was "watch" for rice; for durian it is danger.
        assert "Nguy hiểm" in _reading(page, "sal-2", "salinity")
        ctx.close()
        assert phone.errors == []
        with httpx.Client(base_url=w.server.url) as c:  # a value off the list is refused
            c.post("/login", data={"username": STAFF[0], "password": STAFF[1]})
            bad = c.post("/admin/devices/dinh-phuoc/sal-2", data={"crop": "coconut"})
            assert bad.status_code == 400
            assert "coconut" in bad.text
            devs = c.get(f"/api/v1/hamlets/{HAMLET}/devices").json()
            assert next(d for d in devs if d["id"] == "sal-2")["crop"] == "durian"


def test_staff_view_lists_every_service_device_with_todays_use(
    world: World, phone: Watched
) -> None:
    page = phone.page
    page.goto(f"{world.server.url}/staff")
    down = page.locator('tr[data-device="kiosk-1"]')
    assert "Mất liên lạc" in down.inner_text()  # sends no metric values, still listed
    up = page.locator('tr[data-device="kiosk-2"]')
    assert "Đang hoạt động" in up.inner_text()
    assert up.locator('[data-k="sessions"]').inner_text() == "3"
    assert up.locator('[data-k="dossiers"]').inner_text().startswith("2")
    assert "1 trực tuyến" in up.locator('[data-k="dossiers"]').inner_text()
    assert up.locator('[data-k="satisfaction"]').inner_text().startswith("90 %")
    _fits(page)
    phone.shot("staff-360")


def test_staff_view_has_the_monthly_report_card_with_downloads(
    world: World, phone: Watched
) -> None:
    page = phone.page
    page.goto(f"{world.server.url}/staff?lang=vi")
    card = page.locator('section[data-card="dinh-mon"]')
    assert card.locator("tr[data-indicator]").count() >= 5
    assert card.locator('tr[data-indicator="kiosk_availability"]').count() == 1
    assert page.locator('tr[data-device="kiosk-2"] [data-k="avail_month"]').count() == 1
    with httpx.Client(base_url=world.server.url) as c:
        for fmt, kind in (("CSV", "text/csv"), ("Excel", "spreadsheet"), ("Bản in", "text/html")):
            href = card.get_by_role("link", name=fmt).get_attribute("href")
            assert href is not None
            r = c.get(href)
            assert r.status_code == 200, (fmt, r.text[:200])
            assert kind in r.headers["content-type"], fmt
    phone.shot("staff-card-360")


def _login(page: Page, url: str, name: str, password: str) -> None:
    page.goto(f"{url}/login?lang=vi")
    page.get_by_label("Tên đăng nhập").fill(name)
    page.get_by_label("Mật khẩu").fill(password)
    page.get_by_role("button", name="Đăng nhập").click()


def test_staff_creates_a_farmer_account_and_can_disable_it(
    tmp_path: Path, browser: Browser
) -> None:
    farmer_pw = "tạm-thời-2026"
    with pages_world(tmp_path) as w:
        ctx = browser.new_context(viewport=PHONE, locale="vi-VN")
        staff = Watched(ctx.new_page())
        page = staff.page
        _login(page, w.server.url, *STAFF)
        page.goto(f"{w.server.url}/admin/people?lang=vi")
        create = page.locator('form[data-form="create"]')
        # Staff may give farmer accounts only, for their own commune's hamlets.
        assert create.locator('select[name="role"] option').count() == 1
        create.get_by_label("Tên đăng nhập").fill("bacnam")
        create.get_by_label("Ấp (nông dân)").select_option(HAMLET)
        create.locator('input[name="password"]').fill(farmer_pw)
        create.get_by_role("button").click()
        page.wait_for_url(re.compile(r"saved=bacnam"))
        assert "chưa đổi mật khẩu tạm" in page.locator('[data-user="bacnam"]').inner_text()
        _fits(page)
        staff.shot("admin-people-360")
        # The farmer logs in and must replace the temporary password before any page.
        fctx = browser.new_context(viewport=PHONE, locale="vi-VN")
        fpage = fctx.new_page()
        _login(fpage, w.server.url, "bacnam", farmer_pw)
        fpage.wait_for_url(re.compile(r"/password"))
        fpage.goto(f"{w.server.url}/h/{HAMLET}")
        assert "/password" in fpage.url
        fctx.close()
        # Disabled: the farmer's login fails.
        page.locator('[data-user="bacnam"]').get_by_role("button", name="Khóa").click()
        page.wait_for_url(re.compile(r"saved=bacnam"))
        assert "đã khóa" in page.locator('[data-user="bacnam"]').inner_text()
        ctx.close()
        assert staff.errors == []
        with httpx.Client(base_url=w.server.url) as c:
            r = c.post("/login", data={"username": "bacnam", "password": farmer_pw})
            assert r.status_code == 401
            c.post("/login", data={"username": STAFF[0], "password": STAFF[1]})
            staff_role = c.post(
                "/admin/people",
                data={"name": "x2", "role": "staff", "commune": "dinh-mon", "password": "x" * 12},
            )
            assert staff_role.status_code == 403  # not staff's to give


def test_api_docs_work_under_the_strict_csp(world: World, phone: Watched) -> None:
    page = phone.page
    page.goto(f"{world.server.url}/docs")
    page.locator(".swagger-ui .info .title").wait_for(timeout=30_000)
    assert "Smart-hamlet" in page.locator(".swagger-ui .info .title").inner_text()


def test_active_alert_on_top_of_the_farmer_view_and_in_the_staff_history(
    world: World, phone: Watched
) -> None:
    """sal-1's week of salinity rose past durian's 0.5 ‰: the alert engine opens an alert,
    shown above the readings in the farmer's words, and in the staff view's history."""
    page = phone.page
    page.goto(f"{world.server.url}/h/{HAMLET}")
    alert = page.locator('section.alerts li[data-device="sal-1"]').first
    alert.wait_for(timeout=30_000)  # evaluated as the data arrived; the page refreshes
    text = alert.inner_text()
    assert "sầu riêng" in text
    assert "Độ mặn" in text
    first = page.locator("main #live > section").first
    assert "alerts" in (first.get_attribute("class") or "")
    phone.shot("farmer-alert-360")
    page.goto(f"{world.server.url}/staff")
    assert page.locator('section.alerts li[data-device="sal-1"]').count() >= 1


def _token(w: World, name: str) -> str:
    out = run_hamlet("server", "create-token", name, "--data-dir", str(w.server.data_dir), "--json")
    return str(json.loads(out)["token"])


def test_staff_manage_alert_subscriptions_and_a_farmer_stops_their_own(
    tmp_path: Path, browser: Browser
) -> None:
    farmer_pw = "ruộng-lúa-2026-mặn"
    with pages_world(tmp_path) as w:
        url, d = w.server.url, str(w.server.data_dir)
        run_hamlet("server", "add-hamlet", "other", "--commune", "thoi-lai", "--data-dir", d)
        run_hamlet("server", "add-user", "bay", "--role", "viewer", "--hamlet", HAMLET,
                   "--password-env", "PW", "--data-dir", d, env={"PW": farmer_pw})  # fmt: skip
        admin = {"Authorization": f"Bearer {_admin_token(w)}"}
        ctx = browser.new_context(viewport=PHONE, locale="vi-VN")
        staff = Watched(ctx.new_page())
        page = staff.page
        _login(page, url, *STAFF)
        page.goto(f"{url}/admin/alerts?lang=vi")
        new = page.locator('form[data-form="new-subscriber"]')
        # Only the staff's own commune's hamlets are offered.
        assert new.locator('select[name="hamlet"] option').all_inner_texts() == [HAMLET]
        new.get_by_label("Họ tên").fill("Chú Bảy")
        new.get_by_label("Số điện thoại (SMS)").fill("+84912345678")
        new.locator('input[name="quiet_start"]').fill("21:00")
        new.locator('input[name="quiet_end"]').fill("05:30")
        new.get_by_role("button").click()
        page.wait_for_url(re.compile(r"saved="))
        card = page.locator("section[data-subscriber]").filter(has_text="Chú Bảy")
        assert "21:00–05:30" in card.inner_text()
        form = card.locator('form[data-form="subscribe"]')
        form.get_by_label("Loại cảnh báo").select_option("salinity.danger")
        form.get_by_label("Thiết bị").select_option("sal-1")
        form.get_by_label("Từ mức").select_option("danger")
        form.get_by_role("button").click()
        page.wait_for_url(re.compile(r"saved="))
        subs = card.locator("li[data-subscription]")
        assert subs.count() == 1
        assert "Độ mặn vượt ngưỡng" in subs.inner_text()
        assert "sal-1" in subs.inner_text()
        _fits(page)
        # The API sees what the page made, in the staff's hamlet.
        with httpx.Client(base_url=url, headers=admin) as c:
            (sub,) = [s for s in c.get("/api/v1/notify/subscribers").json()
                      if s["name"] == "Chú Bảy"]  # fmt: skip
            assert sub["hamlet"] == HAMLET
            assert sub["quiet"] == [21 * 60, 5 * 60 + 30]
            assert [(u["rule"], u["device"], u["min_severity"]) for u in sub["subscriptions"]] == [
                ("salinity.danger", "sal-1", "danger")
            ]
            # Another commune's subscriber is not on this page, nor changeable from it.
            stranger = {"name": "Người xã khác", "phone": "0913000000", "hamlet": "other"}
            other = c.post("/api/v1/notify/subscribers", json=stranger).json()
            r = c.post("/api/v1/notify/test-message", json={"hamlet": HAMLET})
            assert r.json() == {"queued": 1}
            log = c.get("/api/v1/notify/deliveries").json()
        from server.notify.store import NotifyStore

        kept = NotifyStore(w.server.data_dir / "notify.sqlite3")
        try:  # as the SMS channel keeps a reply it read from the modem
            kept.add_reply("0912345678", "Đã đóng cống rồi")
        finally:
            kept.close()
        page.goto(f"{url}/admin/alerts?lang=vi")
        assert "Người xã khác" not in page.locator("main").inner_text()
        assert "Chú Bảy" in page.locator("li[data-reply]").inner_text()
        assert "Đã đóng cống rồi" in page.locator("li[data-reply]").inner_text()
        # The delivery log, message by message, with each recipient's status.
        msg = page.locator("details[data-message]").first
        assert "Tin nhắn thử" in msg.inner_text()
        rows = msg.locator("li[data-delivery]")
        assert rows.count() == 1
        # The dispatcher may move it on (pending -> sending -> pending on a retry) while
        # the page loads: the page shows a status the API gave before or after.
        with httpx.Client(base_url=url, headers=admin, timeout=10) as c2:
            after = c2.get("/api/v1/notify/deliveries").json()
        assert rows.get_attribute("data-status") in {log[0]["status"], after[0]["status"]}
        assert "Chú Bảy" in rows.inner_text()
        staff.shot("admin-alerts-360")
        page.goto(f"{url}/admin/alerts?lang=en")
        assert page.locator("h1").inner_text() == "Alert subscriptions"
        ctx.close()
        assert staff.errors == []

        # The farmer adds their own phone and stops their alerts on the page.
        fctx = browser.new_context(viewport=PHONE, locale="vi-VN")
        farmer = Watched(fctx.new_page())
        fpage = farmer.page
        _login(fpage, url, "bay", farmer_pw)
        fpage.wait_for_url(re.compile(r"^(?!.*login)"))
        fpage.goto(f"{url}/admin/alerts?lang=vi")
        assert fpage.locator("h1").inner_text() == "Cảnh báo của tôi"
        assert "Chú Bảy" not in fpage.locator("main").inner_text()  # staff's, not theirs
        new = fpage.locator('form[data-form="new-subscriber"]')
        new.get_by_label("Họ tên").fill("Bảy tự đăng ký")
        new.get_by_label("Số điện thoại (SMS)").fill("0987654321")
        new.get_by_role("button").click()
        fpage.wait_for_url(re.compile(r"saved="))
        mine = fpage.locator("section[data-subscriber]")
        assert mine.count() == 1
        mine.locator('form[data-form="subscribe"]').get_by_role("button").click()
        fpage.wait_for_url(re.compile(r"saved="))
        mine.get_by_role("button", name="Ngừng nhận cảnh báo").click()
        fpage.wait_for_url(re.compile(r"saved="))
        assert "đã ngừng" in fpage.locator("section[data-subscriber]").inner_text()
        farmer.shot("farmer-alerts-360")
        fctx.close()
        assert farmer.errors == []
        with httpx.Client(base_url=url, headers=admin) as c:
            (own,) = [s for s in c.get("/api/v1/notify/subscribers").json()
                      if s["name"] == "Bảy tự đăng ký"]  # fmt: skip
            assert own["active"] is False
            assert own["hamlet"] == HAMLET
            assert [u["hamlet"] for u in own["subscriptions"]] == [HAMLET]
            # Logged in as staff, a cross-origin form is refused (CSRF) and changes nothing;
            # the same form from this origin for another commune's subscriber: 404.
            c.headers.pop("Authorization")
            c.post("/login", data={"username": STAFF[0], "password": STAFF[1]})
            forged = c.post(f"/admin/alerts/subscribers/{own['id']}/remove",
                            headers={"Origin": "http://evil.example"})  # fmt: skip
            assert forged.status_code == 403
            r = c.post(f"/admin/alerts/subscribers/{other['id']}/remove",
                       headers={"Origin": url})  # fmt: skip
            assert r.status_code == 404
            for bad in ({"rule": "nope"}, {"min_severity": "huge"}, {"device": "not-here"}):
                r = c.post(f"/admin/alerts/subscribers/{sub['id']}/subscriptions",
                           data={"hamlet": HAMLET, **bad}, headers={"Origin": url})  # fmt: skip
                assert r.status_code == 400, bad
                assert "Chưa lưu: kiểm tra lại ô đã nhập" in r.text  # then the reason
            c.headers["Authorization"] = admin["Authorization"]
            listed = c.get("/api/v1/notify/subscribers").json()
            names = [s["name"] for s in listed]
            assert names.count("Bảy tự đăng ký") == names.count("Người xã khác") == 1
            (bay,) = [s for s in listed if s["name"] == "Chú Bảy"]
            assert len(bay["subscriptions"]) == 1  # none of the refused ones was added


def _admin_token(w: World) -> str:
    d = str(w.server.data_dir)
    run_hamlet("server", "add-user", "quan-tri", "--role", "admin", "--no-password",
               "--data-dir", d)  # fmt: skip
    return _token(w, "quan-tri")
