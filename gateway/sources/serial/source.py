"""The serial line-protocol source: a LoRa/UART concentrator or DIY node on a USB adapter.

The port is opened non-blocking with pyserial (termios set-up) and read with
``loop.add_reader``: no thread, no polling. When the adapter vanishes (EIO/EOF, or the
by-id path is gone) the source closes, reports ``reconnecting`` and tries to reopen the same
path with capped, jittered backoff, so unplugging and replugging a USB adapter just works.
"""

from __future__ import annotations

import asyncio
import logging
import os
import select
import time
from dataclasses import replace
from typing import Final

import serial

from gateway.buffer.identity import receipt_key, receipts_for
from gateway.records import Reading, Record, Sink
from gateway.sources.base import SourceState, SourceStatus
from gateway.sources.seqtrack import SeqOutcome, SeqTracker
from gateway.sources.serial.config import SerialSourceConfig
from gateway.sources.serial.handoff import Handoff
from gateway.sources.serial.protocol import Frame, FrameError, LineSplitter, parse_frame
from hamlet.backoff import Backoff

log = logging.getLogger(__name__)

_MAX_NODES: Final = 1000  # per-node detail kept in state (bounded against id noise)
# Consecutive empty reads with the fd still "readable" before we call the port dead.
_MAX_EMPTY_READS: Final = 1000
# A CRC failure whose node never sent a valid frame is counted here, not as a node: the
# name in a corrupted frame may itself be corrupted, and would fill `status` with ghosts.
UNKNOWN_NODE_CRC: Final = "crc_failures_unknown_node"
_CRC_CODES: Final = frozenset({"crc_mismatch", "bad_crc_format", "no_crc"})


class PortLost(Exception):
    """The serial device went away (unplugged adapter, closed pty)."""


class SerialSource:
    def __init__(self, cfg: SerialSourceConfig) -> None:
        self.cfg = cfg
        self.name = cfg.name
        self.state = SourceState(cfg.name, "serial")
        self._seq = SeqTracker(max_devices=_MAX_NODES * 5)
        self._last_frame: dict[str, tuple[int, int]] = {}  # node -> (seq, hash of line)
        # Dead letters for noise and overlong lines, per code: (window start, count).
        self._limited: dict[str, tuple[float, int]] = {}

    async def run(self, sink: Sink) -> None:
        backoff = Backoff(self.cfg.backoff_initial_s, self.cfg.backoff_max_s)
        try:
            async with Handoff(sink, self.state) as handoff:
                await self._run(sink, handoff, backoff)
        finally:
            self.state.set_status(SourceStatus.STOPPED)

    async def _run(self, sink: Sink, handoff: Handoff, backoff: Backoff) -> None:
        while True:
            try:
                port = serial.Serial(self.cfg.port, self.cfg.baudrate, timeout=0, exclusive=True)
            except (serial.SerialException, OSError, ValueError) as err:
                self._reconnecting(f"cannot open {self.cfg.port}: {err}")
                await asyncio.sleep(backoff.next_delay())
                continue
            log.info("%s: reading %s at %d baud", self.name, self.cfg.port, self.cfg.baudrate)
            self.state.set_status(SourceStatus.RUNNING)
            backoff.reset()
            try:
                await self._read_port(port, sink, handoff)
            except PortLost as err:
                self.state.count("port_lost")
                self._reconnecting(f"{self.cfg.port} went away: {err}")
            finally:
                port.close()
            await asyncio.sleep(backoff.next_delay())

    def _reconnecting(self, error: str) -> None:
        if self.state.status != SourceStatus.RECONNECTING:
            log.warning("%s: %s; retrying with backoff", self.name, error)
        self.state.set_status(SourceStatus.RECONNECTING, error)

    async def _read_port(self, port: serial.Serial, sink: Sink, handoff: Handoff) -> None:
        loop = asyncio.get_running_loop()
        fd = port.fileno()
        ready = asyncio.Event()
        splitter = LineSplitter()
        empty = 0
        loop.add_reader(fd, ready.set)
        try:
            while True:
                await ready.wait()
                ready.clear()
                try:
                    chunk = os.read(fd, self.cfg.read_chunk)
                except BlockingIOError:
                    continue
                except OSError as err:  # EIO when the adapter or pty is gone
                    raise PortLost(err.strerror or str(err)) from err
                if not chunk:
                    # A tty in non-blocking raw mode (VMIN=0) also reads b"" with nothing
                    # waiting, so an empty read alone is not a hang-up: ask the fd.
                    empty += 1
                    self._check_alive(fd, empty)
                    continue
                empty = 0
                self.state.count("bytes", len(chunk))
                records = self._lines(splitter.feed(chunk), sink)
                if splitter.too_long:
                    self._too_long(splitter, sink)
                if records:
                    await handoff.submit(records)
        finally:
            loop.remove_reader(fd)

    def _check_alive(self, fd: int, empty_reads: int) -> None:
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        for _, mask in poller.poll(0):
            if mask & (select.POLLHUP | select.POLLERR | select.POLLNVAL):
                raise PortLost("hang-up")
        if not os.path.exists(self.cfg.port):
            raise PortLost("device path vanished")
        if empty_reads > _MAX_EMPTY_READS:
            raise PortLost("device reports data ready but returns none")

    def _lines(self, lines: list[tuple[bytes, bytes]], sink: Sink) -> list[Record]:
        records: list[Record] = []
        for candidate, noise in lines:
            if noise:
                self.state.count("noise_bytes", len(noise))
                if b"$" in noise:
                    # A frame start abandoned mid-way (node reset, radio cut) then a new one.
                    self.state.count("truncated")
                    sink.reject(self.name, "truncated: frame cut short by a new '$'", noise)
                elif not candidate:
                    self._noise(noise, sink)
            if not candidate:
                continue
            try:
                frame = parse_frame(candidate)
            except FrameError as err:
                self._bad_frame(err, candidate, sink)
                continue
            fingerprint = (frame.seq, hash(candidate))
            if self._last_frame.get(frame.node) == fingerprint:
                # The same frame twice (radio retransmission): keep one.
                self.state.count("duplicates_dropped")
                continue
            if frame.node not in self._last_frame and len(self._last_frame) >= _MAX_NODES * 5:
                self._last_frame.pop(next(iter(self._last_frame)))
            self._last_frame[frame.node] = fingerprint
            records.extend(self._frame_records(frame))
        return records

    def _noise(self, noise: bytes, sink: Sink) -> None:
        self.state.count("noise_lines")
        self._reject_limited(sink, "no_start: line without a '$' frame start (noise)", noise)

    def _too_long(self, splitter: LineSplitter, sink: Sink) -> None:
        for line in splitter.too_long:
            self.state.count("overlong")
            self.state.count("too_long")
            self._reject_limited(sink, line.reason, line.sample)
        splitter.too_long.clear()

    def _reject_limited(self, sink: Sink, reason: str, raw: bytes) -> None:
        """Dead-letter at most ``noise_dead_letters_per_min`` a minute per code (always
        counted): a noisy radio must not push real CRC failures out of the bounded store."""
        code = reason.split(":", 1)[0]
        start, n = self._limited.get(code, (0.0, 0))
        now = time.monotonic()
        if now - start >= 60:
            start, n = now, 0
        if n < self.cfg.noise_dead_letters_per_min:
            sink.reject(self.name, reason, raw)
            n += 1
        self._limited[code] = (start, n)

    def _bad_frame(self, err: FrameError, line: bytes, sink: Sink) -> None:
        self.state.count("bad_frames")
        self.state.count(err.code)
        if err.code in _CRC_CODES:
            # Only a node that has sent a valid frame exists in `status`.
            node = self.state.devices.get(err.node) if err.node is not None else None
            if node is not None:
                node["crc_failures"] = int(node.get("crc_failures") or 0) + 1
            else:
                self.state.count(UNKNOWN_NODE_CRC)
        sink.reject(self.name, str(err), line)

    def _node(self, node: str) -> dict[str, int | float | str | None] | None:
        st = self.state.devices.get(node)
        if st is None:
            if len(self.state.devices) >= _MAX_NODES:
                self.state.count("nodes_untracked")
                return None
            st = {"frames": 0, "crc_failures": 0, "gaps": 0, "lost": 0, "resets": 0}
            self.state.devices[node] = st
        return st

    def _frame_records(self, frame: Frame) -> list[Record]:
        self.state.count("frames")
        node = self._node(frame.node)
        outcome, lost = self._seq.observe(frame.node, frame.seq)
        if node is not None:
            node["frames"] = int(node.get("frames") or 0) + 1
            node["last_seq"] = frame.seq
            node["last_seen"] = time.time()
            if outcome is SeqOutcome.GAP:
                node["gaps"] = int(node.get("gaps") or 0) + 1
                node["lost"] = int(node.get("lost") or 0) + lost
            elif outcome is SeqOutcome.RESET:
                node["resets"] = int(node.get("resets") or 0) + 1
        if outcome is SeqOutcome.GAP:
            self.state.count("seq_gaps")
            self.state.count("seq_lost", lost)
        elif outcome is SeqOutcome.RESET:
            self.state.count("seq_resets")
        elif outcome is SeqOutcome.REPEAT:
            self.state.count("seq_repeats")
        t_ms = None if frame.time is None else round(frame.time * 1000)
        recs: list[Record] = [
            Reading(frame.node, k, v, device_time_ms=t_ms, source=self.name)
            for k, v in frame.readings
        ]
        # Node id + node seq (+ the frame, so a rebooted node's new seq 1 is new): a radio
        # retransmission is recognised by the buffer, also across a gateway restart.
        key = receipt_key(self.name, frame.node, frame.seq, repr((frame.time, frame.readings)))
        receipts = receipts_for(key, len(recs), check=True)
        return [replace(r, receipt=rc) for r, rc in zip(recs, receipts, strict=True)]
