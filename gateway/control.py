"""Server side of the control socket: answers ``hamlet gateway status/tail``.

The protocol (messages, socket path, client) is ``gateway/control_protocol.py``.
A slow tail client loses lines (counted), it never slows the pipeline.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

from pydantic import BaseModel, ValidationError

from gateway import status
from gateway.control_protocol import MAX_REQUEST, ErrorReply, Request, TailLine, encode
from hamlet.tasks import stop_tasks

if TYPE_CHECKING:
    from gateway.app import Gateway

log = logging.getLogger(__name__)


class ControlServer:
    def __init__(self, gw: Gateway, path: Path) -> None:
        self._gw = gw
        self.path = path
        self._server: asyncio.Server | None = None
        self._clients: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> ControlServer:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()  # a stale socket from a killed gateway
        self._server = await asyncio.start_unix_server(
            self._handle, path=str(self.path), limit=MAX_REQUEST
        )
        os.chmod(self.path, 0o660)  # owner and group (installers in the hamlet group)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._server is not None:
            self._server.close()
            await stop_tasks(list(self._clients))
            await self._server.wait_closed()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._clients.add(task)
        try:
            await self._serve(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass  # the client went away: nothing to report
        finally:
            if task is not None:
                self._clients.discard(task)
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(10):
                line = await reader.readline()
            cmd = Request.model_validate_json(line).cmd
        except (ValidationError, ValueError, TimeoutError, asyncio.LimitOverrunError):
            cmd = None
        if cmd == "status":
            await _send(writer, await status.snapshot(self._gw))
        elif cmd == "tail":
            await self._tail(reader, writer)
        else:
            await _send(
                writer, ErrorReply(error='unknown request; send {"cmd": "status"} or "tail"')
            )

    async def _tail(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sub = self._gw.pipeline.subscribe()
        eof = asyncio.create_task(reader.read(1), name="tail-eof")
        try:
            while True:
                get = asyncio.create_task(sub.queue.get())
                done, _ = await asyncio.wait({get, eof}, return_when=asyncio.FIRST_COMPLETED)
                if eof in done:
                    get.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await get
                    return
                writer.write(encode(TailLine.model_validate(get.result())))
                await writer.drain()
        finally:
            self._gw.tail_dropped += sub.dropped
            self._gw.pipeline.unsubscribe(sub)
            eof.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await eof


async def _send(writer: asyncio.StreamWriter, msg: BaseModel) -> None:
    writer.write(encode(msg))
    await writer.drain()
