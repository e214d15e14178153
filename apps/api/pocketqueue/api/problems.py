"""One place that turns every error into RFC 9457 `application/problem+json`."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from starlette.exceptions import HTTPException

from pocketqueue.errors import QueueError, RedisUnavailable

log = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"


def problem(request: Request, status: int, title: str, detail: str, slug: str, **extra: Any) -> JSONResponse:
    body = {
        "type": f"urn:pocketqueue:problem:{slug}",
        "title": title,
        "status": status,
        "detail": detail,
        "instance": request.url.path,
        **extra,
    }
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON)


async def _queue_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, QueueError)
    return problem(request, exc.status_code, exc.title, exc.detail, exc.slug, **exc.extensions())


async def _redis_down(request: Request, exc: Exception) -> JSONResponse:
    # Redis went away between the flow's check and its work: same answer as the check.
    log.warning("Redis error on %s: %s", request.url.path, exc)
    return await _queue_error(request, RedisUnavailable())


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = [{"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]} for e in exc.errors()]
    return problem(
        request,
        422,
        "Invalid request",
        "The request does not match the schema; see `errors`.",
        "invalid-request",
        errors=errors,
    )


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    slug = str(exc.detail).lower().replace(" ", "-")
    return problem(request, exc.status_code, str(exc.detail), str(exc.detail), slug)


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error on %s", request.url.path)
    return problem(
        request, 500, "Internal error", "An unexpected error occurred; it has been logged.", "internal-error"
    )


def install_problem_handlers(app: FastAPI) -> None:
    app.add_exception_handler(QueueError, _queue_error)
    app.add_exception_handler(RedisConnectionError, _redis_down)
    app.add_exception_handler(RedisTimeoutError, _redis_down)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)
