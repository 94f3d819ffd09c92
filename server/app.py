"""The FastAPI application factory and its lifespan (store open/close, retention task)."""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import os
import time
from collections.abc import AsyncIterator
from typing import Any, Final

from fastapi import FastAPI, Request
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from hamlet import __version__
from hamlet.contract import INGEST_PATH, UplinkBatch
from server import (
    admin_pages,
    admin_people,
    api,
    errors,
    limits,
    pages,
    report_api,
    users_api,
    views,
)
from server.alerts import routes as alert_routes
from server.alerts.engine import AlertEngine
from server.body_limits import BodyLimits
from server.clientaddr import parse_networks
from server.config import ServerConfig
from server.models import Health
from server.notify import edge_routes as notify_edge_routes
from server.notify import pages as notify_pages
from server.notify import routes as notify_routes
from server.notify.feed import AlertFeed
from server.notify.service import open_notifier
from server.pagekit import STATIC_DIR, STATIC_PREFIX, CachedStatic, CompressExceptIngest
from server.ratelimit import LoginThrottle, TokenBucket
from server.security import BrowserGuard, content_security_policy, inline_script_hashes
from server.state import AppState, Metrics
from server.store.base import Store, StoreError
from server.store.schema import StoreUnavailable

log = logging.getLogger("hamlet.server")
CONFIG_ENV: Final = "HAMLET_SERVER_CONFIG_JSON"  # hands the parsed config to worker processes
RETENTION_EVERY_S: Final = 3600.0


def make_store(config: ServerConfig) -> Store:
    if config.store.backend == "influxdb":
        from server.store.influx import InfluxStore

        influx: Store = InfluxStore(config)
        return influx
    from server.store.sqlite import SqliteStore

    return SqliteStore(config)


async def _retention(store: Store, days: int) -> None:
    prune = getattr(store, "prune", None)
    if prune is None or days <= 0:
        return
    while True:
        cutoff = time.time_ns() // 1_000_000 - days * 86_400_000
        n = await prune(cutoff)
        if n:
            log.info("retention: deleted %d raw points older than %d days", n, days)
        await asyncio.sleep(RETENTION_EVERY_S)  # a schedule, not a wait for an event


def create_app(config: ServerConfig) -> FastAPI:
    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with (
            make_store(config) as store,
            AlertEngine(config.effective_alerts(), store) as alerts,
        ):
            app.state.hamlet = AppState(
                config=config,
                store=store,
                ingest_limiter=TokenBucket(
                    config.ingest.rate_per_gateway, config.ingest.burst_per_gateway
                ),
                login_throttle=LoginThrottle(
                    per_pair=config.auth.login_attempts,
                    per_user=config.auth.login_attempts_per_user,
                    per_address=config.auth.login_attempts_per_address,
                    window=config.auth.login_window_s,
                    checks_per_s=config.auth.login_checks_per_s,
                ),
                metrics=Metrics(),
                trusted_proxies=parse_networks(config.http.trusted_proxies),
                on_settled=[alerts.submit],
            )
            app.state.alerts = alerts
            async with (
                open_notifier(config.notify, config.data_dir) as notifier,
                AlertFeed(alerts, store, notifier.dispatcher) as feed,
                asyncio.TaskGroup() as tg,
            ):
                app.state.notify = notifier
                app.state.hamlet.on_settled.append(feed.on_settled)
                app.state.hamlet.on_alert_acked.append(
                    lambda alert_id, by: asyncio.to_thread(notifier.store.acknowledge, alert_id, by)
                )
                task = tg.create_task(
                    _retention(store, config.store.sqlite.raw_retention_days), name="retention"
                )
                try:
                    yield
                finally:
                    task.cancel()

    app = FastAPI(
        title="Smart-hamlet server",
        version=__version__,
        description=(
            "Ingest for hamlet gateways, time series, registry and loss accounting. "
            "Gateways post `UplinkBatch`es to `/api/v1/ingest` with their bearer token; "
            "people read with an API token (`Authorization: Bearer hut_...`) or a session."
        ),
        lifespan=lifespan,
        # /docs is served below from vendored files (no CDN, no inline script); off in
        # production unless configured.
        docs_url=None,
        redoc_url=None,
        openapi_url="/openapi.json" if config.docs_enabled else None,
    )
    errors.install(app)
    app.add_middleware(CompressExceptIngest)
    app.add_middleware(
        BodyLimits,
        default=config.http.max_body_bytes,
        limits={INGEST_PATH: config.ingest.max_body_bytes, "/login": pages.MAX_FORM_BYTES},
    )
    # Outermost: its headers go on every answer, its refusals come before any body read.
    app.add_middleware(
        BrowserGuard,
        csp=content_security_policy(inline_script_hashes(pages.TEMPLATE_DIR)),
    )
    app.mount(STATIC_PREFIX, CachedStatic(directory=STATIC_DIR), name="static")
    app.include_router(api.router)
    app.include_router(users_api.router)
    app.include_router(limits.router)
    app.include_router(report_api.router)
    app.include_router(pages.router)
    app.include_router(alert_routes.router)
    app.include_router(notify_routes.router)
    app.include_router(notify_edge_routes.router)
    app.include_router(views.router)
    app.include_router(admin_pages.router)
    app.include_router(admin_people.router)
    app.include_router(notify_pages.router)

    if config.docs_enabled:

        @app.get("/docs", include_in_schema=False)
        async def docs() -> Response:
            return views.docs_page(app.title)

    @app.get("/healthz", response_model=Health, tags=["operations"], summary="Process is up")
    async def healthz() -> Health:
        return Health(status="ok")

    @app.get(
        "/readyz",
        response_model=Health,
        tags=["operations"],
        summary="Store answers",
        responses={503: {"model": Health}},
    )
    async def readyz(request: Request) -> Any:
        st: AppState = request.app.state.hamlet
        try:
            await st.store.ping()
        except (StoreError, StoreUnavailable) as err:
            return JSONResponse(
                Health(status="unavailable", detail=str(err)).model_dump(), status_code=503
            )
        return Health(status="ok")

    @app.get(
        "/metrics",
        tags=["operations"],
        summary="Prometheus metrics (this worker)",
        response_class=PlainTextResponse,
    )
    async def metrics(request: Request) -> Response:
        st: AppState = request.app.state.hamlet
        want = config.auth.metrics_token
        if want is not None:
            scheme, _, got = request.headers.get("authorization", "").partition(" ")
            ok = scheme.lower() == "bearer" and hmac.compare_digest(
                got.strip().encode("utf-8", "surrogateescape"),
                want.get_secret_value().encode(),
            )
            if not ok:
                return JSONResponse(
                    {"detail": "send Authorization: Bearer <auth.metrics_token>"},
                    status_code=401,
                    headers={"WWW-Authenticate": "Bearer"},
                )
        return Response(generate_latest(st.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = get_openapi(
            title=app.title,
            version=app.version,
            description=app.description,
            routes=app.routes,
        )
        # The ingest body is read by hand (gzip, bounds), so FastAPI does not see its model:
        # publish it (and the models it uses) under components.
        body = UplinkBatch.model_json_schema(ref_template="#/components/schemas/{model}")
        comps = schema.setdefault("components", {}).setdefault("schemas", {})
        for name, sub in body.pop("$defs", {}).items():
            comps.setdefault(name, sub)
        comps["UplinkBatch"] = body
        errors.unify_422(schema)
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app


def app_from_env() -> FastAPI:
    """Factory for uvicorn worker processes: the parent validated the config already."""
    return create_app(ServerConfig.model_validate_json(os.environ[CONFIG_ENV]))
