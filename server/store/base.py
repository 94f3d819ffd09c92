"""The one interface both series backends implement (SQLite and InfluxDB 2.x).

Lifecycle promise: a store is an async context manager; after ``__aenter__`` returns it
answers; ``__aexit__`` finishes every write already accepted, then closes. ``ingest``
returns only once every new record in the batch is durably stored (SQLite commit, or an
InfluxDB write that returned success followed by the ledger commit).
"""

from __future__ import annotations

from types import TracebackType
from typing import Protocol, Self

from hamlet.contract import GatewayAccounting, IngestResult, UplinkBatch
from server.indicators.source import AboveRow, HourRow, Levels
from server.models import DeviceOut, EventOut, LatestValue, Resolution, SeriesResult
from server.registry import GatewayRow
from server.store.db import Database


class StoreError(Exception):
    """The store could not complete an operation (the gateway should retry later)."""


class Store(Protocol):
    db: Database
    """The SQL database for registry, people and the dedup ledger (always SQLite)."""

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None: ...

    async def ingest(self, gateway: GatewayRow, batch: UplinkBatch, now_ms: int) -> IngestResult:
        """Dedup, validate and durably store one batch from an authenticated gateway."""
        ...

    async def series(
        self,
        hamlet: str,
        device: str,
        metric: str,
        *,
        start: int,
        end: int,
        resolution: Resolution = Resolution.AUTO,
        limit: int = 10_000,
    ) -> SeriesResult: ...

    async def events(
        self,
        hamlet: str,
        *,
        start: int,
        end: int,
        device: str | None = None,
        name: str | None = None,
        limit: int = 10_000,
    ) -> list[EventOut]:
        """Events of a hamlet in [start, end), oldest first (always kept in SQLite)."""
        ...

    async def latest(self, hamlets: list[str] | None) -> list[LatestValue]:
        """Latest value of every series in these hamlets (None = all)."""
        ...

    async def devices(self, hamlets: list[str] | None) -> list[DeviceOut]:
        """Registered devices plus unconfirmed ones that sent data."""
        ...

    async def accounting(self, gateways: list[GatewayRow]) -> list[GatewayAccounting]: ...

    async def hourly_rollups(
        self,
        hamlets: list[str],
        metrics: list[str],
        *,
        start: int,
        end: int,
        flat_only: bool = False,
    ) -> list[HourRow]:
        """Hourly rollups (n, mean, min, max) of these metrics in [start, end), any order;
        ``flat_only``: only hours whose value never changed (min == max, n > 1)."""
        ...

    async def hours_above(
        self, metric: str, levels: Levels, *, start: int, end: int, strict: bool
    ) -> list[AboveRow]:
        """Per device and local day: hours whose hourly mean of ``metric`` is above
        (``strict``) or at/above each of the device's ``levels``, and hours with data."""
        ...

    async def ping(self) -> None:
        """Raise if the store cannot answer."""
        ...
