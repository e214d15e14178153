"""Live events over Server-Sent Events: a job's changes in order, resumed by Last-Event-ID,
every job's filtered by task and status, 500 clients on one API process, and the `gap` a
client resuming from before the history kept is told of.

The API runs as `python -m pocketqueue api` (uvicorn on a loopback port): httpx's in-process
transport buffers a whole response, so a stream that has not ended could not be read.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import aclosing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from redis.asyncio import Redis as AsyncRedis

from conftest import ApiProcess, WorkerProcess, make_settings
from pocketqueue.config import Settings
from pocketqueue.jobs.keys import Keys, queue_lists
from pocketqueue.observe import events as events_module
from pocketqueue.observe.events import (
    EVENTS_KEPT,
    JOB_EVENTS_KEPT,
    SUBSCRIBER_BUFFER,
    EventFilter,
    EventHub,
    StreamItem,
    all_events,
    entry_key,
)
from pocketqueue.runtime import MAX_CONNECTIONS
from test_api import assert_problem

SUBSCRIBERS = 500


@dataclass(frozen=True)
class Event:
    id: str
    event: str
    data: dict[str, Any]


async def sse_events(response: httpx.Response) -> AsyncIterator[Event]:
    """The events of a `text/event-stream` body, as a browser's EventSource dispatches them."""
    fields: dict[str, str] = {}
    async for line in response.aiter_lines():
        if not line:
            if "data" in fields:
                yield Event(fields.get("id", ""), fields.get("event", "message"), json.loads(fields["data"]))
            fields = {}
        elif not line.startswith(":"):  # a comment: the keep-alive ping
            name, _, value = line.partition(":")
            fields[name] = value.removeprefix(" ")


async def read(stream: AsyncIterator[Event], count: int | None = None) -> list[Event]:
    """The next `count` events of `stream` (from `sse_events`), or (None) every one until it ends."""
    events: list[Event] = []
    async for event in stream:
        events.append(event)
        if len(events) == count:
            break
    return events


def summary(events: list[Event]) -> list[tuple[str, str, int, str]]:
    return [(e.event, e.data["status"], e.data["progress"], e.data["step"]) for e in events]


def ordered(events: list[Event]) -> bool:
    keys = [tuple(int(part) for part in e.id.split("-")) for e in events]
    return keys == sorted(set(keys))


@pytest.fixture(scope="module")
def api(settings: Settings, worker: WorkerProcess, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`python -m pocketqueue api` on a free loopback port; yields its base URL and leaves its pid."""
    # One anonymous caller opens the 500 streams of the load test: past the default 100.
    log = tmp_path_factory.mktemp("events-api") / "api.log"
    process = ApiProcess(settings, log, QUEUE_MAX_STREAMS_PER_KEY="1000")
    try:
        process.wait_ready()
        API_PIDS[process.url] = process.process.pid
        yield process.url
    finally:
        process.stop()


API_PIDS: dict[str, int] = {}


@pytest.fixture
async def client(api: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=api, timeout=httpx.Timeout(20.0)) as c:
        yield c


async def dispatch(client: httpx.AsyncClient, task: str, **body: Any) -> str:
    response = await client.post("/api/queue/dispatch", json={"task": task, **body})
    assert response.status_code == 202, response.text
    job_id: str = response.json()["job_id"]
    return job_id


async def held_job(client: httpx.AsyncClient, folder: Path) -> str:
    """A job that reports 10%, waits for `folder/outage` to exist, reports 90% and completes."""
    return await dispatch(client, "tests.progress_in_outage", kwargs={"folder": str(folder), "hold": False})


HELD_JOB_EVENTS = [
    ("status", "queued", 0, ""),
    ("status", "processing", 0, ""),
    ("progress", "processing", 10, "before the outage"),
    ("progress", "processing", 90, "during the outage"),
    ("status", "completed", 100, "during the outage"),
]


async def test_a_jobs_events_arrive_live_in_order_and_the_stream_ends(
    client: httpx.AsyncClient, tmp_path: Path
) -> None:
    job_id = await held_job(client, tmp_path)
    async with client.stream("GET", f"/api/queue/jobs/{job_id}/events") as response:
        stream = sse_events(response)
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        first = await read(stream, 3)  # the job now waits for the file: what follows comes live
        (tmp_path / "outage").touch()
        rest = await read(stream)  # returns only because the server ended the stream
    events = first + rest
    assert summary(events) == HELD_JOB_EVENTS
    assert ordered(events)
    assert {e.data["job_id"] for e in events} == {job_id}
    assert {e.data["task"] for e in events} == {"tests.progress_in_outage"}
    assert [e.data["attempt"] for e in events] == [0, 1, 1, 1, 1]
    assert all(e.data["error"] is None for e in events)


async def test_a_failed_attempt_shows_as_retrying_with_its_error(client: httpx.AsyncClient) -> None:
    job_id = await dispatch(client, "tests.fails_then_holds", args=[0], max_retries=1)
    async with client.stream("GET", f"/api/queue/jobs/{job_id}/events") as response:
        stream = sse_events(response)
        events = await read(stream)
    assert summary(events) == [
        ("status", "queued", 0, ""),
        ("status", "processing", 0, ""),
        ("progress", "processing", 80, "attempt 1: nearly done"),
        ("status", "retrying", 80, "attempt 1: nearly done"),
        ("status", "queued", 80, "attempt 1: nearly done"),
        ("status", "processing", 0, ""),  # a new attempt starts from nothing
        ("progress", "processing", 50, "attempt 2: half way"),
        ("status", "completed", 100, "attempt 2: half way"),
    ]
    retrying = events[3].data
    assert retrying["attempt"] == 1
    assert retrying["error"]["type"] == "RuntimeError"
    assert retrying["error"]["message"] == "attempt 1 failed on purpose"
    assert retrying["error"]["attempt"] == 1
    assert [e.data["attempt"] for e in events[-3:]] == [2, 2, 2]
    assert all(e.data["error"] is None for e in events if e.data["status"] != "retrying")


async def test_a_reconnect_with_last_event_id_gets_exactly_the_rest(client: httpx.AsyncClient, tmp_path: Path) -> None:
    job_id = await held_job(client, tmp_path)
    url = f"/api/queue/jobs/{job_id}/events"
    async with client.stream("GET", url) as response:
        stream = sse_events(response)
        before = await read(stream, 2)  # then the client goes away
    (tmp_path / "outage").touch()  # the job goes on without it
    async with client.stream("GET", url, headers={"Last-Event-ID": before[-1].id}) as response:
        stream = sse_events(response)
        after = await read(stream)
    assert summary(before + after) == HELD_JOB_EVENTS
    assert ordered(before + after)
    # The same as a client that watched it all: no gap, no repeat.
    async with client.stream("GET", url) as response:
        stream = sse_events(response)
        assert [e.id for e in await read(stream)] == [e.id for e in before + after]
    # A browser's EventSource reconnects when a stream ends; once the job is over and the
    # client has everything, a 204 tells it to stop.
    done = await client.get(url, headers={"Last-Event-ID": after[-1].id})
    assert done.status_code == 204
    assert done.content == b""


async def test_the_global_stream_is_filtered_by_task_and_status(
    client: httpx.AsyncClient, sync_redis: redis.Redis, settings: Settings
) -> None:
    newest = sync_redis.xrevrange(f"{settings.queue_key_prefix}:events", count=1)
    since = newest[0][0] if newest else "0-0"
    params = [("task", "tests.add"), ("task", "tests.fail"), ("status", "completed"), ("status", "failed")]
    added = await dispatch(client, "tests.add", args=[1, 2])
    failed = await dispatch(client, "tests.fail", args=["no good"])
    other = await dispatch(client, "tests.partial", args=[[1, 2]])  # another task: never shown
    for job_id in (added, failed, other):
        assert (await client.get(f"/api/queue/wait/{job_id}", params={"timeout": 15})).status_code == 200
    # Resumed from before the dispatches, so the replay and the live part both count.
    async with client.stream("GET", "/api/queue/events", params=params, headers={"Last-Event-ID": since}) as response:
        stream = sse_events(response)
        assert response.status_code == 200
        events = await read(stream, 2)
        late = await dispatch(client, "tests.add", args=[2, 3])
        events += await read(stream, 1)
    assert [(e.data["job_id"], e.event, e.data["status"]) for e in events] == [
        (added, "status", "completed"),
        (failed, "status", "failed"),
        (late, "status", "completed"),
    ]
    assert events[1].data["error"]["type"] == "ValueError"
    assert events[1].data["error"]["message"] == "no good"
    assert ordered(events)
    # One status filter alone: every task's events of that status.
    async with client.stream(
        "GET", "/api/queue/events", params={"status": "queued"}, headers={"Last-Event-ID": since}
    ) as response:
        queued = await read(sse_events(response), 4)
    assert [(e.data["job_id"], e.data["status"]) for e in queued] == [
        (added, "queued"),
        (failed, "queued"),
        (other, "queued"),
        (late, "queued"),
    ]


async def test_an_unknown_job_or_a_malformed_last_event_id_is_a_problem(client: httpx.AsyncClient) -> None:
    missing = await client.get("/api/queue/jobs/no-such-job/events")
    assert_problem(missing, 404, "job-not-found")
    job_id = await dispatch(client, "tests.add", args=[1, 1])
    bad = await client.get(f"/api/queue/jobs/{job_id}/events", headers={"Last-Event-ID": "yesterday"})
    assert_problem(bad, 422, "invalid-request")
    bad_status = await client.get("/api/queue/events", params={"status": "sleeping"})
    assert_problem(bad_status, 422, "invalid-request")


async def test_a_stream_with_a_timeout_ends_by_itself_and_resumes_by_last_event_id(
    client: httpx.AsyncClient, tmp_path: Path
) -> None:
    job_id = await held_job(client, tmp_path)  # stays at 10% until `outage` exists
    seen: list[Event] = []
    async with client.stream("GET", f"/api/queue/jobs/{job_id}/events", params={"timeout": 1.5}) as response:
        assert response.status_code == 200
        seen += await read(sse_events(response))  # ends by itself, the job still running
    assert [e.data["status"] for e in seen][-1] == "processing"
    (tmp_path / "outage").touch()
    headers = {"Last-Event-ID": seen[-1].id}
    async with client.stream("GET", f"/api/queue/jobs/{job_id}/events", headers=headers) as response:
        rest = await read(sse_events(response))
    assert summary(seen + rest) == HELD_JOB_EVENTS
    async with client.stream("GET", "/api/queue/events", params={"timeout": 0.5}) as response:
        assert response.status_code == 200
        await read(sse_events(response))  # the never-ending stream ended: the read returned
    bad = await client.get("/api/queue/events", params={"timeout": 0})
    assert_problem(bad, 422, "invalid-request")


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def api_connections(sync_redis: redis.Redis) -> int:
    """Redis connections open now, less the test's own."""
    return len(sync_redis.client_list()) - 1


async def test_500_subscribers_on_one_api_process_all_get_every_event(
    api: str, sync_redis: redis.Redis, tmp_path: Path
) -> None:
    limits = httpx.Limits(max_connections=SUBSCRIBERS + 10, max_keepalive_connections=SUBSCRIBERS + 10)
    async with httpx.AsyncClient(base_url=api, timeout=httpx.Timeout(30.0), limits=limits) as many:
        job_id = await held_job(many, tmp_path)
        await read_until_processing(many, job_id)
        connections_before, rss_before = api_connections(sync_redis), rss_kib(API_PIDS[api])
        started = time.monotonic()
        connected = 0
        all_connected = asyncio.Event()

        async def subscribe() -> list[Event]:
            nonlocal connected
            async with many.stream("GET", f"/api/queue/jobs/{job_id}/events") as response:
                stream = sse_events(response)
                assert response.status_code == 200
                first = await read(stream, 3)
                connected += 1
                if connected == SUBSCRIBERS:
                    all_connected.set()
                return first + await read(stream)

        subscribers = [asyncio.create_task(subscribe()) for _ in range(SUBSCRIBERS)]
        await asyncio.wait_for(all_connected.wait(), 20)
        connect_seconds = time.monotonic() - started
        connections_during, rss_during = api_connections(sync_redis), rss_kib(API_PIDS[api])
        blocked = [c["cmd"] for c in sync_redis.client_list() if "b" in c["flags"]]
        cpu_before = cpu_seconds(API_PIDS[api])
        (tmp_path / "outage").touch()  # the rest arrive live, through the one reader
        received = await asyncio.wait_for(asyncio.gather(*subscribers), 20)
        total_seconds = time.monotonic() - started
        live_cpu = cpu_seconds(API_PIDS[api]) - cpu_before
    print(
        f"\n{SUBSCRIBERS} subscribers: all connected and replayed in {connect_seconds:.2f} s, "
        f"all done in {total_seconds:.2f} s (API CPU for the live part: {live_cpu:.2f} s); "
        f"API RSS {rss_before // 1024} -> {rss_during // 1024} MiB; "
        f"Redis connections {connections_before} -> {connections_during} (blocked: {blocked})"
    )
    assert all(summary(events) == HELD_JOB_EVENTS for events in received)
    assert len({tuple(e.id for e in events) for events in received}) == 1  # the same ids for everyone
    # While 500 streams are live, one connection waits on Redis for all of them (the worker's
    # BRPOP aside); the request burst that opened them grew the API's pool, which stays
    # within its bound whatever the number of clients.
    assert sorted(blocked) in (["xread"], ["brpop", "xread"])
    assert connections_during - connections_before <= MAX_CONNECTIONS + 2  # the pool, the reader, the watcher


async def read_until_processing(client: httpx.AsyncClient, job_id: str) -> None:
    async with client.stream("GET", f"/api/queue/jobs/{job_id}/events") as response:
        stream = sse_events(response)
        await read(stream, 3)  # queued, processing, 10%: it now waits for the file


async def eventually(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    """`wait_until` for the test's own event loop, which the hub shares: it must keep running."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"condition not met within {timeout} s"
        await asyncio.sleep(0.02)


async def test_a_subscriber_too_far_behind_is_dropped_and_catches_up_by_replay(
    redis_url: str, sync_redis: redis.Redis
) -> None:
    keys = Keys(f"pqtest-events-{uuid.uuid4().hex[:8]}")  # a stream of its own, written here as the scripts do
    hub = EventHub.from_url(redis_url, keys)
    reader = AsyncRedis.from_url(redis_url, decode_responses=True)
    fields = {"job": "j1", "type": "progress", "status": "processing", "task": "t", "attempt": "1", "at": "1"}
    try:
        async with hub.subscribe(EventFilter()) as slow, hub.subscribe(EventFilter(job_id="j1")) as reading:
            got: list[str] = []

            async def read_along() -> None:
                async for event in reading.live(None):
                    got.append(event.id)

            reader_task = asyncio.create_task(read_along())
            ids = []
            for n in range(SUBSCRIBER_BUFFER + 20):
                ids.append(sync_redis.xadd(keys.events(), {**fields, "progress": str(n % 100)}))
                if n % 100 == 0:
                    await asyncio.sleep(0.01)  # the reader keeps up, as a client on a fast link does
            await eventually(lambda: slow.closed and len(got) == len(ids))
            assert got == ids
            assert not reading.closed
            # Nothing after the drop is handed on: its client's last event is the last it got.
            assert [event async for event in slow.live(None)] == []
            reader_task.cancel()
        assert hub.subscribers == 0
        # The client reconnects with the id of the last event it got (say the 5th) and replays.
        resumed = all_events(hub, reader, keys, EventFilter(), after=ids[4])
        async with aclosing(resumed):
            replayed = [event.id async for event, _ in zip_range(resumed, len(ids) - 5)]
        assert replayed == ids[5:]
    finally:
        await hub.stop()
        sync_redis.delete(keys.events())
        await reader.aclose()


async def zip_range(stream: AsyncIterator[StreamItem], count: int) -> AsyncIterator[tuple[StreamItem, int]]:
    """The first `count` items of an endless stream."""
    n = 0
    async for item in stream:
        yield item, n
        n += 1
        if n == count:
            return


# --- a resume from before the history kept: the `gap` event ---------------------------


def test_the_history_bounds_are_the_ones_observe_lua_trims_to() -> None:
    lua = Path(events_module.__file__).parents[1] / "jobs" / "lua" / "includes" / "observe.lua"
    bounds = re.search(r"local EVENTS_MAXLEN, JOB_EVENTS_MAXLEN[^=]*= '(\d+)', (\d+)", lua.read_text())
    assert bounds, "observe.lua no longer declares its bounds as expected"
    assert (int(bounds[1]), int(bounds[2])) == (EVENTS_KEPT, JOB_EVENTS_KEPT)


@pytest.fixture(scope="module")
def gap_settings(redis_url: str, session_id: str) -> Settings:
    # A key prefix of its own: the test below floods and trims this global stream, which
    # must not take history from the session's other tests.
    return make_settings(redis_url, f"{session_id}-gap")


@pytest.fixture(scope="module")
def gap_api(gap_settings: Settings, tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[str]:
    """An API process on `gap_settings` (no worker: its jobs are scheduled an hour out)."""
    # Few streams per caller: one that ended but kept its slot shows as a 429 (see below).
    process = ApiProcess(gap_settings, tmp_path_factory.mktemp("gap-api") / "api.log", QUEUE_MAX_STREAMS_PER_KEY="3")
    try:
        process.wait_ready()
        yield process.url
    finally:
        process.stop()
        cleanup = redis.Redis.from_url(redis_url, decode_responses=True)
        keys = list(cleanup.scan_iter(f"{gap_settings.queue_key_prefix}:*", count=1000))
        cleanup.delete(*keys, *queue_lists(gap_settings.queue_name))
        cleanup.close()


def own_event_ids(sync_redis: redis.Redis, settings: Settings, job_id: str) -> list[str]:
    lines: list[str] = sync_redis.lrange(Keys(settings.queue_key_prefix).events(job_id), 0, -1)
    return [line.partition(" ")[0] for line in lines]


def flood(sync_redis: redis.Redis, stream: str, count: int) -> None:
    """`count` events of a made-up job, appended as observe.lua's emit() appends (XADD MAXLEN ~ the bound)."""
    fields = {"job": "filler", "type": "progress", "status": "processing", "task": "tests.filler", "attempt": "1"}
    entry = {"event": json.dumps({**fields, "progress": "50", "step": "", "at": f"{time.time():.6f}"})}
    with sync_redis.pipeline(transaction=False) as pipe:
        for _ in range(count):
            pipe.xadd(stream, entry, maxlen=EVENTS_KEPT, approximate=True)
        pipe.execute()


async def test_a_resume_from_before_the_global_stream_kept_starts_with_a_gap(
    gap_api: str, gap_settings: Settings, sync_redis: redis.Redis
) -> None:
    stream = Keys(gap_settings.queue_key_prefix).events()
    async with httpx.AsyncClient(base_url=gap_api, timeout=httpx.Timeout(20.0)) as client:
        job_id = await dispatch(client, "tests.add", args=[1, 2], delay_seconds=3600)
        [resumed_from] = own_event_ids(sync_redis, gap_settings, job_id)  # `scheduled`, the stream's first entry
        # More events than the stream keeps: the trim that goes with them drops the oldest,
        # the job's among them, as it does under load.
        flood(sync_redis, stream, EVENTS_KEPT + 500)
        oldest, second = [entry_id for entry_id, _ in sync_redis.xrange(stream, count=2)]
        assert entry_key(resumed_from) < entry_key(oldest)
        headers = {"Last-Event-ID": resumed_from}
        async with client.stream("GET", "/api/queue/events", headers=headers) as response:
            assert response.status_code == 200
            got = await read(sse_events(response), 2)
        # First the gap (with no id: the client's Last-Event-ID stays where it was), then
        # the oldest entry kept.
        assert got[0] == Event("", "gap", {"last_event_id": resumed_from, "oldest_id": oldest})
        assert (got[1].id, got[1].event, got[1].data["job_id"]) == (oldest, "progress", "filler")
        # The gap is told whatever the filters: the events lost may have been ones they pick.
        params = {"task": "tests.add", "timeout": 0.5}
        async with client.stream("GET", "/api/queue/events", params=params, headers=headers) as response:
            assert [e.event for e in await read(sse_events(response))] == ["gap"]
        # Resumed from an entry still kept: no gap, the entry right after it.
        async with client.stream("GET", "/api/queue/events", headers={"Last-Event-ID": oldest}) as response:
            assert [e.id for e in await read(sse_events(response), 1)] == [second]
        # Not resuming: from now on, and no gap.
        async with client.stream("GET", "/api/queue/events", params={"timeout": 0.5}) as response:
            assert "gap" not in [e.event for e in await read(sse_events(response))]
        # A timeout that lands mid-replay ends the stream and frees its slot, every time (the
        # route once awaited through asyncio.wait_for, which on Python 3.11 can swallow that
        # cancel: the stream then never ended, and kept its slot, 3 per caller here).
        for _ in range(4):
            params = {"task": "tests.add", "timeout": 0.15}
            async with client.stream("GET", "/api/queue/events", params=params, headers=headers) as response:
                assert response.status_code == 200, await response.aread()
                assert [e.event for e in await read(sse_events(response))] == ["gap"]


async def test_a_resume_from_before_a_jobs_kept_events_starts_with_a_gap(
    client: httpx.AsyncClient, sync_redis: redis.Redis, settings: Settings
) -> None:
    job_id = await dispatch(client, "tests.add", args=[1, 2])
    assert (await client.get(f"/api/queue/wait/{job_id}", params={"timeout": 15})).status_code == 200
    ids = own_event_ids(sync_redis, settings, job_id)
    assert len(ids) >= 3  # queued, processing, completed
    url = f"/api/queue/jobs/{job_id}/events"
    # Nothing trimmed: a resume from before the job's first event has lost nothing.
    async with client.stream("GET", url, headers={"Last-Event-ID": "1"}) as response:
        assert [e.id for e in await read(sse_events(response))] == ids
    # Trimmed as observe.lua trims a job's list (LTRIM to the newest), here to the last two:
    # as a job with more than 1,000 events is.
    sync_redis.ltrim(Keys(settings.queue_key_prefix).events(job_id), -2, -1)
    for resumed_from in (ids[0], "1"):
        async with client.stream("GET", url, headers={"Last-Event-ID": resumed_from}) as response:
            assert response.status_code == 200
            got = await read(sse_events(response))  # returns only because the server ended the stream
        assert got[0] == Event("", "gap", {"last_event_id": resumed_from, "oldest_id": ids[-2]})
        assert [e.id for e in got[1:]] == ids[-2:]
        assert got[-1].data["status"] == "completed"
    # Resumed from an event still kept: no gap.
    async with client.stream("GET", url, headers={"Last-Event-ID": ids[-2]}) as response:
        assert [(e.event, e.id) for e in await read(sse_events(response))] == [("status", ids[-1])]
    # Not resuming: what is kept, and no gap.
    async with client.stream("GET", url) as response:
        assert [e.id for e in await read(sse_events(response))] == ids[-2:]


async def test_the_gap_event_is_documented_on_both_streams(client: httpx.AsyncClient) -> None:
    spec = (await client.get("/openapi.json")).json()
    for path, kept in [("/api/queue/jobs/{job_id}/events", "1,000"), ("/api/queue/events", "10,000")]:
        operation = spec["paths"][path]["get"]
        assert "`gap`" in operation["description"]
        assert kept in operation["description"]
        items = operation["responses"]["200"]["content"]["text/event-stream"]["itemSchema"]["oneOf"]
        [gap] = [item for item in items if item["properties"]["event"].get("const") == "gap"]
        assert set(gap["properties"]["data"]["contentSchema"]["properties"]) == {"last_event_id", "oldest_id"}
        assert "id" not in gap["properties"]
        assert kept in gap["description"]


async def test_a_cancel_is_the_last_event_of_a_jobs_stream(client: httpx.AsyncClient) -> None:
    job_id = await dispatch(client, "tests.add", args=[1, 2], delay_seconds=3600)
    url = f"/api/queue/jobs/{job_id}/events"
    async with client.stream("GET", url) as response:
        stream = sse_events(response)
        first = await read(stream, 1)  # replayed after subscribing: what follows comes live
        cancelled = await client.delete(f"/api/queue/cancel/{job_id}")
        assert cancelled.status_code == 200, cancelled.text
        rest = await asyncio.wait_for(read(stream), 10)  # returns only because the server ended the stream
    assert [(e.event, e.data["status"]) for e in first + rest] == [("status", "scheduled"), ("status", "cancelled")]
    assert ordered(first + rest)
    done = await client.get(url, headers={"Last-Event-ID": rest[-1].id})
    assert done.status_code == 204
