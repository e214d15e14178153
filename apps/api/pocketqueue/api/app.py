"""The FastAPI application factory."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.routing import APIRoute
from fastapi.staticfiles import StaticFiles

from pocketqueue.api.body_limit import BodyLimitMiddleware
from pocketqueue.api.limits import Limits
from pocketqueue.api.openapi import install_contract
from pocketqueue.api.problems import install_problem_handlers
from pocketqueue.api.routes import (
    audit,
    batches,
    dashboard,
    dead_letter,
    events,
    health,
    jobs,
    listing,
    metrics,
    schedules,
    stats,
    testing,
    workers,
)
from pocketqueue.config import Settings, get_settings
from pocketqueue.runtime import open_runtime


def operation_id(route: APIRoute) -> str:
    # The handler's name (`create_job`, `read_job`): stable, and what a generated client
    # calls its methods; FastAPI's default glues the path and method onto it.
    return route.name


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the API; its Redis pool and job watcher live as long as the app."""
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with open_runtime(settings) as runtime:
            app.state.runtime = runtime
            app.state.limits = Limits(settings, runtime.redis)
            yield

    app = FastAPI(
        title="PocketQueue",
        summary="Dispatch jobs to Celery workers, watch them, get their results.",
        version="0.1.0",
        lifespan=lifespan,
        generate_unique_id_function=operation_id,
    )
    app.state.settings = settings  # the keys api/auth.py checks
    install_problem_handlers(app)
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.api_max_body_bytes)
    if settings.api_cors_origins:
        # Only the origins listed; none listed, no CORS headers at all (browsers then refuse
        # every cross-origin call, which is what an API that takes keys wants by default).
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.api_cors_origins,
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["Authorization", "X-API-Key", "Content-Type", "Idempotency-Key", "Last-Event-ID"],
            expose_headers=["Retry-After", "Location"],
        )
    routers = [
        jobs.router,
        batches.router,
        listing.router,
        events.router,
        stats.router,
        dead_letter.router,
        health.router,
        workers.router,
        schedules.router,
        audit.router,
    ]
    if settings.queue_test_routes:
        routers.append(testing.router)
    for router in routers:
        app.include_router(router, prefix="/api/queue")
    app.include_router(metrics.router)  # at the root, where Prometheus scrapes
    app.include_router(dashboard.router)
    app.mount("/dashboard/static", StaticFiles(directory=dashboard.STATIC), name="dashboard-static")
    install_contract(app, secured=bool(settings.keyring))
    return app
