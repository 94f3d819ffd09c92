"""What the running app holds: config, store, limiters, metrics. Built in the lifespan."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Histogram

from hamlet.contract import IngestResult, UplinkBatch
from server.clientaddr import Network
from server.config import ServerConfig
from server.ratelimit import LoginThrottle, TokenBucket
from server.registry import GatewayRow
from server.registry_access import RegistryAccess
from server.store.base import Store


@dataclass
class Metrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)
    requests: Counter = field(init=False)
    records: Counter = field(init=False)
    ingest_seconds: Histogram = field(init=False)

    def __post_init__(self) -> None:
        r = self.registry
        self.requests = Counter(
            "hamlet_ingest_requests", "Ingest requests by HTTP status", ["status"], registry=r
        )
        self.records = Counter(
            "hamlet_ingest_records", "Ingested records by outcome", ["outcome"], registry=r
        )
        self.ingest_seconds = Histogram(
            "hamlet_ingest_seconds",
            "Time to settle one ingest batch",
            registry=r,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        )


SettledHook = Callable[[GatewayRow, UplinkBatch, IngestResult, int], Awaitable[None]]
# (natural alert id, who) after a person acknowledged an alert.
AckHook = Callable[[str, str], Awaitable[object]]


@dataclass
class AppState:
    config: ServerConfig
    store: Store
    ingest_limiter: TokenBucket
    login_throttle: LoginThrottle
    metrics: Metrics
    trusted_proxies: list[Network] = field(default_factory=list)
    # Called after a batch is settled (stored), off nothing the gateway waits on but the call.
    on_settled: list[SettledHook] = field(default_factory=list)
    # Called after an alert is acknowledged: escalation to staff stops for it.
    on_alert_acked: list[AckHook] = field(default_factory=list)

    @property
    def registry(self) -> RegistryAccess:
        """The registry, people and audit log as typed calls (over ``store.db``)."""
        return RegistryAccess(self.store.db)
