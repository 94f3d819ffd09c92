"""``hamlet server migrate``: copy the series history out of the server's SQLite database into
another store, resumably, and verify it by counting every series on both sides.

The copy engine (:func:`migrate`) knows one source (the SQLite series tables) and one
interface, :class:`HistoryTarget`, implemented for InfluxDB and for SQLite. The SQLite
target is how the same code is exercised end to end without an InfluxDB (and how a
migration can be rehearsed). What is copied: every raw point, and every hourly rollup (the
only trace of points older than the raw retention). Events, the registry and the dedup ledger
stay in SQLite with both backends, so they need no copy.

Resuming: after each chunk is durably written to the target, the last (t, gateway, seq)
copied for that series is committed to a small state file. A run that was stopped continues
from there; a chunk written but not yet recorded is written again, which is harmless because
both targets store a point under its identity (InfluxDB: same tags and timestamp; SQLite:
the points table's primary key).
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, Protocol, Self

from server.classify import PointRow
from server.config import InfluxConfig
from server.store import sqlite_series as ss
from server.store.influx import MEASUREMENT, NS_PER_MS, chunks, escape_tag, flux_string, line
from server.store.schema import connect, open_db

if TYPE_CHECKING:
    from influxdb_client.client.influxdb_client import InfluxDBClient

CHUNK: Final = 5_000  # points a write (InfluxDB's sweet spot for line protocol)


class MigrateError(Exception):
    """The migration cannot go on; the message says what to check."""


@dataclass(frozen=True)
class Series:
    id: int
    hamlet: str
    device: str
    metric: str
    kind: str
    gateway: str

    @property
    def key(self) -> ss.SeriesKey:
        return (self.hamlet, self.device, self.metric)

    @property
    def label(self) -> str:
        return f"{self.hamlet}/{self.device}/{self.metric}"


@dataclass(frozen=True)
class HistoryPoint:
    gateway: str
    point: PointRow


@dataclass(frozen=True)
class HourRow:
    bucket: int
    n: int
    sum: float
    min: float
    max: float


class HistoryTarget(Protocol):
    """Where history is copied to. Writes are idempotent (a point has one identity)."""

    description: str

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None: ...

    async def write_points(self, series: Series, rows: Sequence[HistoryPoint]) -> None: ...

    async def write_rollups(
        self, series: Series, hourly: Sequence[HourRow], daily: Sequence[HourRow]
    ) -> None:
        """The series' hourly and daily aggregates, replacing any the target has."""
        ...

    async def count_points(self, series: Series) -> int: ...


# ------------------------------------------------------------------------------ source


class SqliteHistory:
    """The server database's series tables, read in (t, gw, seq) order per series."""

    def __init__(self, path: Path) -> None:
        if not path.exists():
            raise MigrateError(f"no server database at {path}: check --data-dir / data_dir")
        self.conn = connect(path, readonly=True)
        self._gateways = dict(self.conn.execute("SELECT num, id FROM gateways").fetchall())

    def close(self) -> None:
        self.conn.close()

    def series(self) -> list[Series]:
        rows = self.conn.execute(
            "SELECT id, hamlet, device, metric, kind, coalesce(gateway, '') FROM series ORDER BY id"
        ).fetchall()
        return [Series(*r) for r in rows]

    def count(self, s: Series) -> int:
        return int(
            self.conn.execute("SELECT count(*) FROM points WHERE series = ?", (s.id,)).fetchone()[0]
        )

    def points_after(
        self, s: Series, after: tuple[int, int, int] | None, limit: int
    ) -> list[tuple[tuple[int, int, int], HistoryPoint]]:
        t, gw, seq = after if after is not None else (-(2**62), -1, -1)
        rows = self.conn.execute(
            "SELECT t, gw, seq, v, q, vmin, vmax, n FROM points WHERE series = ? "
            "AND (t, gw, seq) > (?, ?, ?) ORDER BY t, gw, seq LIMIT ?",
            (s.id, t, gw, seq, limit),
        ).fetchall()
        out = []
        for t_, gw_, seq_, v, q, vmin, vmax, n in rows:
            gateway = self._gateways.get(gw_, s.gateway)
            p = PointRow(s.device, s.metric, s.kind, seq_, t_, v, q, vmin, vmax, n)
            out.append(((t_, gw_, seq_), HistoryPoint(gateway, p)))
        return out

    def rollups(self, s: Series, table: str) -> list[HourRow]:
        assert table in {"hourly", "daily"}
        rows = self.conn.execute(
            f"SELECT bucket, n, sum, min, max FROM {table} WHERE series = ? ORDER BY bucket",
            (s.id,),
        ).fetchall()
        return [HourRow(*r) for r in rows]


# ------------------------------------------------------------------------------ progress


class Progress:
    """Where each series got to, per target, in a small SQLite file (survives a kill)."""

    def __init__(self, path: Path, target: str) -> None:
        self.conn = sqlite3.connect(path, isolation_level=None)
        self.conn.execute("PRAGMA synchronous=FULL")
        self.conn.execute(
            "CREATE TABLE IF NOT EXISTS progress (target TEXT NOT NULL, series TEXT NOT NULL, "
            "t INTEGER, gw INTEGER, seq INTEGER, hourly_done INTEGER NOT NULL DEFAULT 0, "
            "PRIMARY KEY (target, series))"
        )
        self.target = target

    def close(self) -> None:
        self.conn.close()

    def get(self, s: Series) -> tuple[tuple[int, int, int] | None, bool]:
        row = self.conn.execute(
            "SELECT t, gw, seq, hourly_done FROM progress WHERE target = ? AND series = ?",
            (self.target, s.label),
        ).fetchone()
        if row is None:
            return None, False
        after = (row[0], row[1], row[2]) if row[0] is not None else None
        return after, bool(row[3])

    def set_points(self, s: Series, after: tuple[int, int, int]) -> None:
        self.conn.execute(
            "INSERT INTO progress(target, series, t, gw, seq) VALUES (?,?,?,?,?) "
            "ON CONFLICT(target, series) DO UPDATE SET t = excluded.t, gw = excluded.gw, "
            "seq = excluded.seq",
            (self.target, s.label, *after),
        )

    def set_hourly_done(self, s: Series) -> None:
        self.conn.execute(
            "INSERT INTO progress(target, series, hourly_done) VALUES (?,?,1) "
            "ON CONFLICT(target, series) DO UPDATE SET hourly_done = 1",
            (self.target, s.label),
        )


# ------------------------------------------------------------------------------ engine


@dataclass
class SeriesCheck:
    series: Series
    source: int
    target: int

    @property
    def ok(self) -> bool:
        return self.source == self.target


@dataclass
class Outcome:
    copied: int
    checks: list[SeriesCheck]
    recopied: list[str]

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)


ProgressFn = Callable[[str, int], None]  # (series label, points just copied)


async def migrate(
    source: SqliteHistory,
    target: HistoryTarget,
    progress: Progress,
    *,
    on_chunk: ProgressFn | None = None,
    on_start: Callable[[int, int], None] | None = None,
    chunk: int = CHUNK,
) -> Outcome:
    """Copy every series from where the last run stopped, then count each series on both
    sides; a series whose counts differ is copied again in full and counted again."""
    series = source.series()
    todo = [(s, source.count(s)) for s in series]
    if on_start is not None:
        done_before = 0
        for s, _ in todo:
            after, _h = progress.get(s)
            if after is not None:
                done_before += int(
                    source.conn.execute(
                        "SELECT count(*) FROM points WHERE series = ? AND (t, gw, seq) <= (?,?,?)",
                        (s.id, *after),
                    ).fetchone()[0]
                )
        on_start(sum(n for _, n in todo), done_before)
    copied = 0

    async def copy(s: Series, after: tuple[int, int, int] | None, hourly_done: bool) -> int:
        n = 0
        while True:
            rows = source.points_after(s, after, chunk)
            if not rows:
                break
            await target.write_points(s, [hp for _, hp in rows])
            after = rows[-1][0]
            progress.set_points(s, after)
            n += len(rows)
            if on_chunk is not None:
                on_chunk(s.label, len(rows))
        if not hourly_done:
            await target.write_rollups(s, source.rollups(s, "hourly"), source.rollups(s, "daily"))
            progress.set_hourly_done(s)
        return n

    for s, _n in todo:
        copied += await copy(s, *progress.get(s))
    checks = []
    recopied = []
    for s, _n in todo:
        n = source.count(s)
        got = await target.count_points(s)
        if got != n:
            # Late data (a gateway's backlog) lands behind the cursor, and a target may have
            # lost writes: copy the whole series again (writes are idempotent), then recount.
            recopied.append(s.label)
            copied += await copy(s, None, False)
            n, got = source.count(s), await target.count_points(s)
        checks.append(SeriesCheck(s, n, got))
    return Outcome(copied, checks, recopied)


# ------------------------------------------------------------------------------ targets


class SqliteHistoryTarget:
    """Another hamlet server database (a rehearsal, or a test of the copy engine)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.description = f"sqlite:{path.resolve()}"
        self._ids = ss.SeriesIds()
        self._conn: sqlite3.Connection | None = None
        self._gw: dict[str, int] = {}

    async def __aenter__(self) -> Self:
        self._conn = await asyncio.to_thread(open_db, self.path)
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _gateway_num(self, conn: sqlite3.Connection, gateway: str, hamlet: str) -> int:
        num = self._gw.get(gateway)
        if num is None:
            # History only: a gateway unknown here gets a revoked placeholder (no token).
            conn.execute(
                "INSERT OR IGNORE INTO gateways(id, hamlet, token_hash, revoked, created_ms) "
                "VALUES (?, ?, NULL, 1, 0)",
                (gateway, hamlet),
            )
            num = int(
                conn.execute("SELECT num FROM gateways WHERE id = ?", (gateway,)).fetchone()[0]
            )
            self._gw[gateway] = num
        return num

    def _write_points(self, series: Series, rows: Sequence[HistoryPoint]) -> None:
        conn = self._conn
        assert conn is not None
        conn.execute("BEGIN IMMEDIATE")
        try:
            sid = self._ids.get(conn, series.key, series.kind, series.gateway)
            conn.executemany(
                "INSERT OR IGNORE INTO points(series, t, gw, seq, v, q, vmin, vmax, n) "
                "VALUES (?,?,?,?,?,?,?,?,?)",
                [
                    (sid, p.t, self._gateway_num(conn, hp.gateway, series.hamlet), p.seq, p.v,
                     p.q, p.vmin, p.vmax, p.n)
                    for hp in rows
                    for p in (hp.point,)
                ],
            )  # fmt: skip
            last = max(rows, key=lambda hp: hp.point.t).point
            conn.execute(
                "INSERT INTO latest(series, t, v, q, received_ms) VALUES (?,?,?,?,0) "
                "ON CONFLICT(series) DO UPDATE SET t = excluded.t, v = excluded.v, "
                "q = excluded.q WHERE excluded.t >= latest.t",
                (sid, last.t, last.v, last.q),
            )
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            self._ids = ss.SeriesIds()
            self._gw.clear()
            raise

    async def write_points(self, series: Series, rows: Sequence[HistoryPoint]) -> None:
        if rows:
            await asyncio.to_thread(self._write_points, series, rows)

    def _write_rollups(
        self, series: Series, hourly: Sequence[HourRow], daily: Sequence[HourRow]
    ) -> None:
        conn = self._conn
        assert conn is not None
        conn.execute("BEGIN IMMEDIATE")
        try:
            sid = self._ids.get(conn, series.key, series.kind, series.gateway)
            # Replaced, not added: the source's rollups are the whole truth for the series
            # (copied, not recomputed: a different summation order changes the last bits).
            for table, rows in (("hourly", hourly), ("daily", daily)):
                conn.execute(f"DELETE FROM {table} WHERE series = ?", (sid,))
                conn.executemany(
                    f"INSERT INTO {table}(series, bucket, n, sum, min, max) VALUES (?,?,?,?,?,?)",
                    [(sid, r.bucket, r.n, r.sum, r.min, r.max) for r in rows],
                )
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            self._ids = ss.SeriesIds()
            raise

    async def write_rollups(
        self, series: Series, hourly: Sequence[HourRow], daily: Sequence[HourRow]
    ) -> None:
        await asyncio.to_thread(self._write_rollups, series, hourly, daily)

    async def count_points(self, series: Series) -> int:
        def run() -> int:
            conn = self._conn
            assert conn is not None
            r = conn.execute(
                "SELECT count(*) FROM points p JOIN series s ON s.id = p.series "
                "WHERE s.hamlet = ? AND s.device = ? AND s.metric = ?",
                series.key,
            ).fetchone()
            return int(r[0])

        return await asyncio.to_thread(run)


def hourly_line(series: Series, r: HourRow) -> str:
    """One hourly rollup as the downsampling task writes it (measurement ``reading_1h``)."""
    tags = (
        f"{MEASUREMENT}_1h,device={escape_tag(series.device)},"
        f"gateway={escape_tag(series.gateway)},hamlet={escape_tag(series.hamlet)},"
        f"metric={escape_tag(series.metric)}"
    )
    mean = r.sum / r.n if r.n else 0.0
    fields = f"mean={float(mean)!r},min={float(r.min)!r},max={float(r.max)!r},n={int(r.n)}i"
    return f"{tags} {fields} {r.bucket * NS_PER_MS}"


def count_flux(bucket: str, series: Series) -> str:
    return (
        f"from(bucket: {flux_string(bucket)})\n"
        "  |> range(start: time(v: 0))\n"
        f'  |> filter(fn: (r) => r._measurement == "{MEASUREMENT}" and r._field == "v" '
        f"and r.hamlet == {flux_string(series.hamlet)} and r.device == "
        f"{flux_string(series.device)} and r.metric == {flux_string(series.metric)})\n"
        "  |> group()\n  |> count()"
    )


class InfluxHistoryTarget:
    """The InfluxDB the server is moving to (raw bucket + rollup bucket)."""

    def __init__(self, cfg: InfluxConfig) -> None:
        self.cfg = cfg
        self.description = f"influxdb:{cfg.url}/{cfg.org}/{cfg.bucket}"
        self._client: InfluxDBClient | None = None
        self._write: Any = None
        self._query: Any = None

    async def __aenter__(self) -> Self:
        from influxdb_client.client.influxdb_client import InfluxDBClient
        from influxdb_client.client.write_api import SYNCHRONOUS

        token = self.cfg.token.get_secret_value() if self.cfg.token else ""
        self._client = InfluxDBClient(
            url=self.cfg.url, token=token, org=self.cfg.org, timeout=self.cfg.timeout_ms,
            enable_gzip=True,
        )  # fmt: skip
        self._write = self._client.write_api(write_options=SYNCHRONOUS)
        self._query = self._client.query_api()
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._client is not None:
            await asyncio.to_thread(self._client.close)
            self._client = None

    def _lines(self, bucket: str, lines: Iterator[str] | list[str]) -> None:
        from influxdb_client.domain.write_precision import WritePrecision

        for part in chunks(lines, self.cfg.points_per_request):
            self._write.write(
                bucket=bucket, org=self.cfg.org, record=part, write_precision=WritePrecision.NS
            )

    async def _send(self, bucket: str, lines: list[str]) -> None:
        try:
            await asyncio.to_thread(self._lines, bucket, lines)
        # influxdb-client raises ApiException, urllib3 and socket errors alike: the boundary.
        except Exception as err:
            raise MigrateError(f"InfluxDB write to {bucket} failed: {err}") from err

    async def write_points(self, series: Series, rows: Sequence[HistoryPoint]) -> None:
        await self._send(
            self.cfg.bucket, [line(series.hamlet, hp.gateway, hp.point) for hp in rows]
        )

    async def write_rollups(
        self, series: Series, hourly: Sequence[HourRow], daily: Sequence[HourRow]
    ) -> None:
        # InfluxDB's daily answers are folded from the hourly bucket at read time.
        await self._send(self.cfg.rollup_bucket, [hourly_line(series, r) for r in hourly])

    async def count_points(self, series: Series) -> int:
        flux = count_flux(self.cfg.bucket, series)

        def run() -> int:
            tables = self._query.query(flux, org=self.cfg.org)
            return sum(int(rec.get_value()) for t in tables for rec in t.records)

        try:
            return await asyncio.to_thread(run)
        except Exception as err:
            raise MigrateError(f"InfluxDB count of {series.label} failed: {err}") from err
