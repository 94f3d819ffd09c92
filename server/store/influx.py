"""InfluxDB 2.x backend: series in InfluxDB, registry + dedup ledger + latest in SQLite.

Writes are synchronous line-protocol requests (``points_per_request`` lines each, 5,000 by
default): a gateway is answered only after InfluxDB returned success for every line. The
client's batching writer is never used: it drops data once its retry window passes.

Ingest runs in three steps so no SQLite lock is held across a network call:
1. classify the batch against the ledger (read only);
2. write the new points to InfluxDB and wait for success (on failure: 503, nothing recorded,
   the gateway retries);
3. in one SQLite transaction, classify again and record the outcome. A concurrent request
   that stored some of the same seqs in between makes them duplicates here; writing them to
   InfluxDB twice was harmless, because a point's timestamp and tags are a pure function of
   (gateway, seq, device, metric, time): the second write overwrites it with itself.

Two readings of one device and metric in the same millisecond must not merge (a lesson from
ThingsBoard), so the timestamp is written in nanoseconds as ``t_ms * 1e6 + seq % 1e6``.
"""

from __future__ import annotations

import asyncio
import math
import sqlite3
from collections.abc import Iterable, Iterator
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, Self

from hamlet.contract import IngestResult, UplinkBatch
from hamlet.metrics import METRICS
from server.classify import Classified, PointRow
from server.config import InfluxConfig, ServerConfig
from server.indicators.source import AboveRow, HourRow, Levels, count_above
from server.models import Resolution, SeriesPoint, SeriesResult
from server.registry import GatewayRow
from server.store import sqlite_series as ss
from server.store.base import StoreError
from server.store.db import Database
from server.store.meta_reads import SqliteMetaReads
from server.store.settle import classify_batch, result_of, settle_batch

if TYPE_CHECKING:
    from influxdb_client.client.influxdb_client import InfluxDBClient

MEASUREMENT: Final = "reading"
NS_PER_MS: Final = 1_000_000


# --- line protocol ------------------------------------------------------------------------


def escape_measurement(s: str) -> str:
    return s.replace("\\", "\\\\").replace(",", "\\,").replace(" ", "\\ ").replace("\n", "\\n")


def escape_tag(s: str) -> str:
    """Tag keys and values (and field keys): backslash, comma, equals sign and space."""
    return (
        s.replace("\\", "\\\\")
        .replace(",", "\\,")
        .replace("=", "\\=")
        .replace(" ", "\\ ")
        .replace("\n", "\\n")
    )


def _float(v: float) -> str:
    if not math.isfinite(v):
        raise ValueError(f"line protocol cannot carry {v}")
    return repr(float(v))


def point_ns(t_ms: int, seq: int) -> int:
    return t_ms * NS_PER_MS + seq % NS_PER_MS


def line(hamlet: str, gateway: str, p: PointRow) -> str:
    tags = (
        f"{escape_measurement(MEASUREMENT)},device={escape_tag(p.device)},"
        f"gateway={escape_tag(gateway)},hamlet={escape_tag(hamlet)},"
        f"metric={escape_tag(p.metric)}"
    )  # tags sorted by key: what InfluxDB does anyway, cheapest for it
    fields = [f"v={_float(p.v)}", f"q={p.q}i", f"seq={p.seq}i"]
    if p.vmin is not None:
        fields.append(f"vmin={_float(p.vmin)}")
    if p.vmax is not None:
        fields.append(f"vmax={_float(p.vmax)}")
    if p.n is not None:
        fields.append(f"n={p.n}i")
    return f"{tags} {','.join(fields)} {point_ns(p.t, p.seq)}"


def chunks(lines: Iterable[str], size: int) -> Iterator[list[str]]:
    buf: list[str] = []
    for ln in lines:
        buf.append(ln)
        if len(buf) >= size:
            yield buf
            buf = []
    if buf:
        yield buf


# --- Flux -------------------------------------------------------------------------------


def flux_string(s: str) -> str:
    """A Flux string literal; ``$`` is escaped so ``${...}`` cannot interpolate."""
    body = (
        s.replace("\\", "\\\\")
        .replace('"', '\\"')
        .replace("$", "\\$")
        .replace("\n", "\\n")
        .replace("\r", "\\r")
        .replace("\t", "\\t")
    )
    return f'"{body}"'


def _rfc3339_ns(ms: int) -> str:
    # Flux time literal via time(v: int) avoids date formatting edge cases entirely.
    return f"time(v: {int(ms) * NS_PER_MS})"


def series_flux(
    bucket: str,
    rollup_bucket: str,
    *,
    hamlet: str,
    device: str,
    metric: str,
    start: int,
    end: int,
    resolution: Resolution,
    limit: int,
) -> str:
    """Flux for one series; hourly from the rollup bucket, daily aggregated from it."""
    flt = (
        f"r.hamlet == {flux_string(hamlet)} and r.device == {flux_string(device)} "
        f"and r.metric == {flux_string(metric)}"
    )
    rng = f"|> range(start: {_rfc3339_ns(start)}, stop: {_rfc3339_ns(end)})"
    if resolution == Resolution.RAW:
        return (
            f"from(bucket: {flux_string(bucket)})\n  {rng}\n"
            f'  |> filter(fn: (r) => r._measurement == "{MEASUREMENT}" and {flt})\n'
            '  |> filter(fn: (r) => r._field == "v" or r._field == "q")\n'
            '  |> pivot(rowKey: ["_time"], columnKey: ["_field"], valueColumn: "_value")\n'
            '  |> group()\n  |> sort(columns: ["_time"])\n'
            f"  |> limit(n: {int(limit) + 1})"
        )
    every = "1h" if resolution == Resolution.HOUR else "1d"
    return (
        f"from(bucket: {flux_string(rollup_bucket)})\n  {rng}\n"
        f'  |> filter(fn: (r) => r._measurement == "{MEASUREMENT}_1h" and {flt})\n'
        '  |> pivot(rowKey: ["_time"], columnKey: ["_field"], valueColumn: "_value")\n'
        f"  |> window(every: {every})\n"
        "  |> reduce(identity: {sum: 0.0, n: 0, min: 1.0e300, max: -1.0e300, t: 0},\n"
        "       fn: (r, accumulator) => ({sum: accumulator.sum + r.mean * float(v: r.n),\n"
        "         n: accumulator.n + r.n, min: if r.min < accumulator.min then r.min\n"
        "         else accumulator.min, max: if r.max > accumulator.max then r.max\n"
        "         else accumulator.max, t: int(v: r._start)}))\n"
        '  |> group()\n  |> sort(columns: ["t"])\n'
        f"  |> limit(n: {int(limit) + 1})"
    )


def downsample_task_flux(bucket: str, rollup_bucket: str, org: str) -> str:
    """The InfluxDB task that keeps hourly mean/min/max/n in the second bucket."""
    src = (
        f"from(bucket: {flux_string(bucket)})\n"
        "  |> range(start: -task.every * 2)\n"
        f'  |> filter(fn: (r) => r._measurement == "{MEASUREMENT}" and r._field == "v")\n'
    )
    return (
        'option task = {name: "hamlet-hourly", every: 1h, offset: 5m}\n\n'
        f"data = {src}\n"
        "agg = (fn, name) => data\n"
        '  |> aggregateWindow(every: 1h, fn: fn, createEmpty: false, timeSrc: "_start")\n'
        '  |> set(key: "_field", value: name)\n\n'
        'union(tables: [agg(fn: mean, name: "mean"), agg(fn: min, name: "min"),\n'
        '               agg(fn: max, name: "max"), agg(fn: count, name: "n")])\n'
        f'  |> set(key: "_measurement", value: "{MEASUREMENT}_1h")\n'
        f"  |> to(bucket: {flux_string(rollup_bucket)}, org: {flux_string(org)})\n"
    )


def hourly_rollups_flux(
    rollup_bucket: str,
    *,
    hamlets: list[str],
    metrics: list[str],
    start: int,
    end: int,
    flat_only: bool,
) -> str:
    """Flux for the hourly rollups (mean, min, max, n) of these hamlets' metrics."""
    in_h = " or ".join(f"r.hamlet == {flux_string(h)}" for h in hamlets) or "false"
    in_m = " or ".join(f"r.metric == {flux_string(m)}" for m in metrics) or "false"
    flat = "  |> filter(fn: (r) => r.min == r.max and r.n > 1)\n" if flat_only else ""
    return (
        f"from(bucket: {flux_string(rollup_bucket)})\n"
        f"  |> range(start: {_rfc3339_ns(start)}, stop: {_rfc3339_ns(end)})\n"
        f'  |> filter(fn: (r) => r._measurement == "{MEASUREMENT}_1h")\n'
        f"  |> filter(fn: (r) => ({in_h}) and ({in_m}))\n"
        '  |> pivot(rowKey: ["_time"], columnKey: ["_field"], valueColumn: "_value")\n'
        f"{flat}"
        '  |> keep(columns: ["_time", "hamlet", "device", "metric", "mean", "min", "max", "n"])'
    )


# --- the store --------------------------------------------------------------------------


class InfluxStore(SqliteMetaReads):
    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.influx: InfluxConfig = config.store.influxdb
        sc = config.store.sqlite
        self.db = Database(
            config.ledger_path, readers=sc.readers, busy_timeout_ms=sc.busy_timeout_ms
        )
        self._ids = ss.SeriesIds()
        self._client: InfluxDBClient | None = None
        self._write: Any = None
        self._query: Any = None

    async def __aenter__(self) -> Self:
        from influxdb_client.client.influxdb_client import InfluxDBClient
        from influxdb_client.client.write_api import SYNCHRONOUS

        await self.db.__aenter__()
        token = self.influx.token.get_secret_value() if self.influx.token else ""
        self._client = InfluxDBClient(
            url=self.influx.url,
            token=token,
            org=self.influx.org,
            timeout=self.influx.timeout_ms,
            enable_gzip=True,
        )
        self._write = self._client.write_api(write_options=SYNCHRONOUS)
        self._query = self._client.query_api()
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            if self._client is not None:
                await asyncio.to_thread(self._client.close)
        finally:
            self._client = None
            await self.db.__aexit__(et, e, tb)

    # --- writes -------------------------------------------------------------------------

    def _write_lines(self, lines: list[str]) -> None:
        from influxdb_client.domain.write_precision import WritePrecision

        for part in chunks(lines, self.influx.points_per_request):
            self._write.write(
                bucket=self.influx.bucket,
                org=self.influx.org,
                record=part,
                write_precision=WritePrecision.NS,
            )

    def _settle(
        self, conn: sqlite3.Connection, gateway: GatewayRow, batch: UplinkBatch, now_ms: int
    ) -> Classified:
        conn.execute("BEGIN IMMEDIATE")
        try:
            # SQLite keeps only the latest value per series (for the hamlet board).
            c = settle_batch(
                conn,
                self._ids,
                gateway,
                batch,
                now_ms,
                day_offset_ms=0,
                keep_rejections=self.config.ingest.keep_rejections,
                max_unregistered=self.config.ingest.max_unregistered_devices,
                raw=False,
                rollups=False,
            )
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            self._ids = ss.SeriesIds()
            raise
        return c

    async def ingest(self, gateway: GatewayRow, batch: UplinkBatch, now_ms: int) -> IngestResult:
        def peek(conn: sqlite3.Connection) -> Classified:
            return classify_batch(
                conn,
                gateway,
                batch,
                now_ms,
                max_unregistered=self.config.ingest.max_unregistered_devices,
            )[0]

        first = await self.db.read(peek)
        lines = [line(gateway.hamlet, gateway.id, p) for p in first.points]
        if lines:
            try:
                await asyncio.to_thread(self._write_lines, lines)
            # influxdb-client raises ApiException, urllib3 and socket errors alike: this is
            # the backend boundary, and each becomes one StoreError (a 503 to the gateway).
            except Exception as err:
                raise StoreError(f"InfluxDB write failed: {err}") from err
        try:
            c = await self.db.write(self._settle, gateway, batch, now_ms)
        except sqlite3.Error as err:
            raise StoreError(f"SQLite ledger write failed: {err}") from err
        return result_of(c)

    # --- reads --------------------------------------------------------------------------

    def _run_query(self, flux: str) -> list[Any]:
        tables = self._query.query(flux, org=self.influx.org)
        return [rec for table in tables for rec in table.records]

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
    ) -> SeriesResult:
        res = ss.pick_resolution(resolution, start, end)
        flux = series_flux(
            self.influx.bucket,
            self.influx.rollup_bucket,
            hamlet=hamlet,
            device=device,
            metric=metric,
            start=start,
            end=end,
            resolution=res,
            limit=limit,
        )
        try:
            recs = await asyncio.to_thread(self._run_query, flux)
        except Exception as err:
            raise StoreError(f"InfluxDB query failed: {err}") from err
        pts: list[SeriesPoint] = []
        for r in recs:
            vals = r.values
            if res == Resolution.RAW:
                ts = int(r.get_time().timestamp() * 1000)
                pts.append(SeriesPoint(t=ts, v=float(vals["v"]), q=int(vals.get("q") or 0)))
            else:
                n = int(vals["n"])
                pts.append(
                    SeriesPoint(
                        t=int(vals["t"]) // NS_PER_MS,
                        v=float(vals["sum"]) / max(n, 1),
                        min=float(vals["min"]),
                        max=float(vals["max"]),
                        n=n,
                    )
                )
        m = METRICS.get(metric)
        return SeriesResult(
            hamlet=hamlet,
            device=device,
            metric=metric,
            unit=m.unit if m else "",
            resolution=res,
            start=start,
            end=end,
            truncated=len(pts) > limit,
            points=pts[:limit],
        )

    async def hourly_rollups(
        self,
        hamlets: list[str],
        metrics: list[str],
        *,
        start: int,
        end: int,
        flat_only: bool = False,
    ) -> list[HourRow]:
        if not hamlets or not metrics:
            return []
        flux = hourly_rollups_flux(
            self.influx.rollup_bucket,
            hamlets=hamlets,
            metrics=metrics,
            start=start,
            end=end,
            flat_only=flat_only,
        )
        try:
            recs = await asyncio.to_thread(self._run_query, flux)
        except Exception as err:
            raise StoreError(f"InfluxDB query failed: {err}") from err
        out: list[HourRow] = []
        for r in recs:
            v = r.values
            # The task stamps each hour with its window start (timeSrc: "_start").
            out.append(
                HourRow(
                    hamlet=str(v["hamlet"]),
                    device=str(v["device"]),
                    metric=str(v["metric"]),
                    hour_ms=int(r.get_time().timestamp() * 1000),
                    n=int(v["n"]),
                    mean=float(v["mean"]),
                    min=float(v["min"]),
                    max=float(v["max"]),
                )
            )
        return out

    async def hours_above(
        self, metric: str, levels: Levels, *, start: int, end: int, strict: bool
    ) -> list[AboveRow]:
        hamlets = sorted({h for h, _ in levels})
        rows = await self.hourly_rollups(hamlets, [metric], start=start, end=end)
        return count_above(rows, levels, strict)

    async def ping(self) -> None:
        assert self._client is not None
        try:
            ok = await asyncio.to_thread(self._client.ping)
        except Exception as err:
            raise StoreError(f"InfluxDB does not answer: {err}") from err
        if not ok:
            raise StoreError(f"InfluxDB at {self.influx.url} does not answer /ping")
