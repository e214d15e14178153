"""Live job events: one reader of the global event stream per process, fanned out to subscribers.

The transition scripts append every job change to the global stream `events` and to the
job's own `events:<job_id>`, with the same entry id in both (jobs/lua/includes/observe.lua).
A process serving many live clients must not hold a Redis connection, or run a read loop,
per client: one `EventHub` task blocks on XREAD of the global stream and hands each entry
to the in-memory queues of the subscribers it concerns.

A subscriber never misses an entry: it registers with the hub first (from then on every
new entry reaches its queue), then replays from the stream what came after the client's
`Last-Event-ID`, then forwards the live entries that came after the last one replayed.
The entry id orders both, so nothing is sent twice. A subscriber whose client reads too
slowly is dropped once its queue is full: its stream ends, and the client reconnects with
the id of the last event it got and replays the rest.

The history kept is bounded (the global stream ~10,000 entries, a job's list its last 1,000),
so a client may resume from an id older than anything left: it is then sent an `EventGap`
first, saying where it resumed from and the oldest entry kept, and carries on from that one.
Only a resuming client pays for the check, and within the round trip its replay makes anyway.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
from collections import defaultdict
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, cast

from pydantic import BaseModel, Field, ValidationError
from redis.asyncio import Redis
from redis.exceptions import RedisError

from pocketqueue.errors import QueueError, RedisUnavailable
from pocketqueue.jobs.keys import Keys
from pocketqueue.jobs.models import FINISHED_STATUSES, JobError
from pocketqueue.jobs.payload import check_json

log = logging.getLogger(__name__)

# The entries one XREAD takes at most: a burst is read in a few round trips, never unbounded.
READ_COUNT = 500
# How long one XREAD blocks on a quiet stream. Not a poll: entries wake it at once; this only
# bounds how long a dead connection goes unnoticed.
READ_BLOCK_MS = 5000
# Its socket timeout: past the block, or redis-py's default (5 s) cuts every quiet wait short.
READ_TIMEOUT_SECONDS = READ_BLOCK_MS / 1000 + 5
RECONNECT_DELAY_SECONDS = 0.5
# Events one subscriber may have waiting. A client this far behind is dropped (it replays on
# reconnect), so memory stays bounded by subscribers x this, whatever the clients do.
SUBSCRIBER_BUFFER = 1000
# Entries one replay round trip takes: a replay of the whole global stream (~10,000) is paged.
REPLAY_PAGE = 500
# Replay reads in flight at once. Hundreds of clients reconnecting together (a deploy, a
# network blip) would otherwise take every connection of the API's pool for their replays,
# and dispatches would wait behind them; queued a moment, each replay is one short read.
REPLAY_CONCURRENCY = 8

# The history kept, as jobs/lua/includes/observe.lua bounds it (EVENTS_MAXLEN, JOB_EVENTS_MAXLEN).
# The global stream's trim (`MAXLEN ~`) never leaves fewer entries, so one this long may have
# lost some; a job's list tells its own trim apart otherwise (see EventHub.replay_job).
EVENTS_KEPT = 10_000
JOB_EVENTS_KEPT = 1_000

# A stream entry id as Redis writes it, or its milliseconds part alone (what XRANGE accepts).
# At most 19 digits a part: Redis reads each as a 64-bit integer, and 20 digits can pass it.
ENTRY_ID = re.compile(r"^[0-9]{1,19}(-[0-9]{1,19})?$")
FINAL = frozenset(status.value for status in FINISHED_STATUSES)

# Stream entries as a client with decode_responses returns them (redis-py types the replies
# for every kind of client, bytes or str, so each read says which it has).
Entries = list[tuple[str, dict[str, str]]]


class JobEventData(BaseModel):
    """One change of a job, as the `data` of a Server-Sent Event (its `id` is the stream entry id)."""

    job_id: str
    type: Literal["status", "progress"] = Field(description="`status`: it moved; `progress`: progress or step changed")
    status: str = Field(description="The job's status after the change (`processing` for progress)")
    task: str
    attempt: int = Field(description="The attempt running, or that ran last (0 before the first)")
    progress: int = Field(description="0-100, as the task last reported it")
    step: str = Field(description="The step the task last reported ('' if none)")
    at: float = Field(description="When, in epoch seconds")
    error: JobError | None = Field(default=None, description="Why the attempt failed: on `retrying` and `failed` only")


@dataclass(frozen=True)
class JobEvent:
    """One entry of an event stream: its id and what it says."""

    id: str
    data: JobEventData

    @classmethod
    def of(cls, entry_id: str, fields: dict[str, str]) -> JobEvent:
        """An event from its fields, or from a global stream entry (one field, `event`, the JSON of them)."""
        if "event" in fields:
            fields = json.loads(fields["event"])
        error = fields.get("error")
        data = JobEventData(
            job_id=fields.get("job", ""),
            type="progress" if fields.get("type") == "progress" else "status",
            status=fields.get("status", ""),
            task=fields.get("task", ""),
            attempt=int(fields.get("attempt") or 0),
            progress=int(float(fields.get("progress") or 0)),
            step=fields.get("step", ""),
            at=float(fields.get("at") or 0),
            error=_error(error) if error else None,
        )
        return cls(entry_id, data)

    @property
    def event(self) -> str:
        """Its Server-Sent Event type: `status` or `progress`."""
        return self.data.type

    @property
    def final(self) -> bool:
        """Whether the job reached a final status with this event."""
        return self.data.type == "status" and self.data.status in FINAL


class EventGapData(BaseModel):
    """The `data` of a `gap` event: the events after `last_event_id` and before `oldest_id` are no longer kept."""

    last_event_id: str = Field(description="The Last-Event-ID the stream resumed from, older than every event kept")
    oldest_id: str = Field(description="The oldest event still kept: the stream carries on from it")


@dataclass(frozen=True)
class EventGap:
    """Sent first to a client resuming from before the history kept: what came in between may be lost.

    It has no id: a client that drops right after it still resumes from where it was (and is
    told of the gap again).
    """

    id: ClassVar[None] = None
    event: ClassVar[str] = "gap"
    data: EventGapData

    @classmethod
    def of(cls, after: str, oldest: str) -> EventGap:
        return cls(EventGapData(last_event_id=after, oldest_id=oldest))


# What an event stream sends: the events, after a gap if its resume point was lost.
StreamItem = JobEvent | EventGap


def _error(text: str) -> JobError | None:
    # As the record reads it (jobs/models.py): an error that cannot be shown as JSON (a
    # message holding lone surrogates) is left out rather than break every stream it is on.
    try:
        error = JobError.model_validate_json(text)
        for value in (error.message, error.traceback):
            check_json(value, "error", 1)
    except (ValidationError, QueueError):
        return None
    return error


def entry_key(entry_id: str) -> tuple[int, int]:
    """An entry id as a tuple that orders like Redis orders them."""
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


@dataclass(frozen=True)
class EventFilter:
    """Which events a subscriber wants: one job's, or every job's of some tasks and statuses."""

    job_id: str | None = None
    tasks: frozenset[str] = frozenset()
    statuses: frozenset[str] = frozenset()

    def matches(self, event: JobEvent) -> bool:
        data = event.data
        return (
            (self.job_id is None or data.job_id == self.job_id)
            and (not self.tasks or data.task in self.tasks)
            and (not self.statuses or data.status in self.statuses)
        )


class Subscription:
    """One client's bounded queue of live events; `None` in it means the stream is over."""

    def __init__(self, wanted: EventFilter, size: int = SUBSCRIBER_BUFFER) -> None:
        self.wanted = wanted
        self._queue: asyncio.Queue[JobEvent | None] = asyncio.Queue(size)
        self.closed = False

    def offer(self, event: JobEvent) -> bool:
        """Queue `event`; False (and closed) if the client is too far behind."""
        try:
            self._queue.put_nowait(event)
        except asyncio.QueueFull:
            self.close()
            return False
        return True

    def close(self) -> None:
        # Drop what is queued: the client's last event is then the last one it got, with
        # no gap after it, and its reconnect replays from there.
        if not self.closed:
            self.closed = True
            while not self._queue.empty():
                self._queue.get_nowait()
            self._queue.put_nowait(None)

    async def live(self, after: str | None) -> AsyncIterator[JobEvent]:
        """The live events newer than `after` (those older were replayed), until closed."""
        newest = entry_key(after) if after else (0, 0)
        while (event := await self._queue.get()) is not None:
            if entry_key(event.id) > newest:
                newest = entry_key(event.id)
                yield event


class EventHub:
    """The process's one reader of the global event stream, fanning entries out to subscribers."""

    def __init__(self, redis: Redis, keys: Keys) -> None:
        self._redis = redis  # its own (see from_url); the hub closes it when it stops
        self._stream = keys.events()
        self._all: set[Subscription] = set()
        self._by_job: defaultdict[str, set[Subscription]] = defaultdict(set)
        self._cursor = "0-0"
        self._task: asyncio.Task[None] | None = None
        self._starting = asyncio.Lock()
        self._replaying = asyncio.Semaphore(REPLAY_CONCURRENCY)

    @classmethod
    def from_url(cls, url: str, keys: Keys) -> EventHub:
        """A hub with a client of its own: XREAD BLOCK holds its connection for as long as it waits."""
        redis = Redis.from_url(
            url,
            decode_responses=True,
            socket_connect_timeout=2,
            socket_timeout=READ_TIMEOUT_SECONDS,
            socket_keepalive=True,
        )
        return cls(redis, keys)

    @property
    def subscribers(self) -> int:
        return len(self._all) + sum(len(subs) for subs in self._by_job.values())

    async def start(self) -> None:
        """Start reading (once); raises RedisUnavailable if the stream's end cannot be read."""
        async with self._starting:
            if self._task is not None:
                return
            # Read from the stream's current end, an id rather than `$`: a subscriber that
            # registers now replays up to at least this id and gets every entry after it.
            try:
                newest = cast(Entries, await self._redis.xrevrange(self._stream, count=1))
            except (RedisError, OSError) as exc:
                raise RedisUnavailable() from exc
            self._cursor = newest[0][0] if newest else "0-0"
            self._task = asyncio.create_task(self._read(), name="pocketqueue-event-hub")

    async def stop(self) -> None:
        """Stop reading, end every subscriber's stream, and close the hub's connection."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        for subscription in [*self._all, *(s for subs in self._by_job.values() for s in subs)]:
            subscription.close()
        self._all.clear()
        self._by_job.clear()
        await self._redis.aclose()

    @contextlib.asynccontextmanager
    async def subscribe(self, wanted: EventFilter) -> AsyncIterator[Subscription]:
        """A subscription to the live events `wanted` picks, for as long as the block runs."""
        await self.start()
        subscription = Subscription(wanted)
        group = self._all if wanted.job_id is None else self._by_job[wanted.job_id]
        group.add(subscription)
        try:
            yield subscription
        finally:
            self._forget(subscription)

    async def replay(self, redis: Redis, stream: str, after: str | None) -> AsyncIterator[StreamItem]:
        """The entries of `stream` after `after` (all if None), oldest first, a page per round trip.

        First an `EventGap` if the stream has been trimmed past `after`.
        """
        if after is None:
            entries = await self._page(redis, stream, "-")
        else:
            gap, entries = await self._resume(redis, stream, after)
            if gap is not None:
                yield gap
        while True:
            for entry_id, fields in entries:
                yield JobEvent.of(entry_id, fields)
            if len(entries) < REPLAY_PAGE:
                return
            entries = await self._page(redis, stream, f"({entries[-1][0]}")

    async def _page(self, redis: Redis, stream: str, start: str) -> Entries:
        async with self._replaying:
            return cast(Entries, await redis.xrange(stream, min=start, max="+", count=REPLAY_PAGE))

    async def _resume(self, redis: Redis, stream: str, after: str) -> tuple[EventGap | None, Entries]:
        # The first page and the stream's first entry in one step (MULTI): a trim in between
        # could otherwise drop entries that neither the gap nor the page would mention.
        async with self._replaying, redis.pipeline(transaction=True) as pipe:
            pipe.xinfo_stream(stream)
            pipe.xrange(stream, min=f"({after}", max="+", count=REPLAY_PAGE)
            info, entries = await pipe.execute(raise_on_error=False)
        if isinstance(entries, Exception):
            raise entries
        if not isinstance(info, dict) or not info.get("first-entry"):  # no stream (XINFO's error) or empty
            return None, cast(Entries, entries)
        oldest = cast(str, info["first-entry"][0])
        if entry_key(after) < entry_key(oldest) and _trimmed(info):
            return EventGap.of(after, oldest), cast(Entries, entries)
        return None, cast(Entries, entries)

    async def replay_job(self, redis: Redis, keys: Keys, job_id: str, after: str | None) -> AsyncIterator[StreamItem]:
        """The job's own events (a list of `<entry id> <JSON>`, its last 1,000) after `after`, oldest first.

        First an `EventGap` if `after` is older than the first event kept and that one is not
        the job's first (create.lua's, whose `at` is the record's `created_at`): the job has
        had more events than its list holds. Only a resume reads `created_at`, in the same
        round trip as the list.
        """
        key = keys.events(job_id)
        created: str | None = None
        async with self._replaying:
            try:
                if after is None:
                    lines = cast(list[str], await redis.lrange(key, 0, -1))
                else:
                    async with redis.pipeline(transaction=True) as pipe:
                        pipe.lrange(key, 0, -1)
                        pipe.hget(keys.job(job_id), "created_at")
                        lines, created = await pipe.execute()
            except (RedisError, OSError) as exc:
                raise RedisUnavailable() from exc
        since = entry_key(after) if after else None
        if since is not None and lines and created is not None:
            oldest, _, text = lines[0].partition(" ")
            if since < entry_key(oldest) and str(json.loads(text).get("at")) != created:
                yield EventGap.of(cast(str, after), oldest)
        for line in lines:
            entry_id, _, text = line.partition(" ")
            if since is None or entry_key(entry_id) > since:
                yield JobEvent.of(entry_id, json.loads(text))

    def _forget(self, subscription: Subscription) -> None:
        job_id = subscription.wanted.job_id
        if job_id is None:
            self._all.discard(subscription)
        elif (subs := self._by_job.get(job_id)) is not None:
            subs.discard(subscription)
            if not subs:
                del self._by_job[job_id]

    def _fan_out(self, event: JobEvent) -> None:
        interested = [*self._all, *self._by_job.get(event.data.job_id, ())]
        for subscription in interested:
            if subscription.wanted.matches(event) and not subscription.offer(event):
                log.info("event subscriber fell %d events behind; its stream ends", SUBSCRIBER_BUFFER)
                self._forget(subscription)

    async def _read(self) -> None:
        while True:
            try:
                read = self._redis.xread({self._stream: self._cursor}, count=READ_COUNT, block=READ_BLOCK_MS)
                reply = cast(list[tuple[str, Entries]] | None, await read)
            except (RedisError, OSError) as exc:
                # The cursor survives: after a reconnect the read resumes where it stopped.
                log.warning("event hub lost Redis (%s); reconnecting", exc)
                await asyncio.sleep(RECONNECT_DELAY_SECONDS)
                continue
            except Exception:  # never let the one reader die: every live client would go quiet
                log.exception("event hub failed; restarting it")
                await asyncio.sleep(RECONNECT_DELAY_SECONDS)
                continue
            for _stream, entries in reply or ():
                for entry_id, fields in entries:
                    self._cursor = entry_id
                    self._fan_out(JobEvent.of(entry_id, fields))


def _trimmed(info: dict[str, Any]) -> bool:
    """Whether a stream (as XINFO STREAM describes it) has lost entries to trimming.

    Redis 7 counts every entry ever added; 6.2 does not, but its approximate trim never
    leaves fewer entries than the bound.
    """
    length, added = int(info["length"]), info.get("entries-added")
    return length >= EVENTS_KEPT or (added is not None and int(added) > length)


async def job_events(
    hub: EventHub, redis: Redis, keys: Keys, job_id: str, after: str | None, finished: bool
) -> AsyncGenerator[StreamItem]:
    """One job's events after `after` (a gap first if it is older than those kept), ending with its final status.

    `finished`: the job's state as read before.
    """
    async with hub.subscribe(EventFilter(job_id=job_id)) as subscription:
        last: JobEvent | None = None
        async for event in hub.replay_job(redis, keys, job_id, after):
            if isinstance(event, JobEvent):
                last = event
            yield event
        # The replay ends the stream if its newest event is final; a final event older than
        # others (a failed job re-driven since) does not.
        if (last.final if last else finished) or subscription.closed:
            return
        async for event in subscription.live(last.id if last else after):
            yield event
            if event.final:
                return


async def all_events(
    hub: EventHub, redis: Redis, keys: Keys, wanted: EventFilter, after: str | None
) -> AsyncGenerator[StreamItem]:
    """Every job's events that `wanted` picks: those after `after` (if given), then live ones.

    A gap, if `after` is older than the stream kept, is sent whatever the filter: the
    events lost may have been ones it picks.
    """
    async with hub.subscribe(wanted) as subscription:
        last = after
        if after is not None:
            async for event in hub.replay(redis, keys.events(), after):
                if isinstance(event, EventGap):
                    yield event
                    continue
                last = event.id
                if wanted.matches(event):
                    yield event
        async for event in subscription.live(last):
            yield event


async def has_events_after(redis: Redis, keys: Keys, job_id: str, after: str) -> bool:
    """Whether the job's own events hold anything after `after` (its newest is later)."""
    try:
        newest = cast(str | None, await redis.lindex(keys.events(job_id), -1))
    except (RedisError, OSError) as exc:
        raise RedisUnavailable() from exc
    return newest is not None and entry_key(newest.partition(" ")[0]) > entry_key(after)
