"""Server configuration: one pydantic model tree, loaded by :func:`hamlet.config.load_config`.

Environment overrides use the ``HAMLET_SERVER`` prefix, e.g.
``HAMLET_SERVER__ENVIRONMENT=development`` or ``HAMLET_SERVER__AUTH__SECRET_KEY=...``.
Outside development, secrets have no default: a production server refuses to start
without them rather than run with a guessable key.
"""

from __future__ import annotations

import ipaddress
from enum import StrEnum
from pathlib import Path
from typing import Final, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from hamlet.alertrules import AlertSettings, Override, Station
from hamlet.config import ConfigError, load_config
from server.indicators.config import IndicatorsConfig
from server.notify.config import NotifyConfig

ENV_PREFIX: Final = "HAMLET_SERVER"
# Only ever used when environment == development; a production start refuses it.
DEV_SECRET: Final = "development-only-secret-do-not-use-in-production"  # noqa: S105


class Environment(StrEnum):
    DEVELOPMENT = "development"
    PRODUCTION = "production"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class HttpConfig(_Section):
    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, v: list[str]) -> list[str]:
        for item in v:
            try:
                ipaddress.ip_network(item.strip(), strict=False)
            except ValueError as err:
                raise ValueError(f"{item!r} is not an IP address or network") from err
        return v

    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    workers: int = Field(1, ge=1, le=64)
    # Seconds to let in-flight requests finish on SIGTERM.
    graceful_timeout_s: int = Field(10, ge=1)
    # Bounds on every request, enforced before it is parsed or its caller identified
    # (ingest has its own, larger body limits under [ingest]).
    max_body_bytes: int = Field(64 * 1024, ge=1024, description="request body, except ingest")
    max_head_bytes: int = Field(16 * 1024, ge=1024, description="request line + all headers")
    max_headers: int = Field(64, ge=8, description="header lines per request")
    # A request's head must arrive within this many seconds of its first byte (or of the
    # connection opening): a client that trickles headers cannot hold a socket forever.
    header_timeout_s: float = Field(10.0, gt=0)
    # The whole body must arrive within this many seconds of the head; raise it for big
    # batches over very slow links (8 MB at 70 kB/s fits in the default).
    body_timeout_s: float = Field(120.0, gt=0)
    keep_alive_s: int = Field(5, ge=1, description="idle seconds between requests")
    # Open connections per worker. Default: the open-file limit minus a reserve for the
    # database and logs, so the process never runs out of descriptors. When full, the
    # connection that has waited longest for its client's bytes is closed to make room.
    max_connections: int | None = Field(None, ge=8)
    # Reverse proxies (addresses or networks, e.g. "127.0.0.1" for Caddy on the same host)
    # whose X-Forwarded-For is believed. Empty: the socket peer is the client.
    trusted_proxies: list[str] = Field(default_factory=list)
    # Interactive API docs (/docs, /redoc, /openapi.json). None: on in development, off in
    # production.
    docs: bool | None = None


class IngestConfig(_Section):
    # A 100,000-point batch gzips to ~1 MB; 8 MB leaves room for slow links' big batches.
    max_body_bytes: int = Field(8 * 1024 * 1024, ge=1024)
    # Decompressed JSON of a full batch is ~30 bytes a point; 64 MB bounds a gzip bomb.
    max_decompressed_bytes: int = Field(64 * 1024 * 1024, ge=1024)
    # Per-gateway request rate (token bucket): a backlog drains in big batches, not many.
    rate_per_gateway: float = Field(20.0, gt=0, description="requests per second")
    burst_per_gateway: int = Field(100, ge=1)
    # Rejections kept for inspection (per server, newest first).
    keep_rejections: int = Field(10_000, ge=0)
    # Devices a gateway may report that nobody registered; records of further ones are
    # rejected (each is a series and a row on every live page).
    max_unregistered_devices: int = Field(200, ge=0)


class SqliteConfig(_Section):
    # Days of raw points kept; hourly and daily rollups are kept forever. 0 = keep raw forever.
    raw_retention_days: int = Field(0, ge=0)
    # Offset of the local day used for daily rollups (Vietnam: UTC+7, no DST).
    day_offset_minutes: int = Field(
        7 * 60,
        ge=-14 * 60,
        le=14 * 60,
        multiple_of=60,
        description="whole hours, so daily rollups fold exactly from hourly ones",
    )
    busy_timeout_ms: int = Field(30_000, ge=100)
    readers: int = Field(4, ge=1, le=64)


class InfluxConfig(_Section):
    url: str = "http://localhost:8086"
    org: str = "hamlet"
    bucket: str = "hamlet"
    # Second bucket holding hourly means written by a downsampling task.
    rollup_bucket: str = "hamlet_hourly"
    token: SecretStr | None = None
    timeout_ms: int = Field(30_000, ge=100)
    points_per_request: int = Field(5_000, ge=1, le=100_000)


class StoreConfig(_Section):
    backend: Literal["sqlite", "influxdb"] = "sqlite"
    sqlite: SqliteConfig = SqliteConfig()
    influxdb: InfluxConfig = InfluxConfig()


class AuthConfig(_Section):
    secret_key: SecretStr | None = Field(
        None, description="signs session cookies; at least 32 characters"
    )

    @field_validator("secret_key", mode="before")
    @classmethod
    def _secret_text(cls, v: object) -> object:
        # An unquoted all-digit key in TOML arrives as a number: it is still the text typed.
        if isinstance(v, int) and not isinstance(v, bool):
            return str(v)
        if isinstance(v, float):
            raise ValueError('must be text: put it in quotes (secret_key = "...")')  # noqa: TRY004
        return v

    session_hours: float = Field(12.0, gt=0)
    # Login attempts per window before 429: per (client address, user name), per user name
    # from any address, per address for any user; and password checks a second in all.
    login_attempts: int = Field(5, ge=1)
    login_attempts_per_user: int = Field(20, ge=1)
    login_attempts_per_address: int = Field(30, ge=1)
    login_window_s: float = Field(60.0, gt=0)
    login_checks_per_s: float = Field(10.0, gt=0)
    # Anyone (no login) may read every hamlet. Defaults to on in development (the demo),
    # off in production, where only hamlets marked public are open.
    open_read: bool | None = None
    cookie_secure: bool | None = None
    # When set, /metrics answers only `Authorization: Bearer <metrics_token>` (Prometheus:
    # `authorization: {credentials: ...}`). Unset: /metrics is public, as before.
    metrics_token: SecretStr | None = None


class PagesConfig(_Section):
    # How often an open page asks for fresh figures. Readings arrive every few minutes, and
    # an unchanged board costs one small 304, so 30 s keeps a phone's hour well under 300 KB.
    refresh_s: float = Field(30.0, ge=0.2, le=3600)
    # A reading older than this many reporting intervals (or 1 h without one) is "stale".
    stale_intervals: float = Field(3.0, ge=1)


class ServerConfig(_Section):
    environment: Environment = Environment.PRODUCTION
    data_dir: Path = Path("./hamlet-server-data")
    http: HttpConfig = HttpConfig()
    ingest: IngestConfig = IngestConfig()
    store: StoreConfig = StoreConfig()
    auth: AuthConfig = AuthConfig()
    pages: PagesConfig = PagesConfig()
    indicators: IndicatorsConfig = IndicatorsConfig()
    alerts: AlertSettings = AlertSettings()
    notify: NotifyConfig = NotifyConfig()
    log_level: str = "INFO"

    @model_validator(mode="after")
    def _secrets(self) -> ServerConfig:
        dev = self.environment == Environment.DEVELOPMENT
        if self.auth.secret_key is None:
            if not dev:
                raise ValueError(
                    "auth.secret_key is required in production: set [auth] secret_key in the "
                    "config file or HAMLET_SERVER__AUTH__SECRET_KEY (e.g. from "
                    "`python -c 'import secrets; print(secrets.token_urlsafe(48))'`), or set "
                    'environment = "development" for a local demo'
                )
            self.auth.secret_key = SecretStr(DEV_SECRET)
        elif not dev:
            key = self.auth.secret_key.get_secret_value()
            if len(key) < 32 or key == DEV_SECRET:
                raise ValueError("auth.secret_key must be at least 32 random characters")
        if self.store.backend == "influxdb" and self.store.influxdb.token is None:
            raise ValueError(
                'store.influxdb.token is required with backend = "influxdb" '
                "(HAMLET_SERVER__STORE__INFLUXDB__TOKEN)"
            )
        if self.auth.open_read is None:
            self.auth.open_read = dev
        if self.auth.cookie_secure is None:
            self.auth.cookie_secure = not dev
        return self

    @property
    def secret(self) -> bytes:
        assert self.auth.secret_key is not None  # filled by the validator
        return self.auth.secret_key.get_secret_value().encode()

    def effective_alerts(self) -> AlertSettings:
        """``[alerts]`` with the thresholds set under ``[indicators]`` folded in.

        A commune sets a crop's salinity limit or a station's alarm levels once, under
        ``[indicators]``; the report card and the alerts then judge by the same number. Rows
        of ``[alerts].overrides`` come after the derived ones, so they win a tie.
        """
        ind = self.indicators
        derived: list[Override] = [
            Override(
                rule="salinity.danger",
                commune=o.commune,
                hamlet=o.hamlet,
                device=o.device,
                crop=o.crop,
                threshold=o.danger_ppt,
            )
            for o in ind.salinity
        ]
        stations: list[Station] = []
        for w in ind.water_alarms:
            if w.hamlet is not None and w.crop is None:
                stations.append(
                    Station(
                        hamlet=w.hamlet,
                        device=w.device,
                        level_i=w.level_i,
                        level_ii=w.level_ii,
                        level_iii=w.level_iii,
                        source=w.source,
                    )
                )
                continue
            for level, value in (("i", w.level_i), ("ii", w.level_ii), ("iii", w.level_iii)):
                derived.append(
                    Override(
                        rule=f"water_level.{level}",
                        commune=w.commune,
                        hamlet=w.hamlet,
                        device=w.device,
                        crop=w.crop,
                        threshold=value,
                    )
                )
        a = self.alerts
        return a.model_copy(
            update={
                "overrides": [*derived, *a.overrides],
                "stations": [*stations, *a.stations],
            }
        )

    @property
    def docs_enabled(self) -> bool:
        if self.http.docs is None:
            return self.environment == Environment.DEVELOPMENT
        return self.http.docs

    @property
    def ledger_path(self) -> Path:
        return self.data_dir / "hamlet.sqlite3"


def load_server_config(
    path: Path | None,
    *,
    data_dir: Path | None = None,
    host: str | None = None,
    port: int | None = None,
    workers: int | None = None,
) -> ServerConfig:
    """Config file + env + command-line overrides (the command line wins)."""
    extra: dict[str, object] = {}
    http: dict[str, object] = {}
    if data_dir is not None:
        extra["data_dir"] = str(data_dir)
    if host is not None:
        http["host"] = host
    if port is not None:
        http["port"] = port
    if workers is not None:
        http["workers"] = workers
    if http:
        extra["http"] = http
    return load_config(ServerConfig, path, env_prefix=ENV_PREFIX, extra=extra)


__all__ = ["ConfigError", "Environment", "ServerConfig", "load_server_config"]
