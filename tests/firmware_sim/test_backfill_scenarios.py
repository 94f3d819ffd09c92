"""Every built-in scenario backfilled into a real server: no 422, every device filed under
its scenario hamlet, batches sized from the server's own limits."""

from __future__ import annotations

import json
import re
from pathlib import Path

import httpx
import pytest

from firmware_sim.scenario import builtin_names, load_scenario
from hamlet.contract import LIMITS_PATH, MAX_EVENTS_PER_BATCH, IngestLimits
from tests.support.procs import ServerProcess, run_hamlet

pytestmark = pytest.mark.timeout(180)


def _admin_token(server: ServerProcess) -> str:
    data_dir = str(server.data_dir)
    run_hamlet("server", "add-user", "sim-admin", "--role", "admin", "--no-password",
               "--data-dir", data_dir)  # fmt: skip
    out = run_hamlet("server", "create-token", "sim-admin", "--data-dir", data_dir, "--json")
    return str(json.loads(out)["token"])


def test_the_server_publishes_its_ingest_limits(server: ServerProcess) -> None:
    r = httpx.get(server.url + LIMITS_PATH, timeout=10)
    assert r.status_code == 200
    limits = IngestLimits.model_validate_json(r.content)
    assert limits.max_events_per_batch == MAX_EVENTS_PER_BATCH
    assert limits.max_body_bytes > 0


@pytest.mark.parametrize("name", builtin_names())
def test_backfill_every_builtin_scenario(name: str, server: ServerProcess, tmp_path: Path) -> None:
    scn = load_scenario(name)
    lines = []
    for h in scn.hamlets:
        gw = f"gw-{h.id}"[:60]
        lines.append(f"{h.id} {gw} {server.add_gateway(gw, hamlet=h.id)}")
    gateways = tmp_path / "gateways.txt"
    gateways.write_text("\n".join(lines) + "\n")
    # Readings every 10 minutes leave the demo's round-the-clock kiosk events the bulk:
    # ~30,000 in five days, which one 100,000-record batch would send at once, over the
    # server's 10,000-event limit (the 422 of issue 16, before batches followed /limits).
    days = {"demo": "5", "dinh-mon": "1"}.get(name, "2")
    out = run_hamlet(
        "sim", "backfill", "--server", server.url, "--gateways-file", str(gateways),
        "--scenario", name, "--days", days, "--end", "2026-03-12T12:00:00",
        "--batch-records", "100000", "--interval-s", "600", "--quiet",
        timeout=150,
    )  # fmt: skip
    m = re.search(
        r"(\d+) records in (\d+) batches, (\d+) accepted, (\d+) duplicates, (\d+) rej", out
    )
    assert m, out
    records, _batches, accepted, dupes, rejected = map(int, m.groups())
    assert records > 0
    assert (accepted, dupes, rejected) == (records, 0, 0), out
    # Each device under its scenario hamlet, and nowhere else.
    token = _admin_token(server)
    headers = {"Authorization": f"Bearer {token}"}
    for h in scn.hamlets:
        r = httpx.get(f"{server.url}/api/v1/hamlets/{h.id}/devices", headers=headers, timeout=10)
        r.raise_for_status()
        listed = sorted(d["id"] for d in r.json())
        expected = sorted([d.id for d in scn.devices if d.hamlet == h.id] + [f"gw-{h.id}"])
        assert listed == expected, (h.id, listed)
    # The gateways report what their devices' own seqs showed (dropouts, reboots).
    lost = 0.0
    for h in scn.hamlets:
        r = httpx.get(f"{server.url}/api/v1/hamlets/{h.id}/latest", headers=headers, timeout=10)
        r.raise_for_status()
        gw_rows = {row["metric"]: row["v"] for row in r.json() if row["device"] == f"gw-{h.id}"}
        assert {"gw.seq_gaps", "gw.seq_lost", "gw.seq_resets"} <= gw_rows.keys()
        lost += gw_rows["gw.seq_lost"]
    if name == "dinh-mon":  # realistic sensor faults: ~2 % of readings never arrive
        assert lost > 0


def test_a_multi_hamlet_scenario_needs_a_gateway_per_hamlet(server: ServerProcess) -> None:
    token = server.add_gateway("gw-one", hamlet="can-tho")
    with pytest.raises(RuntimeError, match="--hamlet"):
        run_hamlet(
            "sim", "backfill", "--server", server.url, "--token", token, "--gateway", "gw-one",
            "--scenario", "october-flood", "--days", "0.1", "--quiet",
        )  # fmt: skip


def test_a_server_that_cannot_tell_its_limits_is_an_error(server: ServerProcess) -> None:
    token = server.add_gateway("gw-x", hamlet="dinh-phuoc")
    with pytest.raises(RuntimeError, match="cannot learn the server's batch limits"):
        run_hamlet(
            "sim", "backfill", "--server", server.url + "/no-such-prefix", "--token", token,
            "--gateway", "gw-x", "--scenario", "demo", "--days", "0.1", "--quiet",
        )  # fmt: skip


def test_small_events_limit_is_respected(server: ServerProcess) -> None:
    """The server's figures, not the contract's, size the batches: check every batch."""
    from firmware_sim.history import BatchBuilder, HistoryGenerator
    from firmware_sim.timebase import parse_start

    limits = IngestLimits(
        max_events_per_batch=50, max_body_bytes=10**6, max_decompressed_bytes=200_000
    )
    scn = load_scenario("demo")
    t0 = parse_start("2026-03-10T06:00")
    gen = HistoryGenerator(scn, t0, t0 + 3 * 3600)
    b = BatchBuilder("gw", max_records=10**6, limits=limits)
    sizes = []
    for _t, recs in gen.windows():
        for r in recs:
            b.add(r)
            if b.full:
                batch = b.take(0)
                sizes.append((len(batch.events), len(batch.model_dump_json())))
    assert len(sizes) > 5
    assert all(ev <= 50 and size <= 200_000 for ev, size in sizes)
