"""The MQTT source: a persistent QoS1 session on the hamlet's broker, acked after commit.

paho-mqtt runs its network loop on its own thread (``loop_start``); messages cross into
asyncio with ``call_soon_threadsafe``. The consumer drains what is queued (up to
``batch_max``), hands the decoded records to ``sink.submit`` in one call and only then sends
the PUBACKs (paho ``manual_ack``). A crash before that leaves the messages un-acked in the
broker's session for the fixed client id, and they are redelivered when we come back.

Flow control: the broker keeps at most ``max_inflight_messages`` un-acked QoS1 messages
in flight to us (Mosquitto's default is 20), so the queue of QoS1 messages is bounded by the
broker; only QoS0 input can overflow ``queue_max``, and that is dropped and counted.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from dataclasses import dataclass, replace
from typing import Any, Final

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode

from gateway.buffer.identity import receipt_key, receipts_for
from gateway.records import Record, Sink
from gateway.sources.base import SourceState, SourceStatus
from gateway.sources.mqtt.config import MqttSourceConfig
from gateway.sources.mqtt.decode import Decoded, PayloadError, decode
from gateway.sources.seqtrack import SeqOutcome, SeqTracker
from hamlet.backoff import Backoff

log = logging.getLogger(__name__)

# Keep this much of a rejected payload for inspection; the rest says nothing more.
_RAW_KEEP: Final = 2048
# A connection that lived this long was healthy: the next failure starts backoff afresh.
_HEALTHY_AFTER_S: Final = 10.0
_MAX_DEVICES: Final = 2000  # per-device detail kept in state (bounded against id floods)
_MAX_ATTEMPTS: Final = 2  # a message whose processing failed this often is dead-lettered
# Batches committing at once. Above the buffer's commit_max_waiters, so the consumer never
# waits out a whole window with the broker's in-flight window still open.
MAX_INFLIGHT_SUBMITS: Final = 512


class _Client(mqtt.Client):
    """paho's client whose network thread sleeps until traffic, not for at most a second.

    ``loop_start`` runs ``loop_forever(timeout=1.0)``: a ``select`` that times out every
    second only to check the keepalive, the gateway's one wake-up when a hamlet is quiet
    (bench/gateway_sd_writes.py, wake-ups by thread). Anything to send (an ack, a publish,
    ``disconnect``) wakes the thread through paho's socket pair, and incoming traffic
    through the socket, so only the keepalive waits for the timeout: a quarter of it keeps
    the PINGREQ well inside the interval the broker allows (1.5 keepalives).
    """

    def __init__(self, *args: Any, tick_s: float, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._tick_s = tick_s

    def loop_forever(
        self, timeout: float = 1.0, retry_first_connection: bool = False
    ) -> MQTTErrorCode:
        return super().loop_forever(max(timeout, self._tick_s), retry_first_connection)


class SourceFailed(Exception):
    """Processing a message failed for a reason of ours; the supervisor restarts the source."""


@dataclass(frozen=True, slots=True)
class _Msg:
    topic: str
    payload: bytes
    qos: int
    mid: int
    retain: bool
    dup: bool
    generation: int  # which connection delivered it: acks go back on that one only


class MqttSource:
    """``[[sources.mqtt]]``: see the module docstring and gateway/sources/mqtt/README.md."""

    def __init__(self, cfg: MqttSourceConfig) -> None:
        self.cfg = cfg
        self.name = cfg.name
        self.state = SourceState(cfg.name, "mqtt")
        self._seq = SeqTracker(max_devices=_MAX_DEVICES * 5)
        self._generation = 0
        self._stopping = False
        # Receipt key -> times processing it raised (a bug, not bad input): the second time,
        # the message is dead-lettered and acked, so a redelivered poison cannot wedge us.
        self._failures: dict[int, int] = {}

    # ------------------------------------------------------------------ lifecycle

    async def run(self, sink: Sink) -> None:
        self._stopping = False
        loop = asyncio.get_running_loop()
        inbox: asyncio.Queue[_Msg] = asyncio.Queue()
        lost = asyncio.Event()
        client = _Client(
            CallbackAPIVersion.VERSION2,
            client_id=self.cfg.client_id,
            clean_session=False,
            protocol=mqtt.MQTTv311,
            manual_ack=True,
            reconnect_on_failure=False,  # we reconnect ourselves, with jitter
            tick_s=self.cfg.keepalive_s / 4,
        )
        client.connect_timeout = self.cfg.connect_timeout_s
        if self.cfg.username is not None:
            pw = self.cfg.password.get_secret_value() if self.cfg.password else None
            client.username_pw_set(self.cfg.username, pw)

        def enqueue(msg: _Msg) -> None:  # runs on the event loop
            if msg.qos == 0 and inbox.qsize() >= self.cfg.queue_max:
                self.state.count("dropped_qos0_overflow")
                return
            inbox.put_nowait(msg)

        # paho's thread appends here and wakes the loop once per burst, not once per
        # message: each call_soon_threadsafe is a self-pipe write and a loop wake-up.
        pending: deque[_Msg] = deque()
        wake_scheduled = [False]

        def drain_pending() -> None:  # runs on the event loop
            wake_scheduled[0] = False  # before draining: a later append schedules anew
            while pending:
                enqueue(pending.popleft())

        def on_message(_c: mqtt.Client, _u: Any, m: mqtt.MQTTMessage) -> None:
            pending.append(
                _Msg(m.topic, bytes(m.payload), m.qos, m.mid, m.retain, bool(m.dup), gen)
            )
            if not wake_scheduled[0]:
                wake_scheduled[0] = True
                loop.call_soon_threadsafe(drain_pending)

        def on_connect(c: mqtt.Client, _u: Any, flags: mqtt.ConnectFlags, rc: Any, _p: Any) -> None:
            if rc.is_failure:
                loop.call_soon_threadsafe(self._refused, str(rc))
                return
            # The persistent session remembers our subscriptions; re-subscribing would make
            # the broker replay every retained status. Subscribe when the session is new,
            # and once per process start in case the configured topics changed.
            if not flags.session_present or gen == 1:
                subs: list[tuple[str, int]] = [(t, self.cfg.qos) for t in self.cfg.subscriptions()]
                c.subscribe(subs)  # RUNNING once the broker acknowledges (on_subscribe)
            else:
                loop.call_soon_threadsafe(self._connected)

        def on_subscribe(_c: mqtt.Client, _u: Any, _mid: int, rcs: Any, _p: Any) -> None:
            bad = [str(rc) for rc in rcs if rc.is_failure]
            if bad:
                loop.call_soon_threadsafe(self._refused, f"subscription refused: {', '.join(bad)}")
                return
            loop.call_soon_threadsafe(self._connected)

        def on_disconnect(_c: mqtt.Client, _u: Any, _f: Any, rc: Any, _p: Any) -> None:
            loop.call_soon_threadsafe(self._lost, lost, str(rc))

        client.on_message = on_message
        client.on_connect = on_connect
        client.on_disconnect = on_disconnect
        client.on_subscribe = on_subscribe

        gen = 0
        backoff = Backoff(self.cfg.backoff_initial_s, self.cfg.backoff_max_s)
        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self._consume(inbox, sink, client), name=f"{self.name}-consume")
                while True:
                    self._generation = gen = gen + 1
                    lost.clear()
                    try:
                        await asyncio.to_thread(
                            client.connect, self.cfg.host, self.cfg.port, self.cfg.keepalive_s
                        )
                    except (OSError, mqtt.WebsocketConnectionError) as err:
                        self._reconnecting(f"cannot reach broker {self._where()}: {err}")
                        await asyncio.sleep(backoff.next_delay())
                        continue
                    client.loop_start()
                    started = time.monotonic()
                    try:
                        await lost.wait()
                    except asyncio.CancelledError:
                        # Stopping: wake paho's thread, asleep for up to a quarter of the
                        # keepalive, or loop_stop would wait that long to join it.
                        self._stopping = True
                        client.disconnect()
                        raise
                    finally:
                        await asyncio.to_thread(client.loop_stop)
                    if time.monotonic() - started > _HEALTHY_AFTER_S:
                        backoff.reset()
                    self.state.count("reconnects")
                    await asyncio.sleep(backoff.next_delay())
        finally:
            self._stopping = True
            client.disconnect()
            await asyncio.to_thread(client.loop_stop)
            self.state.set_status(SourceStatus.STOPPED)

    def _where(self) -> str:
        return f"{self.cfg.host}:{self.cfg.port}"

    def _reconnecting(self, error: str) -> None:
        if self.state.status != SourceStatus.RECONNECTING:
            log.warning("%s: %s; reconnecting with backoff", self.name, error)
        self.state.set_status(SourceStatus.RECONNECTING, error)

    def _connected(self) -> None:
        log.info("%s: connected to broker %s", self.name, self._where())
        self.state.set_status(SourceStatus.RUNNING)

    def _refused(self, reason: str) -> None:
        self._reconnecting(f"broker {self._where()} refused the connection: {reason}")

    def _lost(self, lost: asyncio.Event, reason: str) -> None:
        if not lost.is_set() and not self._stopping:
            self._reconnecting(f"disconnected from broker {self._where()}: {reason}")
        lost.set()

    # ------------------------------------------------------------------ consuming

    async def _consume(self, inbox: asyncio.Queue[_Msg], sink: Sink, client: mqtt.Client) -> None:
        # Each batch is submitted as soon as it is decoded, in its own task, so the buffer
        # gathers every message of a durability window into one group commit; the acks go
        # out in arrival order, each batch's after its own commit (see _ack_in_order).
        # Awaiting each commit before reading on made the first message after a commit
        # open a window alone: two commits a window, and what arrived meanwhile waited up
        # to a second window for its ack (bench/gateway_sd_writes.py).
        slots = asyncio.Semaphore(MAX_INFLIGHT_SUBMITS)
        acks: asyncio.Queue[tuple[asyncio.Task[None], list[_Msg]]] = asyncio.Queue()
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self._ack_in_order(acks, client), name=f"{self.name}-ack")
            while True:
                batch = [await inbox.get()]
                while len(batch) < self.cfg.batch_max and not inbox.empty():
                    batch.append(inbox.get_nowait())
                records: list[Record] = []
                for msg in batch:
                    try:
                        records.extend(self._decode(msg, sink))
                    except Exception as err:
                        # Not bad input (_decode dead-letters that) but a fault of ours on
                        # it. The first time: fail the source, nothing acked, the broker
                        # redelivers. The second time: dead-letter it and go on (a poison
                        # message).
                        if not self._failed(msg, err, sink):
                            raise SourceFailed(f"processing a message on {msg.topic!r}") from err
                await slots.acquire()  # back-pressure: the broker's in-flight window fills
                task = tg.create_task(self._submit(sink, records, slots))
                acks.put_nowait((task, batch))

    async def _submit(self, sink: Sink, records: list[Record], slots: asyncio.Semaphore) -> None:
        try:
            # Also with no records: the batch's dead letters are committed before its
            # acks, so a bad message is never acknowledged and then lost with a power cut.
            await sink.submit(records)
        finally:
            slots.release()
        if records:
            self.state.last_reading_at = time.time()
            self.state.count("records", len(records))

    async def _ack_in_order(
        self, acks: asyncio.Queue[tuple[asyncio.Task[None], list[_Msg]]], client: mqtt.Client
    ) -> None:
        """PUBACK each batch once its records are committed, in the order the broker sent
        them (MQTT 3.1.1 §4.6). A failed submit fails the source here: nothing after it
        is acknowledged, and the broker redelivers it all."""
        while True:
            task, batch = await acks.get()
            await task
            # Committed (or dead-lettered): now the broker may forget them.
            acked = 0
            for msg in batch:
                if msg.qos == 0:
                    continue
                if msg.generation != self._generation:
                    # Its connection is gone; the broker redelivers it on the new one.
                    self.state.count("acks_skipped_stale")
                    continue
                client.ack(msg.mid, msg.qos)
                acked += 1
            if acked:
                self.state.count("acked", acked)

    def receive(
        self, topic: str, payload: bytes, sink: Sink, *, dup: bool = False, retain: bool = False
    ) -> list[Record]:
        """The records one message becomes (bad input is dead-lettered on ``sink``).

        What ``run`` does with each message before submitting; public so the whole path
        (this source, the pipeline, the buffer) can be property-tested without a broker.
        """
        return self._decode(_Msg(topic, payload, 1, 0, retain, dup, self._generation), sink)

    def _decode(self, msg: _Msg, sink: Sink) -> list[Record]:
        self.state.count("messages")
        if msg.dup:
            self.state.count("redelivered")
        try:
            dec = decode(self.cfg, msg.topic, msg.payload, retained=msg.retain)
        except PayloadError as err:
            self.state.count("rejected")
            sink.reject(
                self.name, str(err), f"{msg.topic[:200]} ".encode() + msg.payload[:_RAW_KEEP]
            )
            return []
        self._track(dec)
        records = dec.records  # in the device's units: the pipeline normalizes
        # What was received, so the buffer recognises a redelivered copy after any restart
        # (see docs/store-and-forward.md). A message with its own seq or time is unique, so
        # a match is a copy; a bare one may repeat legitimately: only a DUP is checked.
        check = msg.dup or dec.seq is not None or any(r.device_time_ms is not None for r in records)
        receipts = receipts_for(self._receipt_key(msg), len(records), check=check)
        return [replace(r, receipt=rc) for r, rc in zip(records, receipts, strict=True)]

    def _receipt_key(self, msg: _Msg) -> int:
        return receipt_key(self.name, msg.topic, msg.payload)

    def _failed(self, msg: _Msg, err: Exception, sink: Sink) -> bool:
        """Count a failure to process ``msg``; True when it failed before (dead-letter it)."""
        key = self._receipt_key(msg)
        n = self._failures.get(key, 0) + 1
        if n < _MAX_ATTEMPTS:
            if len(self._failures) >= _MAX_DEVICES:
                self._failures.pop(next(iter(self._failures)))
            self._failures[key] = n
            return False
        self._failures.pop(key, None)
        self.state.count("failed_twice")
        sink.reject(
            self.name,
            f"failed_twice: processing raised {type(err).__name__}: {err}",
            f"{msg.topic[:200]} ".encode() + msg.payload[:_RAW_KEEP],
        )
        return True

    def _track(self, dec: Decoded) -> None:
        dev = self.state.devices.get(dec.device)
        if dev is None:
            if len(self.state.devices) >= _MAX_DEVICES:
                self.state.count("devices_untracked")
                return
            dev = self.state.devices[dec.device] = {
                "messages": 0,
                "gaps": 0,
                "lost": 0,
                "resets": 0,
            }
        dev["messages"] = int(dev.get("messages") or 0) + 1
        dev["last_seen"] = time.time()
        if dec.status is not None:
            dev["status"] = dec.status
        if dec.seq is None:
            return
        outcome, n_lost = self._seq.observe(dec.device, dec.seq)
        dev["last_seq"] = dec.seq
        if outcome is SeqOutcome.GAP:
            dev["gaps"] = int(dev.get("gaps") or 0) + 1
            dev["lost"] = int(dev.get("lost") or 0) + n_lost
            self.state.count("seq_gaps")
            self.state.count("seq_lost", n_lost)
        elif outcome is SeqOutcome.RESET:
            dev["resets"] = int(dev.get("resets") or 0) + 1
            self.state.count("seq_resets")
        elif outcome is SeqOutcome.REPEAT:
            self.state.count("seq_repeats")
