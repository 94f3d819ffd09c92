"""A GSM modem (SIM800/SIM7600 class) on a pty: the AT command set the SMS driver uses.

It answers AT, ATE0/1, AT+CMEE, AT+CPIN?/=, AT+CREG?/CEREG?, AT+CSQ, AT+CMGF, AT+CSCS, AT+CSCA?
and AT+CMGS in text and PDU mode (Ctrl-Z sends, ESC cancels), and keeps messages in storage
like a SIM does: AT+CMGW (PDU mode, stored "STO UNSENT"), AT+CMSS (sends one, which becomes
"STO SENT" whether or not the host reads the answer), AT+CMGR, AT+CMGL and AT+CMGD.
Every error path is a fault a test or the demo sets: SIM missing or locked, not registered /
denied, no signal, an SMSC unknown, any ``+CMS ERROR`` for the next N sends, storage full, or a
modem that does not answer at all.

What it "sent" is recorded part by part, decoded by :mod:`firmware_sim.sms_decode` — its own
decoder, not the driver's encoder — so a test sees what a phone would show.
"""

from __future__ import annotations

import asyncio
import os
import re
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Literal, Self

from firmware_sim.ptylink import _Pty
from firmware_sim.sms_decode import DecodedSubmit, SmsDecodeError, decode_submit, encode_deliver

SimState = Literal["ready", "pin", "puk", "missing"]
CTRL_Z, ESC = 0x1A, 0x1B
_MAX_LINE = 1024  # a real modem's command buffer is about this; longer lines are junk
_MAX_PROMPT = 4096  # text/PDU bytes accepted after '>' before the modem gives up


@dataclass
class SentPart:
    """One SMS as the network took it."""

    number: str
    text: str
    alphabet: str  # "gsm7" | "ucs2"
    mode: Literal["pdu", "text"]
    ref: int | None = None  # concatenation reference, None for a single SMS
    seq: int = 1
    total: int = 1
    mr: int = 0  # the message reference the modem answered with


@dataclass
class ModemState:
    """What a test changes to drive each path (read on every command)."""

    sim: SimState = "ready"
    pin: str = "1234"
    puk_after: int = 3  # wrong PINs before the SIM asks for its PUK
    registration: int = 1  # +CREG stat: 0 not searching, 1 home, 2 searching, 3 denied, 5 roaming
    rssi: int = 20  # +CSQ 0–31, 99 unknown
    smsc: str | None = "+84980200030"  # None: no SMSC on the SIM (sends fail +CMS ERROR: 330)
    responsive: bool = True  # False: powered off / wrong baud — says nothing
    # What the next sends answer, in order: a +CMS code, or None for a send that goes through.
    send_errors: deque[int | None] = field(default_factory=deque)
    # The next N sends reach the network but their +CMGS answer never comes back (the host
    # died, or the USB link dropped, between the send and the answer).
    unanswered_sends: int = 0
    # The next N AT+CMSS hang: nothing goes, no answer comes (the message stays STO UNSENT).
    stalled_sends: int = 0
    storage_slots: int = 30  # a SIM's SMS storage; full: +CMS ERROR: 322


STO_UNSENT, STO_SENT = 2, 3


@dataclass
class Stored:
    """An outgoing message in the modem's storage (AT+CMGW)."""

    stat: int
    pdu: str
    tpdu_len: int


class GsmModemSim:
    """The modem at ``link`` (a symlink to a pty slave, like /dev/ttyUSB2)."""

    def __init__(
        self,
        link: str | Path,
        state: ModemState | None = None,
        notice: Callable[[str], None] | None = None,
    ) -> None:
        self.link = Path(link)
        self._notice = notice or (lambda _text: None)  # injected faults, as they happen
        self.state = state or ModemState()
        self.sent: list[SentPart] = []
        self.commands: list[str] = []  # every command line received, for tests to inspect
        self._pty: _Pty | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._buf = bytearray()
        self._echo = True
        self._cmgf = 0
        self._cscs = "GSM"
        self._wrong_pins = 0
        self._prompt: tuple[Literal["pdu", "text", "store"], str | int] | None = None
        self._mr = 0
        self._store_stat = STO_UNSENT
        self._sent_event = asyncio.Event()
        self.inbox: dict[int, str] = {}  # storage index -> SMS-DELIVER PDU hex
        self.stored: dict[int, Stored] = {}  # storage index -> outgoing message (same space)
        self.deleted: list[int] = []

    # -- fault injection ------------------------------------------------------------------
    def fail_next_sends(self, code: int, count: int = 1, after: int = 0) -> None:
        """After ``after`` good sends, the next ``count`` answer ``+CMS ERROR: code``."""
        self.state.send_errors.extend([None] * after + [code] * count)

    def lose_network(self) -> None:
        self.state.registration, self.state.rssi = 2, 99

    def restore_network(self) -> None:
        self.state.registration, self.state.rssi = 1, 20

    def receive(self, sender: str, text: str) -> int:
        """A phone sends the modem an SMS: stored, and announced with +CMTI."""
        index = self._free_index()
        if index is None:
            return 0  # storage full: a real modem drops it (the phone's sender sees it fail)
        self.inbox[index] = encode_deliver(sender, text)
        self._write(f'\r\n+CMTI: "SM",{index}\r\n')
        return index

    def _free_index(self) -> int | None:
        """The lowest free storage index, as a SIM gives (a deleted index is reused)."""
        used = self.inbox.keys() | self.stored.keys()
        return next((i for i in range(1, self.state.storage_slots + 1) if i not in used), None)

    # -- what was sent -------------------------------------------------------------------
    def messages(self) -> list[tuple[str, str]]:
        """(number, full text) of each complete message, parts joined by reference."""
        out: list[tuple[str, str]] = []
        groups: dict[tuple[str, int], dict[int, SentPart]] = {}
        for p in self.sent:
            if p.ref is None:
                out.append((p.number, p.text))
                continue
            g = groups.setdefault((p.number, p.ref), {})
            g[p.seq] = p
            if len(g) == p.total:
                out.append((p.number, "".join(g[i].text for i in sorted(g))))
                del groups[(p.number, p.ref)]
        return out

    async def wait_sent(self, parts: int, timeout: float = 30.0) -> list[SentPart]:
        """Wait until at least ``parts`` SMS parts have been sent."""
        async with asyncio.timeout(timeout):
            while len(self.sent) < parts:
                await self._sent_event.wait()
                self._sent_event.clear()
        return list(self.sent)

    # -- lifecycle --------------------------------------------------------------------------
    async def __aenter__(self) -> Self:
        self._loop = asyncio.get_running_loop()
        self._pty = _Pty(self.link)
        self._loop.add_reader(self._pty.master, self._on_readable)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._pty is not None and self._loop is not None:
            self._loop.remove_reader(self._pty.master)
            self._pty.close()
            self._pty = None

    # -- the serial line --------------------------------------------------------------------
    def _write(self, text: str) -> None:
        if self._pty is not None:
            try:
                os.write(self._pty.master, text.encode("latin-1", "replace"))
            except (BlockingIOError, OSError):
                self._pty.flush_input()

    def _final(self, *lines: str) -> None:
        self._write("".join(f"\r\n{line}\r\n" for line in lines))

    def _on_readable(self) -> None:
        assert self._pty is not None
        try:
            data = os.read(self._pty.master, 4096)
        except (BlockingIOError, InterruptedError, OSError):
            return
        if not self.state.responsive:
            return
        for b in data:
            self._on_byte(b)

    def _on_byte(self, b: int) -> None:
        if self._prompt is not None:
            if b in (CTRL_Z, ESC):
                body = self._buf.decode("latin-1")
                self._buf.clear()
                prompt, self._prompt = self._prompt, None
                if self._echo:
                    self._write(body)
                if b == ESC:
                    self._final("OK")  # cancelled: nothing sent
                elif prompt[0] == "store":
                    assert isinstance(prompt[1], int)
                    self._finish_store(prompt[1], body)
                else:
                    self._finish_send(prompt, body)
            elif len(self._buf) < _MAX_PROMPT:
                self._buf.append(b)
            return
        if b == 0x0D:
            line = self._buf.decode("latin-1").strip()
            self._buf.clear()
            if self._echo:
                self._write(line + "\r")
            if line:
                self.commands.append(line)
                self._command(line)
        elif b != 0x0A and len(self._buf) < _MAX_LINE:
            self._buf.append(b)

    # -- commands -----------------------------------------------------------------------------
    def _command(self, line: str) -> None:
        up = line.upper()
        st = self.state
        if not up.startswith("AT"):
            self._final("ERROR")
            return
        cmd = up[2:]
        if cmd == "":
            self._final("OK")
        elif cmd in ("E0", "E1"):
            self._echo = cmd == "E1"
            self._final("OK")
        elif cmd.startswith("+CMEE="):
            self._final("OK")
        elif cmd in ("I", "+CGMM"):
            self._final("SIMCOM_SIM7600G-H (simulated)", "OK")
        elif cmd == "+CPIN?":
            if st.sim == "missing":
                self._final("+CME ERROR: 10")
            else:
                shown = {"ready": "READY", "pin": "SIM PIN", "puk": "SIM PUK"}[st.sim]
                self._final(f"+CPIN: {shown}", "OK")
        elif cmd.startswith("+CPIN="):
            self._enter_pin(line[len("AT+CPIN=") :].strip().strip('"'))
        elif cmd in ("+CREG?", "+CEREG?", "+CGREG?"):
            stat = st.registration if st.sim == "ready" else 0
            self._final(f"{cmd[:-1]}: 0,{stat}", "OK")
        elif cmd == "+CSQ":
            self._final(f"+CSQ: {st.rssi if st.sim == 'ready' else 99},99", "OK")
        elif cmd in ("+CMGF=0", "+CMGF=1"):
            self._cmgf = int(cmd[-1])
            self._final("OK")
        elif cmd == "+CMGF?":
            self._final(f"+CMGF: {self._cmgf}", "OK")
        elif m := re.fullmatch(r'\+CSCS="(GSM|UCS2|IRA)"', cmd):
            self._cscs = m.group(1)
            self._final("OK")
        elif cmd == "+CSCA?":
            if st.smsc is None:
                self._final('+CSCA: "",129', "OK")
            else:
                self._final(f'+CSCA: "{st.smsc}",145', "OK")
        elif cmd in ("+CMGL=4", '+CMGL="ALL"'):
            lines = []
            for i in sorted(self.inbox.keys() | self.stored.keys()):
                stat, p = self._at(i)
                lines += [f"+CMGL: {i},{stat},,{len(p) // 2 - 1}", p]
            self._final(*lines, "OK")
        elif m := re.fullmatch(r"\+CMGD=(\d+)", cmd):
            self.deleted.append(int(m.group(1)))
            self.inbox.pop(int(m.group(1)), None)
            self.stored.pop(int(m.group(1)), None)
            self._final("OK")
        elif m := re.fullmatch(r"\+CMGR=(\d+)", cmd):
            self._read(int(m.group(1)))
        elif cmd.startswith("+CMGS="):
            self._start_send(line[len("AT+CMGS=") :])
        elif m := re.fullmatch(r"\+CMGW=(\d+)(?:,(\d))?", cmd):
            self._start_store(int(m.group(1)), int(m.group(2) or STO_UNSENT))
        elif m := re.fullmatch(r"\+CMSS=(\d+)", cmd):
            self._send_stored(int(m.group(1)))
        else:
            self._final("ERROR")

    def _at(self, index: int) -> tuple[int, str]:
        """(stat, PDU hex) of a stored message; received ones are "REC READ" (1)."""
        if index in self.stored:
            return self.stored[index].stat, self.stored[index].pdu
        return 1, self.inbox[index]

    def _read(self, index: int) -> None:
        if not 1 <= index <= self.state.storage_slots:
            self._final("+CMS ERROR: 321")  # invalid memory index
        elif index not in self.inbox and index not in self.stored:
            self._final("OK")  # an empty index: SIM800/SIM7600 answer nothing but OK
        else:
            stat, p = self._at(index)
            self._final(f"+CMGR: {stat},,{len(p) // 2 - 1}", p, "OK")

    def _start_store(self, tpdu_len: int, stat: int) -> None:
        if self._cmgf != 0 or stat not in (STO_UNSENT, STO_SENT) or not 7 <= tpdu_len <= 164:
            self._final("+CMS ERROR: 304")  # only PDU mode, outgoing statuses, here
            return
        self._prompt, self._store_stat = ("store", tpdu_len), stat
        self._write("\r\n> ")

    def _finish_store(self, tpdu_len: int, body: str) -> None:
        stat = self._store_stat
        try:
            decode_submit(body.strip(), tpdu_len=tpdu_len)
        except SmsDecodeError:
            self._final("+CMS ERROR: 304")
            return
        index = self._free_index()
        if index is None:
            self._final("+CMS ERROR: 322")  # memory full
            return
        self.stored[index] = Stored(stat, body.strip(), tpdu_len)
        self._final(f"+CMGW: {index}", "OK")

    def _send_stored(self, index: int) -> None:
        msg = self.stored.get(index)
        if msg is None:
            self._final("+CMS ERROR: 321")  # invalid memory index
            return
        if self.state.stalled_sends > 0:
            self.state.stalled_sends -= 1
            self._notice(f"stalled send from storage {index}")
            return
        sms = decode_submit(msg.pdu, tpdu_len=msg.tpdu_len)  # checked when it was stored
        mr = self._transmit(sms, "pdu")
        if mr is None:
            return
        msg.stat = STO_SENT  # before the answer: the host may never read it
        self._answer(f"+CMSS: {mr}")

    def _enter_pin(self, pin: str) -> None:
        st = self.state
        if st.sim == "missing":
            self._final("+CME ERROR: 10")
        elif st.sim != "pin":
            self._final("+CME ERROR: 3")  # operation not allowed: no PIN is asked for
        elif pin == st.pin:
            st.sim, self._wrong_pins = "ready", 0
            self._final("OK", "+CPIN: READY")
        else:
            self._wrong_pins += 1
            if self._wrong_pins >= st.puk_after:
                st.sim = "puk"
            self._final("+CME ERROR: 16")  # incorrect password

    def _start_send(self, arg: str) -> None:
        arg = arg.strip()
        if self._cmgf == 0:
            if not arg.isdigit() or not 7 <= int(arg) <= 164:
                self._final("+CMS ERROR: 304")  # invalid PDU mode parameter
                return
            self._prompt = ("pdu", int(arg))
        else:
            m = re.fullmatch(r'"([^"]+)"(?:,\d+)?', arg)
            if m is None:
                self._final("+CMS ERROR: 305")  # invalid text mode parameter
                return
            number = m.group(1)
            if self._cscs == "UCS2":
                try:
                    number = bytes.fromhex(number).decode("utf-16-be")
                except ValueError:
                    self._final("+CMS ERROR: 305")
                    return
            self._prompt = ("text", number)
        self._write("\r\n> ")

    def _send_error(self) -> int | None:
        st = self.state
        if st.sim == "missing":
            return 310
        if st.sim != "ready":
            return 311 if st.sim == "pin" else 316
        if st.registration not in (1, 5):
            return 331  # no network service
        if st.smsc is None:
            return 330  # SMSC address unknown
        if st.send_errors:
            return st.send_errors.popleft()
        return None

    def _finish_send(
        self, prompt: tuple[Literal["pdu", "text", "store"], str | int], body: str
    ) -> None:
        mode, arg = prompt
        assert mode != "store"
        try:
            if mode == "pdu":
                assert isinstance(arg, int)
                sms = decode_submit(body.strip(), tpdu_len=arg)
            else:
                assert isinstance(arg, str)
                sms = self._text_mode(arg, body)
        except SmsDecodeError:
            self._final("+CMS ERROR: 304" if mode == "pdu" else "+CMS ERROR: 305")
            return
        mr = self._transmit(sms, mode)
        if mr is not None:
            self._answer(f"+CMGS: {mr}")

    def _transmit(self, sms: DecodedSubmit, mode: Literal["pdu", "text"]) -> int | None:
        """The network takes the part (recorded; its message reference), or the +CMS ERROR is
        answered (None)."""
        code = self._send_error()
        if code is not None:
            self._final(f"+CMS ERROR: {code}")
            return None
        self._mr = (self._mr + 1) % 256
        self.sent.append(
            SentPart(
                number=sms.number,
                text=sms.text,
                alphabet=sms.alphabet,
                mode=mode,
                ref=sms.ref,
                seq=sms.seq,
                total=sms.total,
                mr=self._mr,
            )
        )
        self._sent_event.set()
        return self._mr

    def _answer(self, info: str) -> None:
        """The answer to a send that went, unless the link is to lose it."""
        if self.state.unanswered_sends > 0:
            self.state.unanswered_sends -= 1
            return
        self._final(info, "OK")

    def _text_mode(self, number: str, body: str) -> DecodedSubmit:
        if self._cscs == "UCS2":
            try:
                text = bytes.fromhex(body.strip()).decode("utf-16-be")
            except ValueError as err:
                raise SmsDecodeError("text mode UCS2 body is not UTF-16 hex") from err
            return DecodedSubmit(number=number, text=text, alphabet="ucs2")
        return DecodedSubmit(number=number, text=body, alphabet="gsm7")
