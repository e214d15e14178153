"""The naive baseline: FastAPI endpoints that call Celery's `apply_async` directly.

This is how a typical user wires FastAPI to Celery: a `def` endpoint (FastAPI runs it
in its threadpool) that looks the task up and sends it with Celery's own producer,
on an app with a Redis result backend. `/dispatch-async` is the same endpoint declared
`async def`, which blocks the event loop while Celery publishes.

Run with `REDIS_URL=... uvicorn naive_api:app` (bench/ on the path).
"""

from __future__ import annotations

from typing import Any

from celery import Celery
from fastapi import FastAPI, HTTPException, status
from pydantic import BaseModel, Field

from plain_celery import app_from_env

app = FastAPI(title="naive FastAPI + Celery")
celery: Celery = app_from_env()  # built once, at import, before any request thread runs


class DispatchBody(BaseModel):
    task: str
    args: list[Any] = Field(default_factory=list)
    kwargs: dict[str, Any] = Field(default_factory=dict)


class Dispatched(BaseModel):
    job_id: str
    task: str
    status: str


def _send(body: DispatchBody) -> Dispatched:
    task = celery.tasks.get(body.task)
    if task is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no task {body.task!r}")
    result = task.apply_async(args=body.args, kwargs=body.kwargs)
    return Dispatched(job_id=result.id, task=body.task, status="queued")


@app.post("/dispatch", status_code=status.HTTP_202_ACCEPTED)
def dispatch(body: DispatchBody) -> Dispatched:
    return _send(body)


@app.post("/dispatch-async", status_code=status.HTTP_202_ACCEPTED)
async def dispatch_async(body: DispatchBody) -> Dispatched:
    return _send(body)


@app.get("/health")
def health() -> dict[str, str]:
    return {"status": "ok"}
