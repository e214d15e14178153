"""Live events as Server-Sent Events: one job's changes, or every job's, resumable by Last-Event-ID."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing, asynccontextmanager
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Response
from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.background import BackgroundTask

from pocketqueue import flows
from pocketqueue.api.auth import ReadCaller
from pocketqueue.api.deps import JobIdPath, LimitsDep, RuntimeDep, new_shared
from pocketqueue.api.limits import StreamSlot
from pocketqueue.api.openapi import COMPONENT, problem_responses
from pocketqueue.jobs.models import JobStatus
from pocketqueue.observe import events
from pocketqueue.observe.events import EventFilter, JobEvent, JobEventData

router = APIRouter(tags=["events"])

# A comment line every so often keeps proxies and load balancers from closing a quiet stream.
PING_SECONDS = 15
# A client that takes this long to accept one event is gone (or stuck): its stream ends.
SEND_TIMEOUT_SECONDS = 30
MAX_FILTERS = 50
MAX_TIMEOUT_SECONDS = 86_400.0

# Some clients (a proxy with a read limit, a test, a job runner polling now and then) want a
# stream that ends by itself: it ends after `timeout` seconds, and a reconnect with
# Last-Event-ID carries on with nothing lost.
Timeout = Annotated[
    float | None,
    Query(gt=0, le=MAX_TIMEOUT_SECONDS, description="End the stream after this many seconds (resume by Last-Event-ID)"),
]

# A plain string, "" when absent: a nullable header would tell clients (and fuzzers) that
# sending the text "null" is valid.
LastEventId = Annotated[
    str,
    Header(
        alias="Last-Event-ID",
        pattern=f"^({events.ENTRY_ID.pattern.strip('^$')})?$",
        description="The `id` of the last event received: the stream resumes right after it",
    ),
]


class EventStream(EventSourceResponse):
    """sse-starlette's response, with its media type on the class, where FastAPI's document looks for it."""

    media_type = "text/event-stream"


def _stream_doc(what: str) -> dict[int | str, dict[str, Any]]:
    # Each item described as FastAPI describes its own SSE routes (OpenAPI 3.2's `itemSchema`),
    # `data` being a JobEventData; its JobError is already a component (JobPublic's `error`).
    data = JobEventData.model_json_schema(ref_template=COMPONENT)
    data.pop("$defs", None)
    item = {
        "type": "object",
        "required": ["data", "event", "id"],
        "properties": {
            "data": {"type": "string", "contentMediaType": "application/json", "contentSchema": data},
            "event": {"type": "string", "enum": ["status", "progress"]},
            "id": {"type": "string", "description": "The stream entry id: send it back as Last-Event-ID to resume"},
        },
    }
    return {200: {"description": what, "content": {"text/event-stream": {"itemSchema": item}}}}


def _sse(stream: AsyncGenerator[JobEvent], timeout: float | None, slot: StreamSlot) -> EventStream:
    async def encoded() -> AsyncIterator[ServerSentEvent]:
        # aclosing: a client that goes away unsubscribes now, not when the generator is collected.
        async with aclosing(stream), _releasing(slot):
            loop = asyncio.get_running_loop()
            deadline = None if timeout is None else loop.time() + timeout
            while True:
                try:
                    left = None if deadline is None else max(0.0, deadline - loop.time())
                    event = await asyncio.wait_for(anext(stream), left)
                except (StopAsyncIteration, TimeoutError):
                    return
                yield ServerSentEvent(data=event.data.model_dump_json(), event=event.data.type, id=event.id)

    # The slot is released when the stream ends, and by the background task in case the
    # response ended before the generator ever started (release is idempotent).
    return EventStream(
        encoded(), ping=PING_SECONDS, send_timeout=SEND_TIMEOUT_SECONDS, background=BackgroundTask(slot.release)
    )


@asynccontextmanager
async def _releasing(slot: StreamSlot) -> AsyncIterator[None]:
    try:
        yield
    finally:
        slot.release()


@router.get(
    "/jobs/{job_id}/events",
    response_class=EventStream,
    responses={
        **_stream_doc("The job's events (all of them, or those after Last-Event-ID), ending after its final status"),
        204: {"description": "The job has finished and nothing came after Last-Event-ID: a browser stops reconnecting"},
        **problem_responses(404, 422, 429, 503, descriptions={404: "No job with that id (never created, or expired)"}),
    },
)
async def stream_job_events(
    job_id: JobIdPath,
    caller: ReadCaller,
    runtime: RuntimeDep,
    limits: LimitsDep,
    last_event_id: LastEventId = "",
    timeout: Timeout = None,
) -> Response:
    """One job's changes (status, progress and step, attempt errors) live, ending after its final status."""
    shared = new_shared(runtime, job_id=job_id)
    await flows.run_flow(flows.shared_flow(flows.create_status_flow), shared)
    finished = shared["job"].status.finished
    keys = runtime.store.keys
    if finished and last_event_id and not await events.has_events_after(runtime.redis, keys, job_id, last_event_id):
        return Response(status_code=204)
    slot = limits.open_stream(caller)
    await runtime.events.start()
    return _sse(
        events.job_events(runtime.events, runtime.redis, keys, job_id, last_event_id or None, finished), timeout, slot
    )


@router.get(
    "/events",
    response_class=EventStream,
    responses={
        **_stream_doc("Every job's events from now on (or after Last-Event-ID), never ending"),
        **problem_responses(422, 429, 503),
    },
)
async def stream_events(
    caller: ReadCaller,
    runtime: RuntimeDep,
    limits: LimitsDep,
    task: Annotated[list[str], Query(max_length=MAX_FILTERS)] = [],  # noqa: B006
    status: Annotated[list[JobStatus], Query(max_length=MAX_FILTERS)] = [],  # noqa: B006
    last_event_id: LastEventId = "",
    timeout: Timeout = None,
) -> Response:
    """Every job's changes live, optionally only of some tasks (`task`) and statuses (`status`), both repeatable."""
    wanted = EventFilter(tasks=frozenset(task), statuses=frozenset(s.value for s in status))
    slot = limits.open_stream(caller)
    await runtime.events.start()
    keys = runtime.store.keys
    return _sse(events.all_events(runtime.events, runtime.redis, keys, wanted, last_event_id or None), timeout, slot)
