"""What each answer of ``POST /api/v1/ingest`` means: one table, one function."""

from __future__ import annotations

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from hamlet.contract import IngestResult, UplinkBatch
from hamlet.ingest_client import DETAIL_CHARS, IngestClient, Outcome, Unreachable, classify
from tests.support.procs import ServerProcess

OK_BODY = IngestResult(accepted=2, duplicates=0).model_dump_json().encode()


@pytest.mark.parametrize(
    ("status", "body", "header", "outcome", "retry_after"),
    [
        (200, OK_BODY, None, Outcome.OK, None),
        (200, b"<html>proxy</html>", None, Outcome.FAILED, None),
        (401, b"bad token", None, Outcome.AUTH_REFUSED, None),
        (403, b"other gateway", None, Outcome.AUTH_REFUSED, None),
        (413, b"too big", None, Outcome.TOO_LARGE, None),
        (422, b"bad batch", None, Outcome.INVALID, None),
        (429, b"busy", "7", Outcome.RETRY, 7.0),
        (503, b"busy", None, Outcome.RETRY, None),
        (503, b"busy", "Thu, 01 Jan 1970 00:01:40 GMT", Outcome.RETRY, 60.0),
        (500, b"boom", "7", Outcome.FAILED, None),
        (502, b"", None, Outcome.FAILED, None),
    ],
)
def test_each_status_means_one_outcome(
    status: int, body: bytes, header: str | None, outcome: Outcome, retry_after: float | None
) -> None:
    got = classify(status, body, header, now=40.0)
    assert got.outcome is outcome
    assert got.status == status
    assert got.retry_after == retry_after
    assert (got.result is not None) == (outcome is Outcome.OK)
    if outcome is Outcome.OK:
        assert got.result == IngestResult.model_validate_json(OK_BODY)


@given(st.integers(100, 599), st.binary(max_size=2000), st.one_of(st.none(), st.text(max_size=80)))
def test_any_answer_is_classified_never_raised(
    status: int, body: bytes, header: str | None
) -> None:
    got = classify(status, body, header, now=1e9)
    assert got.outcome in Outcome
    assert len(got.detail) <= DETAIL_CHARS
    assert got.retry_after is None or got.retry_after >= 0


async def test_the_real_servers_answers_classify_as_documented(server: ServerProcess) -> None:
    token = server.add_gateway("gw-ic")
    empty = UplinkBatch(gateway="gw-ic", sent_at=1_764_309_600_000).model_dump_json().encode()
    async with httpx.AsyncClient(timeout=30) as http:
        good = IngestClient(http, server.url, token)
        ok = await good.post(good.compress(empty))
        assert ok.outcome is Outcome.OK
        assert ok.result == IngestResult()
        bad = IngestClient(http, server.url, "x" * 40)
        assert (await bad.post(bad.compress(empty))).outcome is Outcome.AUTH_REFUSED
        # Inflates past the server's bound (64 MiB): refused before it is parsed.
        bomb = good.compress(b"{" + b" " * (65 * 1024 * 1024) + b"}")
        assert (await good.post(bomb)).outcome is Outcome.TOO_LARGE
        wrong = good.compress(b'{"gateway": "gw-ic", "sent_at": "yesterday"}')
        invalid = await good.post(wrong)
        assert invalid.outcome is Outcome.INVALID
        assert invalid.detail


async def test_no_server_is_unreachable() -> None:
    async with httpx.AsyncClient(timeout=5) as http:
        client = IngestClient(http, "http://127.0.0.1:9", "t" * 40)
        with pytest.raises(Unreachable, match="ConnectError"):
            await client.post(client.compress(b"{}"))
