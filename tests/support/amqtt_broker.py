"""Run the embedded amqtt broker on 127.0.0.1:PORT and print BROKER READY once listening."""

from __future__ import annotations

import asyncio
import signal
import sys

from hamlet.broker import EmbeddedBroker


async def _main(port: int) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with EmbeddedBroker("127.0.0.1", port):
        print("BROKER READY", flush=True)
        await stop.wait()


if __name__ == "__main__":
    asyncio.run(_main(int(sys.argv[1])))
