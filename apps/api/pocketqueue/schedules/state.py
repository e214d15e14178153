"""Each schedule's state in Redis, shared by every worker and API process (Keys.schedule_state).

One hash per schedule:
    slot        the last slot handled (fired, or skipped: missed with catch_up="skip", or paused)
    fired_slot  the last slot fired, job_id its job, fired_at when (seconds since the epoch)
    paused      "1" while paused (absent otherwise)

Only the janitor's leader moves `slot`, and only forward (jobs/lua/schedule_advance.lua),
after it has dispatched that slot's job; the API writes only `paused`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import redis
from redis.asyncio import Redis as AsyncRedis

from pocketqueue.jobs import scripts
from pocketqueue.jobs.keys import Keys
from pocketqueue.schedules.model import Schedule

# How long a schedule's state outlives the last time a leader (or the API) touched it:
# long enough to ride out any outage, short enough that a deleted schedule goes away.
STATE_TTL_SECONDS = 30 * 86_400
FIELDS = ("slot", "fired_slot", "job_id", "fired_at", "paused")


@dataclass(frozen=True)
class ScheduleState:
    """What Redis holds about one schedule (all None for a schedule no leader has seen yet)."""

    slot: int | None = None
    fired_slot: int | None = None
    job_id: str | None = None
    fired_at: float | None = None
    paused: bool = False

    @classmethod
    def parse(cls, values: Sequence[str | None]) -> ScheduleState:
        slot, fired_slot, job_id, fired_at, paused = values
        return cls(
            slot=int(slot) if slot else None,
            fired_slot=int(fired_slot) if fired_slot else None,
            job_id=job_id or None,
            fired_at=float(fired_at) if fired_at else None,
            paused=paused == "1",
        )


@dataclass(frozen=True)
class ScheduleView:
    """A schedule as the API shows it: its declaration, its state, and when it fires next."""

    schedule: Schedule
    state: ScheduleState
    next_slot: int | None  # the first slot after now; None while paused

    @classmethod
    def of(cls, schedule: Schedule, state: ScheduleState, now: float) -> ScheduleView:
        return cls(schedule, state, None if state.paused else schedule.cadence.next_after(now))


class ScheduleStore:
    """The leader's side (sync: the janitor is a thread): read states, move markers forward."""

    def __init__(self, client: redis.Redis, keys: Keys) -> None:
        self.redis = client
        self.keys = keys
        self._advance = client.register_script(scripts.SCHEDULE_ADVANCE)

    def read(self, names: Sequence[str]) -> tuple[float, list[ScheduleState]]:
        """Redis's clock (seconds since the epoch) and the state of each schedule, in one round trip."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.time()
        for name in names:
            pipe.hmget(self.keys.schedule_state(name), FIELDS)
        (seconds, micros), *states = pipe.execute()
        return float(seconds) + micros / 1e6, [ScheduleState.parse(values) for values in states]

    def advance(self, name: str, slot: int, job_id: str = "", fired_at: float | None = None) -> bool:
        """Move the marker to `slot` (with the job fired for it, if any); False if already there or past."""
        fired = "" if fired_at is None else repr(fired_at)
        moved = self._advance(args=[self.keys.prefix, name, slot, job_id, fired, STATE_TTL_SECONDS])
        return bool(moved)

    def touch(self, names: Iterable[str]) -> None:
        """Renew the TTL of every declared schedule's state (a paused one with no slot due keeps its pause)."""
        pipe = self.redis.pipeline(transaction=False)
        for name in names:
            pipe.expire(self.keys.schedule_state(name), STATE_TTL_SECONDS)
        pipe.execute()


async def read_states(client: AsyncRedis, keys: Keys, names: Sequence[str]) -> tuple[float, list[ScheduleState]]:
    """The API's read: Redis's clock and each schedule's state, in one round trip."""
    async with client.pipeline(transaction=False) as pipe:
        pipe.time()
        for name in names:
            pipe.hmget(keys.schedule_state(name), FIELDS)
        (seconds, micros), *states = await pipe.execute()
    return float(seconds) + micros / 1e6, [ScheduleState.parse(values) for values in states]


async def set_paused(client: AsyncRedis, keys: Keys, name: str, paused: bool) -> None:
    """Pause or resume `name` for every worker (the leader reads it before each firing)."""
    key = keys.schedule_state(name)
    async with client.pipeline(transaction=True) as pipe:
        if paused:
            pipe.hset(key, "paused", "1")
        else:
            pipe.hdel(key, "paused")
        pipe.expire(key, STATE_TTL_SECONDS)
        await pipe.execute()
