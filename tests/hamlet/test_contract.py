"""The uplink contract: delta coding, columnar blocks and limits, fuzzed with Hypothesis."""

from __future__ import annotations

import contextlib
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from hamlet.contract import (
    MAX_POINTS_PER_BATCH,
    Point,
    RecordKind,
    SeriesBlock,
    TimeQuality,
    UplinkBatch,
    delta_decode,
    delta_encode,
)

ints = st.integers(min_value=-(2**53), max_value=2**53)


@given(st.lists(ints, max_size=200))
def test_delta_roundtrip(values: list[int]) -> None:
    assert delta_decode(delta_encode(values)) == values


points = st.lists(
    st.builds(
        Point,
        seq=st.integers(1, 2**40),
        t=st.integers(1_577_836_800_000, 4_102_444_800_000),
        v=st.floats(allow_nan=False, allow_infinity=False, width=64),
        q=st.sampled_from(list(TimeQuality)),
    ),
    min_size=1,
    max_size=50,
    unique_by=lambda p: p.seq,
)


@given(points)
def test_series_block_survives_the_wire(pts: list[Point]) -> None:
    block = SeriesBlock.from_points("soil-1", "soil_moisture", RecordKind.READING, pts)
    wire = UplinkBatch(gateway="gw-1", sent_at=1, series=[block]).model_dump_json()
    back = UplinkBatch.model_validate_json(wire)
    got = list(back.series[0].points())
    assert [(p.seq, p.t, p.v, p.q) for p in got] == sorted(
        ((p.seq, p.t, p.v, p.q) for p in pts), key=lambda x: x[0]
    )


def test_aggregate_block_requires_min_max_count() -> None:
    with pytest.raises(ValidationError, match="vmin, vmax and n"):
        SeriesBlock(device="d", metric="m", kind=RecordKind.AGGREGATE, seq=[1], t=[1], v=[1.0])


def test_columns_must_be_parallel() -> None:
    with pytest.raises(ValidationError, match="column 't' has 2 values, seq has 1"):
        SeriesBlock(device="d", metric="m", seq=[1], t=[1, 2], v=[1.0])


def test_identifiers_are_policed() -> None:
    for bad in ["", "a b", "x;DROP TABLE", "'quote", "a" * 65, "đ"]:
        with pytest.raises(ValidationError):
            SeriesBlock(device=bad, metric="m", seq=[1], t=[1], v=[1.0])


def test_batch_point_limit() -> None:
    n = MAX_POINTS_PER_BATCH + 1
    block = {"device": "d", "metric": "m", "seq": [1] * n, "t": [0] * n, "v": [0.0] * n}
    with pytest.raises(ValidationError, match="at most"):
        UplinkBatch.model_validate({"gateway": "g", "sent_at": 0, "series": [block]})


@given(st.binary(max_size=300))
def test_arbitrary_bytes_never_crash_the_decoder(raw: bytes) -> None:
    with contextlib.suppress(ValidationError):
        UplinkBatch.model_validate_json(raw)


@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=8),
        lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=6), c, max_size=4),
        max_leaves=20,
    )
)
def test_arbitrary_json_is_rejected_with_a_reason(doc: object) -> None:
    reason = ""
    try:
        UplinkBatch.model_validate_json(json.dumps(doc))
        reason = "accepted"
    except ValidationError as err:
        reason = err.errors()[0]["msg"]
    assert reason
