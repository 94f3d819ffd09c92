"""Run the server under uvicorn on a socket we bind ourselves (so ``--port 0`` works and the
chosen port can be announced), with graceful SIGTERM handling from uvicorn."""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import sys
from pathlib import Path
from types import FrameType
from typing import Any

from pydantic import SecretStr

from server.config import ServerConfig
from server.http_guard import ConnLimits, GuardedConfig, fd_budget

log = logging.getLogger("hamlet.server")


def _reveal(value: Any) -> Any:
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    if isinstance(value, dict):
        return {k: _reveal(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_reveal(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


def config_json(config: ServerConfig) -> str:
    return json.dumps(_reveal(config.model_dump(mode="python")))


def bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def announce(sock: socket.socket) -> None:
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    print(f"listening on http://{shown}:{port}", flush=True)


def conn_limits(config: ServerConfig) -> ConnLimits:
    h = config.http
    budget = fd_budget()
    return ConnLimits(
        max_connections=min(h.max_connections or budget, budget),
        max_head_bytes=h.max_head_bytes,
        max_headers=h.max_headers,
        header_timeout_s=h.header_timeout_s,
        body_timeout_s=h.body_timeout_s,
    )


def run(config: ServerConfig) -> None:
    import uvicorn

    from server.app import CONFIG_ENV, create_app
    from server.store.schema import open_db

    config.data_dir.mkdir(parents=True, exist_ok=True)
    # Create or upgrade the schema once, before any worker or admin command races for it.
    open_db(config.ledger_path, busy_timeout_ms=config.store.sqlite.busy_timeout_ms).close()
    sock = bind(config.http.host, config.http.port)
    common: dict[str, Any] = {
        "log_config": None,  # our logging setup, not uvicorn's
        "access_log": False,
        "timeout_graceful_shutdown": config.http.graceful_timeout_s,
        "lifespan": "on",
        "server_header": False,
        "proxy_headers": False,
        "timeout_keep_alive": config.http.keep_alive_s,
        "conn_limits": conn_limits(config),
    }
    if config.http.workers == 1:

        class _Server(uvicorn.Server):
            async def startup(self, sockets: list[socket.socket] | None = None) -> None:
                await super().startup(sockets)
                if not self.should_exit:
                    announce(sock)

            def handle_exit(self, sig: int, frame: FrameType | None) -> None:
                super().handle_exit(sig, frame)
                # uvicorn re-raises the signal after shutting down; a SIGTERM that we
                # handled gracefully should end with exit status 0, not "killed".
                if sig == signal.SIGTERM:
                    self._captured_signals = [s for s in self._captured_signals if s != sig]

        ucfg = GuardedConfig(create_app(config), **common)
        single = _Server(ucfg)
        single.run(sockets=[sock])
        if not single.started:
            sys.exit(1)
        return

    from uvicorn.supervisors import Multiprocess

    os.environ[CONFIG_ENV] = config_json(config)
    ucfg = GuardedConfig(
        "server.app:app_from_env", factory=True, workers=config.http.workers, **common
    )
    # The socket listens already: connections queue until a worker accepts them.
    announce(sock)
    Multiprocess(ucfg, sockets=[sock]).run()
