"""The FastAPI application factory."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from pocketqueue.api.problems import install_problem_handlers
from pocketqueue.api.routes import dead_letter, health, jobs, testing
from pocketqueue.config import Settings, get_settings
from pocketqueue.runtime import open_runtime


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the API; its Redis pool and job watcher live as long as the app."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with open_runtime(settings or get_settings()) as runtime:
            app.state.runtime = runtime
            yield

    app = FastAPI(
        title="PocketQueue",
        summary="Dispatch jobs to Celery workers, watch them, get their results.",
        version="0.1.0",
        lifespan=lifespan,
    )
    install_problem_handlers(app)
    for router in (jobs.router, dead_letter.router, health.router, testing.router):
        app.include_router(router, prefix="/api/queue")
    return app
