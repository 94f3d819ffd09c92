"""Device profiles: the built-in table, register decoding (Hypothesis), user TOML profiles."""

from __future__ import annotations

import math
import struct
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.profiles import (
    BUILTIN_PROFILES,
    Block,
    DecodeError,
    ProfileError,
    Register,
    decode_profile,
    decode_register,
    load_profiles_file,
    plan_blocks,
)
from gateway.sources.modbus.config import ModbusSourceConfig
from hamlet.metrics import METRICS


def test_builtin_profiles_use_canonical_metrics() -> None:
    assert {"soil-3in1", "soil-npk-7in1", "dfrobot-sen0604", "sensecap-s-ec-01", "s-yw-01b"} <= set(
        BUILTIN_PROFILES
    )
    for p in BUILTIN_PROFILES.values():
        for r in p.registers:
            assert r.metric in METRICS, (p.name, r.metric)
    assert BUILTIN_PROFILES["s-yw-01b"].default_address == 0x1A


def test_plan_blocks_merges_small_holes() -> None:
    regs = [Register("a", 0), Register("b", 2), Register("c", 4, "u32"), Register("d", 100)]
    assert plan_blocks(regs) == (Block("holding", 0, 6), Block("holding", 100, 1))
    regs2 = [Register("a", 0), Register("b", 1, function="input")]
    assert plan_blocks(regs2) == (Block("holding", 0, 1), Block("input", 1, 1))


@pytest.mark.parametrize(
    ("reg", "words", "want"),
    [
        (Register("t", 0, "s16", 0.1), [0xFFF6], -1.0),
        (Register("t", 0, "u16", 0.1), [0xFFF6], 6552.6),
        (Register("x", 0, "u32"), [0x0001, 0x0002], 65538),
        (Register("x", 0, "u32", word_order="little"), [0x0002, 0x0001], 65538),
        (Register("x", 0, "s32"), [0xFFFF, 0xFFFE], -2),
        (Register("x", 0, "f32"), list(struct.unpack(">HH", struct.pack(">f", 1.84))), 1.84),
    ],
)
def test_decode_register(reg: Register, words: list[int], want: float) -> None:
    assert decode_register(reg, words) == pytest.approx(want, rel=1e-6)


def test_nan_float_register_is_an_error() -> None:
    with pytest.raises(DecodeError) as exc:
        decode_register(Register("x", 0, "f32"), [0x7FC0, 0x0000])
    assert exc.value.code == "not_finite"


regs = st.builds(
    Register,
    metric=st.sampled_from(["a", "b", "c"]),
    address=st.integers(0, 20),
    type=st.sampled_from(["u16", "s16", "u32", "s32", "f32"]),
    scale=st.floats(0.001, 1000),
    word_order=st.sampled_from(["big", "little"]),
)


@settings(max_examples=300)
@given(reg=regs, words=st.lists(st.integers(-5, 70000), max_size=3))
def test_decode_never_crashes(reg: Register, words: list[int]) -> None:
    try:
        v: float | str = decode_register(reg, words)
    except DecodeError as err:
        v = err.code
    if isinstance(v, str):
        assert v in {"short_read", "bad_word", "not_finite"}
    else:
        assert math.isfinite(v)


@settings(max_examples=200)
@given(v=st.integers(-(2**31), 2**31 - 1), order=st.sampled_from(["big", "little"]))
def test_s32_roundtrip(v: int, order: str) -> None:
    hi, lo = struct.unpack(">HH", struct.pack(">i", v))
    words = [hi, lo] if order == "big" else [lo, hi]
    assert decode_register(Register("x", 0, "s32", word_order=order), words) == v  # type: ignore[arg-type]


def test_decode_profile_reports_unread_register() -> None:
    p = BUILTIN_PROFILES["soil-3in1"]
    with pytest.raises(DecodeError) as exc:
        decode_profile(p, {Block("holding", 0, 2): [1, 2]})
    assert exc.value.code == "short_read"


def test_user_toml_profiles(tmp_path: Path) -> None:
    f = tmp_path / "profiles.toml"
    f.write_text(
        """
[[profile]]
name = "canal-level-cm"
description = "level transmitter re-programmed to cm"
default_address = 3
[[profile.registers]]
metric = "water_level"
address = 4
type = "s16"
unit = "cm"
[[profile.registers]]
metric = "water_temp"
address = 6
type = "f32"
word_order = "little"
function = "input"
""",
        encoding="utf-8",
    )
    table = load_profiles_file(f)
    p = table["canal-level-cm"]
    assert p.registers[0] == Register("water_level", 4, "s16", unit="cm")
    assert plan_blocks(p.registers) == (Block("holding", 4, 1), Block("input", 6, 2))
    cfg = ModbusSourceConfig.model_validate(
        {
            "port": "/dev/null",
            "profiles_file": str(f),
            "devices": [{"id": "lvl-1", "profile": "canal-level-cm", "address": 3}],
        }
    )
    assert "canal-level-cm" in cfg.profile_table()


@pytest.mark.parametrize(
    ("text", "msg"),
    [
        ("[[profile]]\nname='x'\n", "registers"),
        (
            "[[profile]]\nname='x'\n[[profile.registers]]\nmetric='a'\naddress=0\ntype='u64'\n",
            "type",
        ),
        ("[[profile]]\nname='x'\n[[profile.registers]]\nmetric='a'\naddress=0\nscale=0\n", "scale"),
        (
            "[[profile]]\nname='x'\n[[profile.registers]]\nmetric='a'\naddress=0\n"
            "[[profile.registers]]\nmetric='a'\naddress=1\n",
            "twice",
        ),
        ("not toml [", "not valid TOML"),
    ],
)
def test_bad_profiles_say_what_is_wrong(tmp_path: Path, text: str, msg: str) -> None:
    f = tmp_path / "p.toml"
    f.write_text(text, encoding="utf-8")
    with pytest.raises(ProfileError) as exc:
        load_profiles_file(f)
    assert msg in str(exc.value)


def test_unknown_profile_is_a_config_error() -> None:
    with pytest.raises(ValueError, match="unknown profile 'npk9000'"):
        ModbusSourceConfig.model_validate(
            {"port": "/dev/null", "devices": [{"id": "s", "profile": "npk9000"}]}
        )
