"""Helpers for the store-and-forward tests: real SQLite files in tmp dirs."""

from __future__ import annotations

import contextlib
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gateway.buffer import NewRecord
from gateway.buffer.config import BufferConfig
from gateway.buffer.salvage import read_only
from gateway.buffer.schema import DB_NAME
from hamlet.contract import RecordKind, TimeQuality

if TYPE_CHECKING:
    from gateway.config import GatewayConfig


def reading(
    device: str = "wl-1",
    metric: str = "water_level",
    value: float = 1.25,
    kind: RecordKind = RecordKind.READING,
    wall_ms: int | None = None,
    tq: int = int(TimeQuality.SYNCED),
) -> NewRecord:
    return NewRecord(
        kind=kind,
        device=device,
        metric=metric,
        value=value,
        wall_ms=wall_ms if wall_ms is not None else time.time_ns() // 1_000_000,
        tq=tq,
        mono_ns=time.monotonic_ns(),
    )


def buffer_config(**kw: int) -> BufferConfig:
    base = {"commit_interval_ms": 20, "commit_max_records": 5000}
    base.update(kw)
    return BufferConfig.model_validate(base)


BUFFER_FILES = ("buffer.db", "buffer.db-wal", "buffer.db-shm", "buffer.db-journal")


def file_sizes(data_dir: Path) -> dict[str, int]:
    out: dict[str, int] = {}
    for name in BUFFER_FILES:
        try:
            out[name] = (data_dir / name).stat().st_size
        except FileNotFoundError:
            out[name] = 0
    return out


@contextlib.contextmanager
def closed_buffer(data_dir: Path) -> Iterator[sqlite3.Connection]:
    """The buffer file in ``data_dir``, read-only, after its DurableBuffer closed (while open
    the store holds the file exclusively, and the buffer does not expose its store)."""
    with read_only(data_dir / DB_NAME) as con:
        yield con


def db_files(data_dir: Path) -> int:
    """Everything the buffer keeps on disk, measured on the files themselves."""
    return sum(file_sizes(data_dir).values())


def gateway_config(
    data_dir: Path, url: str, token: str, gw_id: str = "gw-test", **uplink: object
) -> GatewayConfig:
    from gateway.config import GatewayConfig

    return GatewayConfig.model_validate(
        {
            "id": gw_id,
            "data_dir": str(data_dir),
            "heartbeat_interval_s": 3600,
            "buffer": {"commit_interval_ms": 20},
            "uplink": {
                "url": url,
                "token": token,
                "backoff_base_s": 0.05,
                "backoff_cap_s": 0.5,
                **uplink,
            },
            "clock": {"sync": "always"},
        }
    )


def accounting_for(url: str, gw_id: str) -> dict[str, Any]:
    import httpx

    resp = httpx.get(f"{url}/api/v1/gateways", timeout=10)
    resp.raise_for_status()
    for g in resp.json():
        if g["id"] == gw_id:
            return dict(g)
    raise AssertionError(f"gateway {gw_id} not in {resp.text[:500]}")


class FileWatch:
    """Samples the buffer's files from another thread, as often as it can, while running.

    It opens no SQLite connection (a reader would hold checkpoints back and change what it
    measures); ``os.stat`` only.
    """

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.peak = 0
        self.peaks: dict[str, int] = dict.fromkeys(BUFFER_FILES, 0)
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="file-watch", daemon=True)

    def __enter__(self) -> FileWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def sample(self) -> int:
        sizes = file_sizes(self.data_dir)
        size = sum(sizes.values())
        self.peak = max(self.peak, size)
        for name, n in sizes.items():
            self.peaks[name] = max(self.peaks[name], n)
        self.samples += 1
        return size

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            # Yield the GIL briefly: the sampler must not starve the buffer it measures.
            self._stop.wait(0.0005)
