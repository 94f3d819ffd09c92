"""Backfill and fleet against a real ``hamlet server run`` process."""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path

import pytest

from firmware_sim.history import BatchBuilder, HistoryGenerator, batch_json
from firmware_sim.scenario import load_scenario
from firmware_sim.timebase import parse_start
from hamlet.contract import RecordKind, UplinkBatch, delta_decode
from hamlet.metrics import check_value
from tests.support.procs import ServerProcess, run_hamlet

pytestmark = pytest.mark.timeout(120)


def test_history_batches_are_valid_contract_with_dense_gateway_seqs() -> None:
    scn = load_scenario("demo")
    start = parse_start("2026-03-10T06:00")
    gen = HistoryGenerator(scn, start, start + 6 * 3600)
    b = BatchBuilder("gw-x", next_seq=1, max_records=500)
    batches = []
    for _t, recs in gen.windows():
        for r in recs:
            b.add(r)
            if b.full:
                batches.append(b.take(0))
    batches.append(b.take(0))
    seqs: list[int] = []
    kinds: set[str] = set()
    for batch in batches:
        # what the server will parse: the JSON through the real model, strict
        parsed = UplinkBatch.model_validate_json(gzip.decompress(gzip.compress(batch_json(batch))))
        for s in parsed.series:
            kinds.add(s.kind.value)
            for p in s.points():
                check_value(s.metric, p.v)
                seqs.append(p.seq)
            assert delta_decode(s.t) == sorted(delta_decode(s.t))
        seqs.extend(e.seq for e in parsed.events)
        kinds.update(e.kind.value for e in parsed.events)
    assert sorted(seqs) == list(range(1, len(seqs) + 1))
    assert kinds == {RecordKind.READING, RecordKind.HEARTBEAT, RecordKind.EVENT}


def test_backfill_posts_and_is_idempotent(server: ServerProcess) -> None:
    token = server.add_gateway("gw-bf")
    args = (
        "sim",
        "backfill",
        "--server",
        server.url,
        "--token",
        token,
        "--gateway",
        "gw-bf",
        "--days",
        "0.25",
        "--end",
        "2026-11-20T12:00:00",
        "--batch-records",
        "3000",
        "--quiet",
    )
    out = run_hamlet(*args)
    m = re.search(r"(\d+) records in (\d+) batches, (\d+) accepted, (\d+) duplicates", out)
    assert m, out
    records, batches, accepted, dupes = map(int, m.groups())
    assert records > 3000
    assert batches >= 2
    assert accepted == records
    assert dupes == 0
    again = run_hamlet(*args)
    m2 = re.search(r"(\d+) records in \d+ batches, (\d+) accepted, (\d+) duplicates", again)
    assert m2, again
    # Same scenario, seed and window: the same records under the same seqs, all duplicates.
    assert (int(m2.group(1)), int(m2.group(2)), int(m2.group(3))) == (records, 0, records)


def test_backfill_with_a_wrong_token_says_what_to_do(server: ServerProcess) -> None:
    server.add_gateway("gw-ok")
    with pytest.raises(RuntimeError, match="token"):
        run_hamlet(
            "sim",
            "backfill",
            "--server",
            server.url,
            "--token",
            "nope",
            "--gateway",
            "gw-ok",
            "--days",
            "0.01",
            "--quiet",
        )


def test_fleet_reports_throughput(server: ServerProcess, tmp_path: Path) -> None:
    tokens = {f"gw-f{i}": server.add_gateway(f"gw-f{i}") for i in range(3)}
    f = tmp_path / "tokens.json"
    f.write_text(json.dumps(tokens))
    out = run_hamlet(
        "sim",
        "fleet",
        "--server",
        server.url,
        "--tokens-file",
        str(f),
        "--duration-s",
        "3",
        "--days",
        "1",
        "--batch-records",
        "1000",
    )
    assert re.search(r"^gateways\s+3$", out, re.M), out
    m = re.search(r"^records\s+(\d+) \(([\d,]+)/s\)", out, re.M)
    assert m, out
    assert int(m.group(1)) >= 3000, out
    acc = re.search(r"^accepted/dup/rej\s+(\d+)/(\d+)/(\d+)", out, re.M)
    assert acc, out
    assert int(acc.group(1)) == int(m.group(1)), out
