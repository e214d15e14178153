"""One place that turns every error into RFC 9457 `application/problem+json`."""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import OutOfMemoryError, ReadOnlyError, ResponseError
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


# Python before 3.13 names 413 by RFC 7231 ("Request Entity Too Large"); use RFC 9110's
# name, so a problem's `type` does not change with the interpreter.
RFC_9110_TITLES = {413: "Content Too Large"}


def http_problem(request: Request, status: int, detail: str, headers: Mapping[str, str] | None = None) -> JSONResponse:
    """A problem for an HTTP-level error (no route, wrong method, body too large): the status names it."""
    try:
        title = RFC_9110_TITLES.get(status) or HTTPStatus(status).phrase
    except ValueError:
        title = "HTTP error"
    response = problem(request, status, title, detail, title.lower().replace(" ", "-"))
    response.headers.update(headers or {})
    return response


async def _queue_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, QueueError)
    response = problem(request, exc.status_code, exc.title, exc.detail, exc.slug, **exc.extensions())
    response.headers.update(exc.headers())
    return response


async def _redis_down(request: Request, exc: Exception) -> JSONResponse:
    # Redis went away between the flow's check and its work: same answer as the check.
    log.warning("Redis error on %s: %s", request.url.path, exc)
    return await _queue_error(request, RedisUnavailable())


# Error replies with which Redis refuses a command for a while, whatever the command:
# the service is unavailable (503), not broken (500). Each says what to look at.
_REFUSALS = {
    "OOM": "Redis is out of memory (maxmemory reached) and refuses writes",
    "READONLY": "Redis is a read-only replica (a failover in progress, or REDIS_URL names a replica)",
    "BUSY": "Redis is busy running a long script",
    "LOADING": "Redis is loading its data set",
    "MASTERDOWN": "Redis is a replica that lost its primary",
    "MISCONF": "Redis refuses writes because it cannot save to disk",
    "NOREPLICAS": "Redis refuses writes: not enough replicas answer",
    "TRYAGAIN": "Redis asked to try again",
}


def redis_refusal(exc: ResponseError) -> str | None:
    """Why Redis refused a command for now, or None for any other error reply."""
    if isinstance(exc, OutOfMemoryError):  # redis-py strips the code from these two
        return _REFUSALS["OOM"]
    if isinstance(exc, ReadOnlyError):
        return _REFUSALS["READONLY"]
    # A refusal inside a Lua script comes back wrapped: "... @user_script: 110: -OOM ...".
    found = _REFUSAL_CODE.search(str(exc))
    return _REFUSALS[found.group(1)] if found else None


_REFUSAL_CODE = re.compile(r"(?:^|[\s:-])(" + "|".join(_REFUSALS) + r")\b")


async def _redis_refused(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ResponseError)
    why = redis_refusal(exc)
    if why is None:
        return await _unexpected(request, exc)
    log.warning("Redis refused a command on %s: %s", request.url.path, exc)
    detail = f"{why}; the request changed nothing. Retry shortly."
    return await _queue_error(request, RedisUnavailable(detail))


def _invalid_request(request: Request, errors: list[dict[str, Any]]) -> JSONResponse:
    return problem(
        request,
        422,
        "Invalid request",
        "The request does not match the schema; see `errors`.",
        "invalid-request",
        errors=errors,
    )


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    return _invalid_request(
        request, [{"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]} for e in exc.errors()]
    )


def _undecodable_reason(cause: BaseException | None) -> str:
    if isinstance(cause, UnicodeDecodeError):
        return "The body is not valid UTF-8, so it cannot be JSON"
    if isinstance(cause, RecursionError):
        return "The body is nested too deeply to parse"
    return "The body could not be decoded"


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 400:
        # Routes raise QueueErrors, so a 400 here is FastAPI's: it cannot decode the body at
        # all (not UTF-8, nested past the JSON parser's recursion limit). It answers `{nope`
        # with a 422.
        # Both are "this body is not JSON", so both are the documented 422 problem: a
        # client needs one status for it, not two depending on which layer noticed.
        reason = _undecodable_reason(exc.__cause__)
        return _invalid_request(request, [{"loc": ["body"], "msg": reason, "type": "body_undecodable"}])
    detail = str(exc.detail)
    allowed = (exc.headers or {}).get("Allow")
    if exc.status_code == 405 and allowed:
        detail = f"{request.method} is not allowed on {request.url.path}; it allows {allowed}."
    # Keep the exception's headers: a 405 must say which methods the path allows (`Allow`, RFC 9110).
    return http_problem(request, exc.status_code, detail, exc.headers)


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error on %s", request.url.path)
    return problem(
        request, 500, "Internal error", "An unexpected error occurred; it has been logged.", "internal-error"
    )


def install_problem_handlers(app: FastAPI) -> None:
    app.add_exception_handler(QueueError, _queue_error)
    app.add_exception_handler(RedisConnectionError, _redis_down)
    app.add_exception_handler(RedisTimeoutError, _redis_down)
    app.add_exception_handler(ResponseError, _redis_refused)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)
