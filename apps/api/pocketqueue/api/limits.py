"""Limits per caller: the dispatch rate, and how many event streams it holds open.

The rate is a token bucket in Redis (jobs/lua/take_tokens.lua), so every API process
sharing the Redis shares each key's bucket: two processes behind a load balancer give a
key its rate, not twice it. Checked before anything is written: a refused dispatch queues
nothing. A batch takes one token per job, all or none.

Event streams are counted per API process (a stream is a connection to that process, and
a count in Redis would outlive a process killed with streams open).
"""

from __future__ import annotations

import math
from collections import Counter

from redis.asyncio import Redis

from pocketqueue.api.auth import Caller
from pocketqueue.config import Settings
from pocketqueue.errors import InvalidRequest, RateLimited, TooManyStreams
from pocketqueue.jobs import scripts
from pocketqueue.jobs.keys import Keys


class Limits:
    """One per API app (`app.state.limits`)."""

    def __init__(self, settings: Settings, redis: Redis) -> None:
        self.settings = settings
        self.keys = Keys(settings.queue_key_prefix)
        self._take = redis.register_script(scripts.TAKE_TOKENS)
        self._streams: Counter[str] = Counter()

    async def take_dispatches(self, caller: Caller, jobs: int = 1) -> None:
        """Take `jobs` dispatches from the caller's bucket, or raise RateLimited (nothing taken)."""
        limit = self.settings.rate_limit(caller.key)
        if limit is None:
            return
        if jobs > limit.tokens:
            raise InvalidRequest(
                f"{jobs} jobs at once exceed the dispatch rate limit's burst of {limit.tokens} "
                f"for {caller.name!r}; send them in batches of at most {limit.tokens}."
            )
        rate = limit.per_second
        taken, wait_ms = await self._take(keys=[self.keys.rate_bucket(caller.name)], args=[limit.tokens, rate, jobs])
        if not taken:
            seconds = math.ceil(int(wait_ms) / 1000)
            raise RateLimited(
                f"{caller.name!r} may dispatch {limit.tokens} jobs per {limit.seconds} s; nothing was queued. "
                f"Retry in {seconds} s.",
                retry_after=seconds,
            )

    def open_stream(self, caller: Caller) -> StreamSlot:
        """One of the caller's event-stream slots, held until released, or raise TooManyStreams."""
        most = self.settings.queue_max_streams_per_key
        if self._streams[caller.name] >= most:
            raise TooManyStreams(
                f"{caller.name!r} already has {most} event streams open on this API process "
                "(QUEUE_MAX_STREAMS_PER_KEY); close one, or follow several jobs with GET /api/queue/events.",
                retry_after=5,
            )
        self._streams[caller.name] += 1
        return StreamSlot(self._streams, caller.name)


class StreamSlot:
    """An open stream's place in its caller's count; `release` may be called more than once."""

    def __init__(self, counts: Counter[str], name: str) -> None:
        self._counts, self._name, self._held = counts, name, True

    def release(self) -> None:
        if self._held:
            self._held = False
            self._counts[self._name] -= 1
