"""The modem driver against the simulated SIM7600 over a real pty: every AT error path."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import serial
from gsmmodem import pdu as independent
from pydantic import SecretStr

from firmware_sim.gsm_modem import GsmModemSim, ModemState
from hamlet.sms.errors import ModemUnavailable, NotRegistered, SendFailed, SimNotReady
from hamlet.sms.modem import (
    INVALID_INDEX,
    STO_SENT,
    STO_UNSENT,
    STORAGE_FULL,
    AsyncGsmModem,
    ModemConfig,
)

NUMBER = "+84912345678"
ALERT_VI = "Độ mặn 0,7‰ — vượt ngưỡng sầu riêng 0,5‰. Đóng cống, ngừng tưới."


@pytest.fixture
async def sim(tmp_path: Path) -> AsyncIterator[GsmModemSim]:
    async with GsmModemSim(tmp_path / "ttyUSB2", ModemState()) as s:
        yield s


def _config(sim: GsmModemSim, **kw: object) -> ModemConfig:
    return ModemConfig(port=str(sim.link), command_timeout_s=2.0, send_timeout_s=5.0, **kw)


async def _modem(sim: GsmModemSim, **kw: object) -> AsyncGsmModem:
    return AsyncGsmModem(_config(sim, **kw))


async def test_prepare_turns_echo_off_and_reports_signal(sim: GsmModemSim) -> None:
    async with await _modem(sim) as m:
        st = await m.prepare()
    assert (st.sim, st.registration, st.rssi, st.dbm) == ("READY", 1, 20, -73)
    assert sim.commands[:3] == ["AT", "ATE0", "AT+CMEE=1"]


async def test_single_gsm7_sms_in_pdu_mode(sim: GsmModemSim) -> None:
    async with await _modem(sim) as m:
        await m.prepare()
        refs = await m.send(NUMBER, "Salinity 0.7 ppt above durian threshold 0.5")
    assert refs == [1]
    (part,) = sim.sent
    assert (part.number, part.alphabet, part.mode, part.ref) == (NUMBER, "gsm7", "pdu", None)
    assert sim.messages() == [(NUMBER, "Salinity 0.7 ppt above durian threshold 0.5")]


async def test_vietnamese_multipart_ucs2(sim: GsmModemSim) -> None:
    text = ALERT_VI * 2  # 124 UTF-16 units: two UCS-2 parts
    async with await _modem(sim) as m:
        await m.prepare()
        refs = await m.send(NUMBER, text)
    assert len(refs) == 2
    assert [(p.alphabet, p.seq, p.total) for p in sim.sent] == [("ucs2", 1, 2), ("ucs2", 2, 2)]
    assert sim.sent[0].ref == sim.sent[1].ref
    assert sim.messages() == [(NUMBER, text)]


async def test_one_sms_sends_the_unaccented_form(sim: GsmModemSim) -> None:
    async with await _modem(sim) as m:
        await m.prepare()
        await m.send(NUMBER, ALERT_VI * 2, one_sms=True)
    (part,) = sim.sent
    assert part.alphabet == "gsm7"
    assert part.text.startswith("Do man 0,7 g/l - vuot nguong sau rieng 0,5 g/l. Dong cong")


async def test_text_mode_gsm_and_ucs2(sim: GsmModemSim) -> None:
    async with await _modem(sim, mode="text") as m:
        await m.prepare()
        await m.send(NUMBER, "Water level alarm II")
        await m.send(NUMBER, ALERT_VI)
    assert [(p.mode, p.alphabet, p.text) for p in sim.sent] == [
        ("text", "gsm7", "Water level alarm II"),
        ("text", "ucs2", ALERT_VI),
    ]
    assert 'AT+CSCS="UCS2"' in sim.commands


async def test_text_mode_refuses_a_multipart_message_before_sending(sim: GsmModemSim) -> None:
    async with await _modem(sim, mode="text") as m:
        await m.prepare()
        with pytest.raises(SendFailed) as err:
            await m.send(NUMBER, "x" * 200)
    assert err.value.code == 305
    assert sim.sent == []


async def test_sim_missing(sim: GsmModemSim) -> None:
    sim.state.sim = "missing"
    async with await _modem(sim) as m:
        with pytest.raises(SimNotReady) as err:
            await m.prepare()
    assert "+CME ERROR: 10" in str(err.value)
    assert "insert the SIM" in err.value.advice.en
    assert not err.value.retryable


async def test_sim_pin_entered_from_config(sim: GsmModemSim) -> None:
    sim.state.sim = "pin"
    async with await _modem(sim, pin=SecretStr("1234")) as m:
        st = await m.prepare()
    assert st.sim == "READY"
    assert 'AT+CPIN="1234"' in sim.commands


async def test_sim_pin_missing_from_config(sim: GsmModemSim) -> None:
    sim.state.sim = "pin"
    async with await _modem(sim) as m:
        with pytest.raises(SimNotReady) as err:
            await m.prepare()
    assert "PIN" in err.value.advice.en
    assert not any(c.startswith("AT+CPIN=") for c in sim.commands)


async def test_wrong_pin(sim: GsmModemSim) -> None:
    sim.state.sim = "pin"
    async with await _modem(sim, pin=SecretStr("0000")) as m:
        with pytest.raises(SimNotReady) as err:
            await m.prepare()
    assert "+CME ERROR: 16" in str(err.value)
    assert "Wrong SIM PIN" in err.value.advice.en


@pytest.mark.parametrize(("stat", "retryable"), [(2, True), (3, False), (0, True)])
async def test_not_registered(sim: GsmModemSim, stat: int, retryable: bool) -> None:
    sim.state.registration = stat
    async with await _modem(sim) as m:
        with pytest.raises(NotRegistered) as err:
            await m.prepare()
    assert err.value.retryable is retryable
    assert f"registration state {stat}" in str(err.value)


async def test_no_signal(sim: GsmModemSim) -> None:
    sim.state.rssi = 99
    async with await _modem(sim) as m:
        with pytest.raises(NotRegistered) as err:
            await m.prepare()
    assert "antenna" in err.value.advice.en


@pytest.mark.parametrize(
    ("code", "retryable", "says"),
    [(38, True, "out of order"), (500, True, "unknown"), (50, False, "top up")],
)
async def test_cms_errors_then_recovery(
    sim: GsmModemSim, code: int, retryable: bool, says: str
) -> None:
    sim.fail_next_sends(code)
    async with await _modem(sim) as m:
        await m.prepare()
        with pytest.raises(SendFailed) as err:
            await m.send(NUMBER, "test")
        assert (err.value.code, err.value.retryable) == (code, retryable)
        assert says in err.value.advice.en
        assert err.value.advice.vi
        assert sim.sent == []
        await m.send(NUMBER, "test")  # the fault was for one send only
    assert len(sim.sent) == 1


async def test_smsc_unknown(sim: GsmModemSim) -> None:
    sim.state.smsc = None
    async with await _modem(sim) as m:
        await m.prepare()
        with pytest.raises(SendFailed) as err:
            await m.send(NUMBER, "test")
    assert err.value.code == 330
    assert "AT+CSCA" in err.value.advice.en
    assert not err.value.retryable


async def test_network_lost_between_check_and_send(sim: GsmModemSim) -> None:
    async with await _modem(sim) as m:
        await m.prepare()
        sim.lose_network()
        with pytest.raises(SendFailed) as err:
            await m.send(NUMBER, "test")
        assert err.value.code == 331
        assert err.value.retryable
        with pytest.raises(NotRegistered):
            await m.check()
        sim.restore_network()
        await m.check()
        await m.send(NUMBER, "test")
    assert len(sim.sent) == 1


async def test_failure_in_the_second_part_says_how_many_went(sim: GsmModemSim) -> None:
    async with await _modem(sim) as m:
        await m.prepare()
        sim.fail_next_sends(42, after=1)
        with pytest.raises(SendFailed) as err:
            await m.send(NUMBER, "y" * 300)  # two parts: the first goes, the second fails
    assert (err.value.code, err.value.sent_parts) == (42, 1)
    assert [(p.seq, p.total) for p in sim.sent] == [(1, 2)]


async def test_modem_that_does_not_answer(sim: GsmModemSim) -> None:
    sim.state.responsive = False
    async with AsyncGsmModem(ModemConfig(port=str(sim.link), command_timeout_s=0.5)) as m:
        with pytest.raises(ModemUnavailable) as err:
            await m.prepare()
    assert "power and USB cable" in err.value.advice.en


async def test_port_that_does_not_exist(tmp_path: Path) -> None:
    with pytest.raises(ModemUnavailable) as err:
        async with AsyncGsmModem(ModemConfig(port=str(tmp_path / "nope"))):
            pass
    assert "cannot open" in str(err.value)


async def test_escape_cancels_a_send_and_bad_pdu_is_refused(sim: GsmModemSim) -> None:
    # Raw AT over the pty, as a person at a terminal would type it.
    good = independent.encodeSmsSubmitPdu(NUMBER, "hi")[0]

    def talk() -> list[bytes]:
        out = []
        with serial.Serial(str(sim.link), 115200, timeout=2) as ser:
            for cmd in (b"ATE0\r", b"AT+CMGF=0\r"):
                ser.write(cmd)
                out.append(ser.read_until(b"OK\r\n"))
            ser.write(f"AT+CMGS={good.tpduLength}\r".encode())
            out.append(ser.read_until(b"> "))
            ser.write(str(good).encode() + b"\x1b")  # ESC: cancel
            out.append(ser.read_until(b"OK\r\n"))
            ser.write(f"AT+CMGS={good.tpduLength + 1}\r".encode())  # wrong length
            out.append(ser.read_until(b"> "))
            ser.write(str(good).encode() + b"\x1a")
            out.append(ser.read_until(b"\r\n", size=64) + ser.read_until(b"\r\n", size=64))
        return out

    replies = await asyncio.to_thread(talk)
    assert replies[3].endswith(b"OK\r\n")
    assert b"+CMS ERROR: 304" in replies[5]
    assert sim.sent == []


async def test_inbox_reads_and_deletes_replies(sim: GsmModemSim) -> None:
    sim.receive("+84912345678", "STOP")
    sim.receive("0912345678", "Hủy")
    async with await _modem(sim) as m:
        await m.prepare()
        got = await m.inbox()
        assert [(i.index, i.sender, i.text) for i in got] == [
            (1, "+84912345678", "STOP"),
            (2, "0912345678", "Hủy"),
        ]
        await m.delete(1)
        assert [i.index for i in await m.inbox()] == [2]
    assert sim.deleted == [1]


def test_simulated_replies_decode_with_the_independent_decoder() -> None:
    from firmware_sim.sms_decode import encode_deliver

    for sender, text in [("+84912345678", "STOP"), ("0912345678", "Hủy đăng ký")]:
        d = independent.decodeSmsPdu(encode_deliver(sender, text))
        assert (d["number"], d["text"]) == (sender, text)


# -- sending through the modem's storage (AT+CMGW / CMSS / CMGR / CMGL / CMGD) ---------------
async def test_stored_message_goes_from_storage_and_says_so(sim: GsmModemSim) -> None:
    async with await _modem(sim) as m:
        await m.prepare()
        (index,) = await m.store(NUMBER, ALERT_VI)
        assert await m.stored_status(index) == STO_UNSENT
        assert await m.outgoing_stored() == [(index, STO_UNSENT)]
        assert sim.sent == []  # stored is not sent
        stored = independent.decodeSmsPdu(sim.stored[index].pdu)  # what a phone would read
        assert (stored["number"], stored["text"]) == (NUMBER, ALERT_VI)
        mr = await m.send_stored(index)
        assert await m.stored_status(index) == STO_SENT
        assert await m.outgoing_stored() == [(index, STO_SENT)]
        await m.delete(index)
        assert await m.stored_status(index) is None
        assert await m.outgoing_stored() == []
    assert sim.messages() == [(NUMBER, ALERT_VI)]
    assert [p.mr for p in sim.sent] == [mr]
    sms = [c.split("=")[0] for c in sim.commands if c.startswith(("AT+CMGW", "AT+CMSS"))]
    assert sms == ["AT+CMGW", "AT+CMSS"]


async def test_multipart_message_is_stored_one_index_per_part(sim: GsmModemSim) -> None:
    text = ALERT_VI * 3  # UCS-2, three parts
    async with await _modem(sim) as m:
        await m.prepare()
        indexes = await m.store(NUMBER, text)
        assert indexes == [1, 2, 3]
        for n, i in enumerate(indexes):
            await m.send_stored(i, n)
    assert sim.messages() == [(NUMBER, text)]
    assert [(p.seq, p.total) for p in sim.sent] == [(1, 3), (2, 3), (3, 3)]


async def test_storage_full_deletes_the_parts_already_stored(sim: GsmModemSim) -> None:
    sim.state.storage_slots = 2
    async with await _modem(sim) as m:
        await m.prepare()
        with pytest.raises(SendFailed) as err:
            await m.store(NUMBER, ALERT_VI * 3)  # three parts, room for two
        assert (err.value.code, err.value.retryable) == (STORAGE_FULL, True)
        assert "AT+CMGD" in err.value.advice.en
        assert err.value.advice.vi
        assert await m.outgoing_stored() == []  # nothing half-stored left behind
    assert sim.sent == []


async def test_empty_or_invalid_index_reads_as_gone(sim: GsmModemSim) -> None:
    async with await _modem(sim) as m:
        await m.prepare()
        assert await m.stored_status(5) is None  # in range, empty: the modem answers OK only
        assert await m.stored_status(999) is None  # out of range: +CMS ERROR: 321
        with pytest.raises(SendFailed) as err:
            await m.send_stored(5)
        assert err.value.code == INVALID_INDEX
    assert sim.sent == []


async def test_send_from_storage_that_fails_leaves_it_unsent(sim: GsmModemSim) -> None:
    async with await _modem(sim) as m:
        await m.prepare()
        (index,) = await m.store(NUMBER, "test")
        sim.fail_next_sends(42)
        with pytest.raises(SendFailed) as err:
            await m.send_stored(index)
        assert (err.value.code, err.value.retryable) == (42, True)
        assert await m.stored_status(index) == STO_UNSENT
        await m.send_stored(index)
    assert len(sim.sent) == 1


async def test_unanswered_send_from_storage_still_reads_as_sent(sim: GsmModemSim) -> None:
    sim.state.unanswered_sends = 1  # the answer is lost; the SMS goes
    config = ModemConfig(port=str(sim.link), command_timeout_s=2.0, send_timeout_s=0.5)
    async with AsyncGsmModem(config) as m:
        await m.prepare()
        (index,) = await m.store(NUMBER, "test")
        with pytest.raises(ModemUnavailable):
            await m.send_stored(index)
        assert await m.stored_status(index) == STO_SENT
    assert len(sim.sent) == 1


async def test_inbox_skips_our_own_stored_messages(sim: GsmModemSim) -> None:
    async with await _modem(sim) as m:
        await m.prepare()
        (index,) = await m.store(NUMBER, "test")
        sim.receive("+84912345678", "STOP")
        got = await m.inbox()
    assert [(i.index, i.text) for i in got] == [(index + 1, "STOP")]
