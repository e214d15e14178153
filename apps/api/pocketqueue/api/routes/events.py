"""Live events as Server-Sent Events: one job's changes, or every job's, resumable by Last-Event-ID."""

from __future__ import annotations

import math
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing, asynccontextmanager
from typing import Annotated, Any

import anyio
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
from pocketqueue.observe.events import EventFilter, EventGapData, JobEventData, StreamItem

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


# Said of both streams, in each route's description and its `gap` item.
GAP_DOC = (
    "A client resuming from a Last-Event-ID older than the history kept ({kept}) is first sent one "
    "`gap` event, without an id, whose data gives that id (`last_event_id`) and the oldest one kept "
    "(`oldest_id`): the events in between may be lost (re-read the state of what matters). The stream "
    "then carries on from the oldest event kept."
)
JOB_STREAM_DOC = "One job's changes (status, progress and step, attempt errors) live, ending after its final status."
ALL_STREAM_DOC = (
    "Every job's changes live, optionally only of some tasks (`task`) and statuses (`status`), both repeatable."
)
JOB_KEPT = f"the job's last {events.JOB_EVENTS_KEPT:,} events"
ALL_KEPT = f"about the last {events.EVENTS_KEPT:,} events of all jobs"


def _stream_doc(what: str, kept: str) -> dict[int | str, dict[str, Any]]:
    # Each item described as FastAPI describes its own SSE routes (OpenAPI 3.2's `itemSchema`),
    # `data` being a JobEventData; its JobError is already a component (JobPublic's `error`).
    data = JobEventData.model_json_schema(ref_template=COMPONENT)
    data.pop("$defs", None)
    change = {
        "type": "object",
        "required": ["data", "event", "id"],
        "properties": {
            "data": {"type": "string", "contentMediaType": "application/json", "contentSchema": data},
            "event": {"type": "string", "enum": ["status", "progress"]},
            "id": {"type": "string", "description": "The stream entry id: send it back as Last-Event-ID to resume"},
        },
    }
    gap = {
        "type": "object",
        "description": GAP_DOC.format(kept=kept),
        "required": ["data", "event"],
        "properties": {
            "data": {
                "type": "string",
                "contentMediaType": "application/json",
                "contentSchema": EventGapData.model_json_schema(),
            },
            "event": {"type": "string", "const": "gap"},
        },
    }
    item = {"oneOf": [change, gap]}
    return {200: {"description": what, "content": {"text/event-stream": {"itemSchema": item}}}}


def _sse(stream: AsyncGenerator[StreamItem], timeout: float | None, slot: StreamSlot) -> EventStream:
    async def encoded() -> AsyncIterator[ServerSentEvent]:
        # aclosing: a client that goes away unsubscribes now, not when the generator is collected.
        async with aclosing(stream), _releasing(slot):
            deadline = math.inf if timeout is None else anyio.current_time() + timeout
            while True:
                # The next item is awaited in this task, under a cancel scope, not in a task of
                # its own (asyncio.wait_for): on Python 3.11 wait_for can swallow a cancel that
                # lands as the awaited step finishes, and redis-py awaits such steps, so the
                # stream went on (and held its subscription) after its timeout or its client
                # was gone. anyio delivers a cancel again at every await until it takes.
                event: StreamItem | None = None
                with anyio.move_on_after(deadline - anyio.current_time()):
                    try:
                        event = await anext(stream)
                    except StopAsyncIteration:
                        return
                if event is None:  # the deadline passed
                    return
                yield ServerSentEvent(data=event.data.model_dump_json(), event=event.event, id=event.id)

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
    description=f"{JOB_STREAM_DOC}\n\n{GAP_DOC.format(kept=JOB_KEPT)}",
    responses={
        **_stream_doc(
            "The job's events (all of them, or those after Last-Event-ID), ending after its final status",
            JOB_KEPT,
        ),
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
    description=f"{ALL_STREAM_DOC}\n\n{GAP_DOC.format(kept=ALL_KEPT)}",
    responses={
        **_stream_doc("Every job's events from now on (or after Last-Event-ID), never ending", ALL_KEPT),
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
    wanted = EventFilter(tasks=frozenset(task), statuses=frozenset(s.value for s in status))
    slot = limits.open_stream(caller)
    await runtime.events.start()
    keys = runtime.store.keys
    return _sse(events.all_events(runtime.events, runtime.redis, keys, wanted, last_event_id or None), timeout, slot)
