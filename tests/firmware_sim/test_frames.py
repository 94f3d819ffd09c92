"""The serial encoder against the documented vectors and an independent decoder."""

from __future__ import annotations

import contextlib
import json
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from firmware_sim.frames import FrameError, crc16, encode_frame
from tests.conftest import REPO
from tests.firmware_sim.refdecode import BadFrame, crc_ccitt_false, decode

VECTORS = json.loads((REPO / "docs" / "serial-protocol-vectors.json").read_text())["vectors"]


@pytest.mark.parametrize("vec", [v for v in VECTORS if v["valid"]], ids=lambda v: v["note"])
def test_encoder_reproduces_valid_vectors(vec: dict) -> None:
    line = encode_frame(vec["node"], vec["seq"], vec["time"], vec["readings"])
    assert line == vec["line"].encode() + b"\r\n"


@pytest.mark.parametrize("vec", VECTORS, ids=lambda v: v["note"])
def test_reference_decoder_agrees_with_vectors(vec: dict) -> None:
    if vec["valid"]:
        f = decode(vec["line"].encode())
        assert (f.node, f.seq, f.time, f.readings) == (
            vec["node"],
            vec["seq"],
            vec["time"],
            vec["readings"],
        )
    else:
        with pytest.raises(BadFrame):
            decode(vec["line"].encode())


def test_crc_is_ccitt_false() -> None:
    assert crc16(b"123456789") == 0x29B1 == crc_ccitt_false(b"123456789")


nodes = st.from_regex(r"[A-Za-z0-9_.-]{1,32}", fullmatch=True)
keys = st.from_regex(r"[a-z][a-z0-9_]{0,15}", fullmatch=True)
values = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False).map(lambda v: round(v, 4))


@given(
    node=nodes,
    seq=st.integers(0, 2**32 - 1),
    t=st.none() | st.floats(1.6e9, 2.2e9).map(lambda v: round(v, 3)),
    readings=st.dictionaries(keys, values, min_size=1, max_size=6),
)
def test_roundtrip_through_independent_decoder(
    node: str, seq: int, t: float | None, readings: dict[str, float]
) -> None:
    try:
        line = encode_frame(node, seq, t, readings)
    except FrameError as err:
        refused = str(err)
        assert "limit" in refused  # only over-long frames may be refused
        return
    assert line.endswith(b"\r\n")
    assert len(line) <= 256
    f = decode(line)
    assert f.node == node
    assert f.seq == seq
    assert f.time is None if t is None else math.isclose(f.time, t, abs_tol=1e-3)
    assert f.readings.keys() == readings.keys()
    for k, v in readings.items():
        assert math.isclose(f.readings[k], v, abs_tol=1e-6)


@pytest.mark.parametrize(
    ("node", "seq", "readings", "why"),
    [
        ("soil 1", 1, {"a": 1.0}, "node id"),
        ("n", -1, {"a": 1.0}, "u32"),
        ("n", 1, {}, "at least one"),
        ("n", 1, {"Soil": 1.0}, "key"),
        ("n", 1, {"a": float("nan")}, "finite"),
        ("n", 1, {f"k{i}": 123456.789 for i in range(20)}, "limit"),
    ],
)
def test_encoder_refuses_what_firmware_must_not_send(
    node: str, seq: int, readings: dict[str, float], why: str
) -> None:
    with pytest.raises(FrameError, match=why):
        encode_frame(node, seq, None, readings)


@given(
    node=nodes,
    seq=st.integers(0, 2**32 - 1),
    t=st.none() | st.floats(1.6e9, 2.2e9).map(lambda v: round(v, 3)),
    readings=st.dictionaries(keys, values, min_size=1, max_size=6),
)
def test_gateway_parser_decodes_simulated_frames(
    node: str, seq: int, t: float | None, readings: dict[str, float]
) -> None:
    """The gateway's own parser (helper B's) is a second independent decoder."""
    gw = pytest.importorskip("gateway.sources.serial.protocol")
    try:
        line = encode_frame(node, seq, t, readings)
    except FrameError:
        return
    f = gw.parse_frame(line.rstrip(b"\r\n"))
    assert (f.node, f.seq) == (node, seq)
    assert dict(f.readings) == pytest.approx(readings, abs=1e-6)


def test_gateway_splitter_keeps_every_intact_frame_around_faults() -> None:
    """Faulty stream -> gateway splitter + parser: bad frames rejected, no good one lost."""
    import random

    from firmware_sim.faults import LineFaults
    from firmware_sim.scenario import SerialFaults

    gw = pytest.importorskip("gateway.sources.serial.protocol")
    cfg = SerialFaults(
        corrupt=0.1, truncate=0.1, bitflip=0.1, garbage=0.15, duplicate=0.1, reorder=0.1
    )
    faults = LineFaults(cfg, random.Random(3))
    stream = b""
    for seq in range(2000):
        stream += b"".join(faults.apply(encode_frame("n-1", seq, None, {"salinity": seq / 7})))
    stream += b"".join(faults.flush())
    splitter = gw.LineSplitter()
    good: list[int] = []
    errors: list[str] = []
    for i in range(0, len(stream), 61):  # arbitrary chunking, as reads from a UART
        for cand, _noise in splitter.feed(stream[i : i + 61]):
            if not cand:
                continue
            try:
                good.append(gw.parse_frame(cand).seq)
            except gw.FrameError as err:
                errors.append(err.code)
    n = faults.counts
    # A truncated frame has no line end: the next frame shares its line and the splitter
    # keeps only that next frame, so truncations show up as noise, not as errors.
    assert len(errors) == n["corrupt"] + n["bitflip"]
    assert set(errors) <= {"crc_mismatch", "not_ascii", "bad_crc_format", "no_crc"}
    lost = n["corrupt"] + n["bitflip"] + n["truncate"]
    assert len(set(good)) == 2000 - lost
    assert len(good) == len(set(good)) + n["duplicate"]


@given(seed=st.integers(0, 2**32 - 1), n=st.integers(1, 60))
def test_counted_reorders_are_exactly_the_steps_back_a_reader_sees(seed: int, n: int) -> None:
    """Also when the stream ends while a frame is held back: flushed last, it was never
    overtaken, so it is not a reorder (counting it failed CI: 20 counted, 19 seen)."""
    import itertools
    import random

    from firmware_sim.faults import LineFaults
    from firmware_sim.scenario import SerialFaults

    faults = LineFaults(SerialFaults(reorder=0.3, duplicate=0.2, corrupt=0.2), random.Random(seed))
    chunks = [c for s in range(n) for c in faults.apply(encode_frame("n-1", s, None, {"x": 1}))]
    chunks += faults.flush()
    seqs: list[int] = []
    for c in chunks:
        with contextlib.suppress(BadFrame):
            seqs.append(decode(c).seq)
    assert sum(1 for a, b in itertools.pairwise(seqs) if b < a) == faults.counts["reorder"]
