"""Issue 12, installer view: a real gateway (one healthy MQTT source, one serial radio whose
port is missing) and a poison MQTT message on a real broker; the gateway's status report
reaches the server through the normal buffered path, and the installer page in Chromium
shows the failing source's state and the dead letter with its reason, in Vietnamese and
English, hostile bytes escaped (no script runs).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import paho.mqtt.client as mqtt
import pytest
import tomli_w
from paho.mqtt.enums import CallbackAPIVersion

from tests.conftest import require_tool
from tests.e2e import test_pages as pages
from tests.support.broker import Broker
from tests.support.gateway_proc import create_session, start_gateway
from tests.support.procs import ServerProcess, run_hamlet

if TYPE_CHECKING:
    from playwright.sync_api import Browser

pytestmark = [pytest.mark.browser, pytest.mark.timeout(180)]
browser = pages.browser  # the module's Chromium (Debian's, through Playwright)

GW = "gw-installer"
TOPICS = ["hamlet/+/telemetry", "hamlet/+/event"]
MISSING_PORT = "/dev/serial/by-id/usb-hamlet-radio-not-plugged-in"
INSTALLER = ("kythuat", "lắp-đặt-2026-ấp")
# A kiosk (or anyone on the hamlet LAN) sends markup, a NUL and a byte that is not UTF-8.
POISON = b'<script>window.__pwned=1</script><img src=x onerror="window.__pwned=2">\x00\xff'


def _config(path: Path, broker: Broker, url: str, token: str) -> Path:
    conf = {
        "id": GW,
        "data_dir": str(path.parent / "gw"),
        "heartbeat_interval_s": 3600,
        "buffer": {"commit_interval_ms": 20},
        "clock": {"sync": "always"},
        "uplink": {"url": url, "token": token, "backoff_base_s": 0.05, "backoff_cap_s": 0.5},
        "status_report": {"min_gap_s": 0.2},
        "sources": {
            "mqtt": [{"name": "lan-mqtt", "host": broker.host, "port": broker.port,
                      "client_id": GW, "topics": TOPICS}],
            "serial": [{"name": "radio", "port": MISSING_PORT, "backoff_max_s": 1.0}],
        },
    }  # fmt: skip
    path.write_text(tomli_w.dumps(conf))
    return path


def _publish(broker: Broker, msgs: list[tuple[str, bytes]]) -> None:
    pub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="kiosk-and-nodes")
    pub.connect(broker.host, broker.port)
    pub.loop_start()
    try:
        for info in [pub.publish(t, p, qos=1) for t, p in msgs]:
            info.wait_for_publish(30)
    finally:
        pub.disconnect()
        pub.loop_stop()


def _wait_for_report(c: httpx.Client, *needles: str, deadline_s: float = 90) -> str:
    """Poll the server's page (three processes: no event crosses them) until it shows all."""
    deadline = time.monotonic() + deadline_s
    while True:
        page = c.get("/installer?lang=en").text
        if all(n in page for n in needles) or time.monotonic() > deadline:
            missing = [n for n in needles if n not in page]
            assert missing == [], f"the installer page never showed {missing}"
            return page
        time.sleep(0.3)


@pytest.fixture
def reported(tmp_path: Path, mqtt_broker: Broker, server: ServerProcess) -> Iterator[ServerProcess]:
    if mqtt_broker.kind != "mosquitto":
        require_tool("mosquitto")
    token = server.add_gateway(GW)
    run_hamlet(
        "server", "add-user", INSTALLER[0], "--role", "installer", "--password-env", "PW",
        "--data-dir", str(server.data_dir), env={"PW": INSTALLER[1]},
    )  # fmt: skip
    conf = _config(tmp_path / "gateway.toml", mqtt_broker, server.url, token)
    create_session(mqtt_broker, GW, TOPICS)
    _publish(
        mqtt_broker,
        [
            ("hamlet/wl-1/telemetry", json.dumps({"readings": {"water_level": 1.25}}).encode()),
            ("hamlet/kiosk-1/event", POISON),
        ],
    )
    gw = start_gateway(conf, GW)
    try:
        with httpx.Client(base_url=server.url, timeout=30) as c:
            c.post("/login", data={"username": INSTALLER[0], "password": INSTALLER[1]})
            _wait_for_report(
                c,
                'data-source="radio" data-state="reconnecting"',
                'data-source="lan-mqtt" data-state="running"',
                "not_utf8",
            )
        yield server
    finally:
        assert gw.stop() == 0


def test_installer_sees_failing_source_and_dead_letter(
    reported: ServerProcess, browser: Browser
) -> None:
    ctx = browser.new_context(viewport=pages.PHONE, locale="vi-VN")
    w = pages.Watched(ctx.new_page())
    page = w.page
    page.goto(f"{reported.url}/login?lang=vi")
    page.get_by_label("Tên đăng nhập").fill(INSTALLER[0])
    page.get_by_label("Mật khẩu").fill(INSTALLER[1])
    page.get_by_role("button", name="Đăng nhập").click()
    page.wait_for_url(lambda u: "/login" not in u)
    page.goto(f"{reported.url}/installer")
    gw = page.locator(f'[data-gateway="{GW}"]')
    radio = gw.locator('[data-source="radio"]')
    text = radio.inner_text()
    assert "Đang kết nối lại" in text  # the word, with the icon and the colour
    assert radio.locator(".badge.watch").count() == 1
    assert "⚠" in text
    assert MISSING_PORT in text  # the error as the gateway saw it
    assert "hamlet gateway doctor" in text
    assert "Việc cần làm" in text
    assert "chưa bao giờ" in text  # never read a frame
    mqtt_src = gw.locator('[data-source="lan-mqtt"]').inner_text()
    assert "Đang chạy" in mqtt_src
    assert "chưa bao giờ" not in mqtt_src  # it has a last reading time
    dead = gw.locator("[data-dead]")
    assert dead.count() == 1
    letter = dead.first.inner_text()
    assert "not_utf8" in letter  # the specific reason
    assert "hamlet/kiosk-1/event" in letter  # which topic
    assert "<script>window.__pwned=1</script>" in letter  # shown as text, escaped
    assert "\\x00\\xff" in letter  # bytes that are not text, as escapes
    assert page.evaluate("window.__pwned") is None  # and nothing ran
    assert page.locator("img[src=x]").count() == 0
    pages._fits(page)
    w.shot("installer-status-vi")
    page.goto(f"{reported.url}/installer?lang=en")
    radio_en = page.locator(f'[data-gateway="{GW}"] [data-source="radio"]').inner_text()
    assert "Reconnecting" in radio_en
    assert "The port is missing" in radio_en
    letter_en = page.locator(f'[data-gateway="{GW}"] [data-dead]').first.inner_text()
    assert "Reason" in letter_en
    assert "not_utf8" in letter_en
    assert page.evaluate("window.__pwned") is None
    w.shot("installer-status-en")
    ctx.close()
    assert w.errors == [], f"console errors: {w.errors}"
