"""The serial frame parser against the documented vectors, and Hypothesis fuzzing."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.sources.serial.protocol import (
    MAX_LINE,
    Frame,
    FrameError,
    LineSplitter,
    encode_frame,
    parse_frame,
)
from tests.conftest import REPO

VECTORS = json.loads((REPO / "docs" / "serial-protocol-vectors.json").read_text())["vectors"]
CODES = {
    "too_long", "no_start", "no_crc", "bad_crc_format", "not_ascii", "crc_mismatch",
    "no_readings", "bad_node", "bad_seq", "bad_time", "too_many_readings", "bad_reading",
    "bad_key", "dup_key", "not_finite", "bad_value",
}  # fmt: skip
# The vectors' notes name the failure; each must map to the one specific code.
NOTE_CODE = {
    "crc mismatch": "crc_mismatch",
    "crc mismatch (payload bit flip)": "crc_mismatch",
    "missing '$' start": "no_start",
    "truncated: no checksum": "no_crc",
    "no readings": "no_readings",
    "sequence is not a number": "bad_seq",
    "value is not a number": "bad_value",
    "bad node id": "bad_node",
    "reading without '='": "bad_reading",
    "value is not finite": "not_finite",
    "bad key (uppercase)": "bad_key",
    "line too long": "too_long",
}


@pytest.mark.parametrize("vec", VECTORS, ids=[v["note"] for v in VECTORS])
def test_vectors(vec: dict[str, object]) -> None:
    line = str(vec["line"]).encode()
    if vec["valid"]:
        f = parse_frame(line)
        assert f.node == vec["node"]
        assert f.seq == vec["seq"]
        assert f.time == vec["time"]
        assert dict(f.readings) == vec["readings"]
        # The reference encoder reproduces the vector byte for byte.
        assert encode_frame(f.node, f.seq, f.time, dict(f.readings)) == line + b"\r\n"
    else:
        with pytest.raises(FrameError) as exc:
            parse_frame(line)
        assert exc.value.code == NOTE_CODE[str(vec["note"])]


nodes = st.from_regex(r"[A-Za-z0-9_.\-]{1,32}", fullmatch=True)
keys = st.from_regex(r"[a-z][a-z0-9_]{0,31}", fullmatch=True)
values = st.floats(allow_nan=False, allow_infinity=False, width=32).map(lambda v: float(f"{v:g}"))
frames = st.builds(
    Frame,
    node=nodes,
    seq=st.integers(0, 2**32 - 1),
    time=st.one_of(st.none(), st.integers(1_577_836_800, 2_000_000_000).map(float)),
    readings=st.dictionaries(keys, values, min_size=1, max_size=4).map(lambda d: tuple(d.items())),
)


def _attempt(raw: bytes) -> Frame | FrameError:
    try:
        return parse_frame(raw)
    except FrameError as err:
        return err


def _encode(f: Frame) -> bytes:
    return encode_frame(f.node, f.seq, f.time, dict(f.readings))


@settings(max_examples=300)
@given(frames)
def test_roundtrip(f: Frame) -> None:
    line = _encode(f).rstrip(b"\r\n")
    if len(line) > MAX_LINE:
        with pytest.raises(FrameError):
            parse_frame(line)
        return
    assert parse_frame(line) == f


@settings(max_examples=150)
@given(frames, st.data())
def test_any_single_bit_flip_is_caught(f: Frame, data: st.DataObject) -> None:
    line = bytearray(_encode(f).rstrip(b"\r\n"))
    bit = data.draw(st.integers(0, len(line) * 8 - 1))
    line[bit // 8] ^= 1 << (bit % 8)
    with pytest.raises(FrameError) as exc:
        parse_frame(bytes(line))
    assert exc.value.code in CODES


@settings(max_examples=500)
@given(st.binary(max_size=300))
def test_never_crashes_on_bytes(raw: bytes) -> None:
    out = _attempt(raw)
    if isinstance(out, FrameError):
        assert out.code in CODES
        assert str(out).startswith(out.code + ": ")


@settings(max_examples=300)
@given(st.text(alphabet="$,=*.-_0123456789abcdefAF", max_size=80).map(lambda s: ("$" + s).encode()))
def test_never_crashes_on_frame_like_text(raw: bytes) -> None:
    out = _attempt(raw)
    if isinstance(out, FrameError):
        assert out.code in CODES


@settings(max_examples=80, deadline=None)
@given(
    st.lists(st.tuples(st.binary(max_size=40), frames), min_size=1, max_size=8),
    st.lists(st.integers(1, 64), min_size=1, max_size=20),
)
def test_splitter_resyncs_after_garbage(items: list[tuple[bytes, Frame]], cuts: list[int]) -> None:
    stream = bytearray()
    want = []
    for noise, f in items:
        # Noise without newlines or '$' right before a frame, on the same line.
        stream += noise.replace(b"\n", b"").replace(b"$", b"")
        enc = _encode(f)
        stream += enc
        if len(enc) - 2 <= MAX_LINE:
            want.append(f)
    sp = LineSplitter()
    got = []
    pos = 0
    i = 0
    while pos < len(stream):
        n = cuts[i % len(cuts)]
        i += 1
        for cand, _noise in sp.feed(bytes(stream[pos : pos + n])):
            out = _attempt(cand)
            if isinstance(out, Frame):
                got.append(out)
        pos += n
    # A frame whose line (noise + frame) was too long is dropped whole; all others survive.
    assert set(got) <= set(want)
    short = [f for (noise, f) in items if len(noise) + len(_encode(f)) <= MAX_LINE]
    assert set(short) <= set(got)


def test_splitter_bounds_overlong_lines() -> None:
    sp = LineSplitter()
    good = encode_frame("n1", 1, None, {"rain": 0.2})
    out = sp.feed(b"x" * 5000)
    out += sp.feed(b"y" * 5000 + b"\n" + good)
    assert sp.stats.overlong == 1
    assert [parse_frame(c) for c, _ in out if c] == [Frame("n1", 1, None, (("rain", 0.2),))]
    assert len(sp._buf) == 0  # nothing left over from the babble


def _outcome(fn: object, raw: bytes) -> object:
    try:
        return fn(raw)  # type: ignore[operator]
    except FrameError as err:
        return err.code


@settings(max_examples=300)
@given(
    st.one_of(
        frames.map(lambda f: _encode(f).rstrip(b"\r\n")),
        st.text(alphabet="$,=*.-_0123456789abcdefAFen", max_size=60).map(
            lambda s: ("$" + s).encode()
        ),
    ),
    st.data(),
)
def test_fast_path_agrees_with_field_by_field_path(raw: bytes, data: st.DataObject) -> None:
    from gateway.sources.serial.protocol import _slow

    if data.draw(st.booleans()) and raw:
        i = data.draw(st.integers(0, len(raw) - 1))
        raw = (
            raw[:i] + data.draw(st.sampled_from([b"1", b",", b"=", b"e999", b"nan"])) + raw[i + 1 :]
        )
    assert _outcome(parse_frame, raw) == _outcome(_slow, raw)
