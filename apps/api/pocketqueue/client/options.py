"""Dispatch options from Python: the same names as the HTTP body, checked the same way."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, TypedDict

from pocketqueue.errors import InvalidRequest
from pocketqueue.jobs.models import Priority
from pocketqueue.jobs.request import DispatchRequest


class DispatchOptions(TypedDict, total=False):
    """What `dispatch()`, `.with_options()` and `Client.dispatch()` accept besides arguments."""

    priority: Priority | str  # "high" | "normal" | "low"
    delay_seconds: float
    eta: datetime
    max_retries: int
    idempotency_key: str
    unique_key: str
    tags: Mapping[str, str]
    queue: str


OPTION_NAMES = frozenset(DispatchOptions.__annotations__)


def build_request(
    task: str, args: Sequence[Any] | None, kwargs: Mapping[str, Any] | None, options: Mapping[str, Any]
) -> DispatchRequest:
    """A DispatchRequest; raises InvalidRequest for an unknown option or priority.

    Everything else is checked by `jobs.dispatch.plan`, as for HTTP.
    """
    unknown = sorted(set(options) - OPTION_NAMES)
    if unknown:
        known = ", ".join(sorted(OPTION_NAMES))
        raise InvalidRequest(f"unknown dispatch option(s) {', '.join(unknown)}; known: {known}")
    try:
        priority = Priority(options.get("priority", Priority.NORMAL))
    except ValueError:
        raise InvalidRequest(f"priority must be one of high, normal, low; got {options['priority']!r}") from None
    if args is not None and not isinstance(args, list | tuple):
        raise InvalidRequest("args must be a list")
    if kwargs is not None and not isinstance(kwargs, Mapping):
        raise InvalidRequest("kwargs must be a mapping")
    tags = options.get("tags")
    return DispatchRequest(
        task,
        list(args or []),
        dict(kwargs or {}),
        priority=priority,
        max_retries=options.get("max_retries"),
        delay_seconds=options.get("delay_seconds"),
        eta=options.get("eta"),
        idempotency_key=options.get("idempotency_key"),
        unique_key=options.get("unique_key"),
        tags=dict(tags) if isinstance(tags, Mapping) else tags if tags is not None else {},
        queue=options.get("queue"),
    )
