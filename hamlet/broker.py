"""The embedded MQTT broker (amqtt) for `hamlet demo` and for machines without Mosquitto.

A Pi in the field runs Mosquitto; this exists so the demo and tests need nothing but Python.
"""

from __future__ import annotations

import logging
from types import TracebackType
from typing import Any, Self


class EmbeddedBroker:
    """Async context manager: an amqtt broker listening on ``host:port`` while open."""

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self._broker: Any = None

    async def __aenter__(self) -> Self:
        from amqtt.broker import Broker  # the demo extra; imported only when used

        # amqtt logs every connection at INFO; that drowns the demo's status line.
        for name in ("amqtt", "transitions"):
            logging.getLogger(name).setLevel(logging.WARNING)
        config = {
            "listeners": {"default": {"type": "tcp", "bind": f"{self.host}:{self.port}"}},
            "plugins": {
                "amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}
            },
        }
        self._broker = Broker(config)
        await self._broker.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._broker is not None:
            await self._broker.shutdown()
