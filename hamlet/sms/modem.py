"""A GSM modem driver over a serial port (pyserial): PIN, registration, signal, send.

Blocking I/O lives in :class:`GsmModem`; :class:`AsyncGsmModem` runs it in a worker thread
behind a lock (one command at a time on the wire) for the server's dispatcher and the gateway.
"""

from __future__ import annotations

import asyncio
import itertools
import re
import time
from dataclasses import dataclass
from types import TracebackType
from typing import Literal, Self

from pydantic import BaseModel, Field, SecretStr

from hamlet.sms import pdu
from hamlet.sms.errors import (
    CME,
    NO_ANSWER,
    REG_ADVICE,
    UNKNOWN,
    Advice,
    CommandFailed,
    ModemUnavailable,
    NotRegistered,
    SendFailed,
    SimNotReady,
)

_FINAL = re.compile(r"^(OK|ERROR|\+CME ERROR: ?(\d+)|\+CMS ERROR: ?(\d+))$")
STO_UNSENT, STO_SENT = 2, 3  # <stat> of a stored outgoing message (3GPP TS 27.005)
INVALID_INDEX, STORAGE_FULL = 321, 322  # +CMS ERROR codes of the storage commands
LOW_SIGNAL = Advice(
    True,
    "Signal too weak to send: move or raise the antenna; will retry.",
    "Sóng quá yếu để gửi: dời hoặc nâng ăng-ten; sẽ thử lại.",
)


class ModemConfig(BaseModel):
    """Where the modem is and how to talk to it."""

    port: str = Field(description="serial device, e.g. /dev/serial/by-id/usb-SimTech…-if02")
    baudrate: int = 115200
    pin: SecretStr | None = None
    mode: Literal["pdu", "text"] = "pdu"  # text mode cannot send multipart or UCS-2 long texts
    command_timeout_s: float = Field(default=5.0, gt=0)
    send_timeout_s: float = Field(default=60.0, gt=0)  # +CMGS can take tens of seconds
    min_rssi: int = Field(default=2, ge=0, le=31)  # +CSQ below this is "no usable signal"


@dataclass(frozen=True)
class ModemStatus:
    sim: str  # READY, SIM PIN, ...
    registration: int  # +CREG stat
    rssi: int  # +CSQ 0–31, 99 unknown

    @property
    def dbm(self) -> int | None:
        return None if self.rssi == 99 else -113 + 2 * self.rssi


class GsmModem:
    """One modem; not thread-safe (use :class:`AsyncGsmModem` from async code)."""

    def __init__(self, config: ModemConfig) -> None:
        self.config = config
        self._ser: object | None = None
        self._ref = 0

    # -- wire ---------------------------------------------------------------------------------
    def open(self) -> None:
        import serial  # pyserial: in the gateway and server extras

        try:
            self._ser = serial.Serial(self.config.port, self.config.baudrate, timeout=0.1)
        except (serial.SerialException, OSError) as err:
            raise ModemUnavailable(f"cannot open {self.config.port}", NO_ANSWER) from err

    def close(self) -> None:
        ser = self._ser
        self._ser = None
        if ser is not None:
            ser.close()  # type: ignore[attr-defined]

    def _io(self) -> object:
        if self._ser is None:
            raise ModemUnavailable(f"{self.config.port} is not open", NO_ANSWER)
        return self._ser

    def _write(self, data: bytes) -> None:
        import serial

        try:
            self._io().write(data)  # type: ignore[attr-defined]
        except (serial.SerialException, OSError) as err:
            raise ModemUnavailable(f"writing to {self.config.port} failed", NO_ANSWER) from err

    def _read_until(self, done: re.Pattern[str] | bytes, timeout: float, sent: str) -> list[str]:
        """Lines up to and including a final result (or the '> ' prompt when ``done`` is bytes);
        the echo of ``sent`` is dropped."""
        import serial

        deadline = time.monotonic() + timeout
        buf = b""
        lines: list[str] = []
        while time.monotonic() < deadline:
            try:
                ser = self._io()
                # One byte (or the 0.1 s timeout), then whatever else has arrived.
                chunk = ser.read(1)  # type: ignore[attr-defined]
                if chunk:
                    chunk += ser.read(ser.in_waiting)  # type: ignore[attr-defined]
            except (serial.SerialException, OSError) as err:
                raise ModemUnavailable(f"reading {self.config.port} failed", NO_ANSWER) from err
            buf += chunk
            if isinstance(done, bytes) and done in buf:
                return lines
            while b"\n" in buf:
                raw, buf = buf.split(b"\n", 1)
                line = raw.decode("latin-1").strip()
                if not line or line == sent:
                    continue
                lines.append(line)
                if isinstance(done, re.Pattern) and done.match(line):
                    return lines
        raise ModemUnavailable(f"no answer to {sent!r} within {timeout:g} s", NO_ANSWER)

    def command(self, cmd: str, timeout: float | None = None) -> list[str]:
        """Send ``cmd``; the information lines before OK. Raises on ERROR / +CME ERROR."""
        self._write(cmd.encode("ascii") + b"\r")
        lines = self._read_until(_FINAL, timeout or self.config.command_timeout_s, cmd)
        final = lines.pop()
        if final == "OK":
            return lines
        m = _FINAL.match(final)
        assert m is not None
        if m.group(2):
            code = int(m.group(2))
            advice = CME.get(code, UNKNOWN)
            exc = SimNotReady if code in (10, 11, 12, 13, 16) else CommandFailed
            raise exc(f"{cmd} answered {final}", advice)
        raise CommandFailed(f"{cmd} answered {final}")

    # -- checks -------------------------------------------------------------------------------
    def prepare(self) -> ModemStatus:
        """Wake the modem, turn echo off, unlock the SIM, and check registration and signal."""
        for _ in range(3):  # the first AT after power-up is often eaten by auto-baud
            try:
                self.command("AT", timeout=1.0)
                break
            except ModemUnavailable:
                continue
        else:
            raise ModemUnavailable(f"no answer on {self.config.port}", NO_ANSWER)
        self.command("ATE0")
        self.command("AT+CMEE=1")
        self._unlock()
        return self.check()

    def _unlock(self) -> None:
        sim = self._sim_state()
        if sim == "READY":
            return
        if sim == "SIM PIN":
            if self.config.pin is None:
                raise SimNotReady("the SIM asks for a PIN", CME[11])
            self.command(f'AT+CPIN="{self.config.pin.get_secret_value()}"')
            if self._sim_state() == "READY":
                return
        raise SimNotReady(f"SIM state {sim}", CME[12] if "PUK" in sim else CME[13])

    def _sim_state(self) -> str:
        for line in self.command("AT+CPIN?"):
            if line.startswith("+CPIN:"):
                return line.split(":", 1)[1].strip()
        raise CommandFailed("AT+CPIN? gave no state")

    def status(self) -> ModemStatus:
        sim = self._sim_state()
        reg = 0
        for cmd in ("AT+CREG?", "AT+CEREG?"):
            try:
                lines = self.command(cmd)
            except CommandFailed:
                continue  # a 2G-only modem has no CEREG
            for line in lines:
                if m := re.match(r"\+C(?:E)?REG: ?\d+,(\d+)", line):
                    reg = int(m.group(1))
            if reg in (1, 5):
                break
        rssi = 99
        for line in self.command("AT+CSQ"):
            if m := re.match(r"\+CSQ: ?(\d+),", line):
                rssi = int(m.group(1))
        return ModemStatus(sim=sim, registration=reg, rssi=rssi)

    def check(self) -> ModemStatus:
        """The status, raising when the modem cannot send now."""
        st = self.status()
        if st.sim != "READY":
            raise SimNotReady(f"SIM state {st.sim}", CME[11])
        if st.registration not in (1, 5):
            advice = REG_ADVICE.get(st.registration, REG_ADVICE[4])
            raise NotRegistered(f"registration state {st.registration}", advice)
        if st.rssi == 99 or st.rssi < self.config.min_rssi:
            raise NotRegistered(f"signal {st.rssi}/31", LOW_SIGNAL)
        return st

    # -- receiving ------------------------------------------------------------------------------
    def inbox(self) -> list[pdu.Incoming]:
        """Every SMS in the modem's storage (PDU mode); unreadable ones are skipped."""
        self.command("AT+CMGF=0")
        lines = self.command("AT+CMGL=4", timeout=self.config.send_timeout_s)
        out: list[pdu.Incoming] = []
        for head, body in itertools.pairwise(lines):
            m = re.match(r"\+CMGL: ?(\d+),(\d+),", head)
            if m is None or int(m.group(2)) in (STO_UNSENT, STO_SENT):
                continue  # our own outgoing messages (AT+CMGW) are not replies
            try:
                sender, text = pdu.decode_deliver(body)
            except pdu.PduError:
                continue  # e.g. a status report; left in storage for a person to look at
            out.append(pdu.Incoming(int(m.group(1)), sender, text))
        return out

    def delete(self, index: int) -> None:
        self.command(f"AT+CMGD={index}")

    # -- sending ------------------------------------------------------------------------------
    def _answered(self, lines: list[str], sent_parts: int) -> list[str]:
        """The information lines of an SMS command's answer; :class:`SendFailed` otherwise."""
        final = lines[-1]
        if m := re.match(r"\+CMS ERROR: ?(\d+)", final):
            raise SendFailed(int(m.group(1)), sent_parts)
        if final != "OK":
            raise SendFailed(500, sent_parts)
        return lines[:-1]

    def _prompted(self, cmd: str, body: bytes, sent_parts: int) -> list[str]:
        """``cmd``, then ``body`` after its '> ' prompt, ended by Ctrl-Z."""
        self._write(cmd.encode("ascii") + b"\r")
        self._read_until(b">", self.config.command_timeout_s, cmd)
        self._write(body + b"\x1a")
        return self._answered(self._read_until(_FINAL, self.config.send_timeout_s, ""), sent_parts)

    def _sms_command(self, cmd: str, sent_parts: int = 0) -> list[str]:
        self._write(cmd.encode("ascii") + b"\r")
        return self._answered(self._read_until(_FINAL, self.config.send_timeout_s, cmd), sent_parts)

    def _cmgs(self, arg: str, body: bytes, sent_parts: int) -> int:
        return _number(self._prompted(f"AT+CMGS={arg}", body, sent_parts), "+CMGS")

    def send(self, number: str, text: str, *, one_sms: bool = False) -> list[int]:
        """Send ``text`` to ``number``; the message reference of each part.

        ``one_sms`` sends the unaccented GSM-7 form when the text does not fit one SMS as is.
        Raises :class:`SendFailed` (with how many parts had gone) on ``+CMS ERROR``.
        """
        alphabet = None
        if one_sms:
            text, alphabet = pdu.for_one_sms(text)
        if self.config.mode == "text":
            return [self._send_text(number, text)]
        self._ref = (self._ref + 1) % 256
        parts = pdu.submit_pdus(number, text, alphabet, ref=self._ref)
        self.command("AT+CMGF=0")
        refs: list[int] = []
        for i, part in enumerate(parts):
            refs.append(self._cmgs(str(part.tpdu_len), part.pdu_hex.encode("ascii"), i))
        return refs

    # -- sending through the modem's storage ---------------------------------------------------
    # The stored message is the durable record: the modem marks it STO SENT once it has gone,
    # whether or not the host lives to read the answer (SIM800/SIM7600, 3GPP TS 27.005 §3.5).
    def store(self, number: str, text: str, *, one_sms: bool = False) -> list[int]:
        """Write each part to storage as STO UNSENT (PDU mode): their indexes, in order.

        Parts already stored are deleted again when a later one fails (e.g. ``+CMS ERROR: 322``,
        storage full).
        """
        alphabet = None
        if one_sms:
            text, alphabet = pdu.for_one_sms(text)
        self._ref = (self._ref + 1) % 256
        parts = pdu.submit_pdus(number, text, alphabet, ref=self._ref)
        self.command("AT+CMGF=0")
        indexes: list[int] = []
        try:
            for part in parts:
                cmd = f"AT+CMGW={part.tpdu_len},{STO_UNSENT}"
                indexes.append(_number(self._prompted(cmd, part.pdu_hex.encode("ascii"), 0),
                                       "+CMGW"))  # fmt: skip
        except SendFailed:
            for i in indexes:
                self.delete(i)
            raise
        return indexes

    def send_stored(self, index: int, sent_parts: int = 0) -> int:
        """``AT+CMSS``: send the stored message at ``index``; its message reference."""
        return _number(self._sms_command(f"AT+CMSS={index}", sent_parts), "+CMSS")

    def stored_status(self, index: int) -> int | None:
        """``AT+CMGR``: the status of the message at ``index`` (2 STO UNSENT, 3 STO SENT…), or
        None when the index is empty or out of range (the modem lost or never had it)."""
        self.command("AT+CMGF=0")
        try:
            lines = self._sms_command(f"AT+CMGR={index}")
        except SendFailed as err:
            if err.code == INVALID_INDEX:
                return None
            raise
        for line in lines:
            if m := re.match(r"\+CMGR: ?(\d+),", line):
                return int(m.group(1))
        return None

    def outgoing_stored(self) -> list[tuple[int, int]]:
        """(index, status) of every outgoing message in storage (STO UNSENT or STO SENT)."""
        self.command("AT+CMGF=0")
        out = []
        for line in self.command("AT+CMGL=4", timeout=self.config.send_timeout_s):
            m = re.match(r"\+CMGL: ?(\d+),(\d+),", line)
            if m is not None and int(m.group(2)) in (STO_UNSENT, STO_SENT):
                out.append((int(m.group(1)), int(m.group(2))))
        return out

    def _send_text(self, number: str, text: str) -> int:
        """Text mode: one SMS, GSM charset when it fits, else UCS2 hex (AT+CSCS="UCS2")."""
        alphabet = pdu.choose_alphabet(text)
        if len(pdu.split(text, alphabet)) > 1:
            raise SendFailed(305)  # text mode has no concatenation header
        pdu.encode_number(number)  # validates
        self.command("AT+CMGF=1")
        if alphabet is pdu.Alphabet.GSM7 and text.isascii():
            self.command('AT+CSCS="GSM"')
            return self._cmgs(f'"{number}"', text.encode("ascii"), 0)
        self.command('AT+CSCS="UCS2"')
        hex_number = number.encode("utf-16-be").hex().upper()
        return self._cmgs(f'"{hex_number}"', text.encode("utf-16-be").hex().upper().encode(), 0)


def _number(lines: list[str], head: str) -> int:
    """The number after ``head`` (``+CMGS: 7`` → 7); -1 when the modem did not say."""
    for line in lines:
        if m := re.match(re.escape(head) + r": ?(\d+)", line):
            return int(m.group(1))
    return -1


class AsyncGsmModem:
    """The driver for async code: opened and prepared on enter, one operation at a time."""

    def __init__(self, config: ModemConfig) -> None:
        self.config = config
        self._modem = GsmModem(config)
        self._lock = asyncio.Lock()
        self.status: ModemStatus | None = None

    async def __aenter__(self) -> Self:
        await asyncio.to_thread(self._modem.open)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        async with self._lock:
            await asyncio.to_thread(self._modem.close)

    async def prepare(self) -> ModemStatus:
        async with self._lock:
            self.status = await asyncio.to_thread(self._modem.prepare)
            return self.status

    async def check(self) -> ModemStatus:
        async with self._lock:
            self.status = await asyncio.to_thread(self._modem.check)
            return self.status

    async def send(self, number: str, text: str, *, one_sms: bool = False) -> list[int]:
        async with self._lock:
            return await asyncio.to_thread(self._modem.send, number, text, one_sms=one_sms)

    async def inbox(self) -> list[pdu.Incoming]:
        async with self._lock:
            return await asyncio.to_thread(self._modem.inbox)

    async def delete(self, index: int) -> None:
        async with self._lock:
            await asyncio.to_thread(self._modem.delete, index)

    async def store(self, number: str, text: str, *, one_sms: bool = False) -> list[int]:
        async with self._lock:
            return await asyncio.to_thread(self._modem.store, number, text, one_sms=one_sms)

    async def send_stored(self, index: int, sent_parts: int = 0) -> int:
        async with self._lock:
            return await asyncio.to_thread(self._modem.send_stored, index, sent_parts)

    async def stored_status(self, index: int) -> int | None:
        async with self._lock:
            return await asyncio.to_thread(self._modem.stored_status, index)

    async def outgoing_stored(self) -> list[tuple[int, int]]:
        async with self._lock:
            return await asyncio.to_thread(self._modem.outgoing_stored)
