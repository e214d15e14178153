"""Firing: the janitor's leader dispatches each due slot of each schedule, exactly once.

Every tick (half a second) the leader reads each schedule's marker (the last slot
handled) and Redis's clock, decides what is due (`plan`), and for each slot to fire:
1. dispatches the job with the slot's idempotency key `schedule:<name>:<slot>`
   (the same create.lua as every dispatch: a second dispatch of the slot, by this
   leader or another, gets the first job back instead of a new one);
2. then moves the marker to the slot (jobs/lua/schedule_advance.lua, forward only).

A leader that dies between 1 and 2 leaves the marker behind: the next leader (within
LEAD_SECONDS) fires the same slot again, gets the same job, and moves the marker. So
each slot has one job however many workers run and whichever of them dies, as long as
the slot's idempotency key lives (QUEUE_IDEMPOTENCY_TTL_SECONDS, a day by default).

Late and missed slots (see `plan`): a slot late by at most the schedule's `grace` (a
failover, a Redis blip) fires on its own; slots later than that were missed (no worker
ran): catch_up="once" fires one job for the latest of them, "skip" fires none. Never a
burst for an outage.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache, cached_property
from typing import TYPE_CHECKING

import redis

from pocketqueue.client.options import DispatchOptions
from pocketqueue.config import Settings
from pocketqueue.errors import IdempotencyKeyReused, QueueError, RedisUnavailable
from pocketqueue.jobs.keys import Keys
from pocketqueue.schedules.model import Schedule
from pocketqueue.schedules.registry import registered_schedules
from pocketqueue.schedules.state import ScheduleState, ScheduleStore

if TYPE_CHECKING:
    from pocketqueue.client.sync import Client
    from pocketqueue.worker.app import PocketQueueCelery

log = logging.getLogger(__name__)

# Late slots fired one by one, at most (a schedule's grace bounds them well below this).
MAX_LATE_SLOTS = 100
# How often the leader renews every declared schedule's state TTL.
TOUCH_SECONDS = 3600.0
CATCH_UP_TAG = "schedule.catch_up"


@dataclass(frozen=True)
class Plan:
    """What one tick does for one schedule."""

    fire: list[int] = field(default_factory=list)  # slots to dispatch, in order
    advance_to: int | None = None  # the marker afterwards; None: nothing to write
    # Slots were missed (later than the grace): the one fired, if any, is a catch-up for them.
    missed: bool = False


def plan(schedule: Schedule, state: ScheduleState, now: float) -> Plan:
    """Which slots to fire at `now` (Redis's clock), given the schedule's state."""
    cadence = schedule.cadence
    if state.slot is None:
        # Never seen (a new schedule, or its state expired): start with the next slot. A
        # slot that fell before anyone knew of the schedule is not a missed one.
        return Plan(advance_to=cadence.latest_until(now))
    first = cadence.next_after(state.slot)
    if first > now:
        return Plan()
    if state.paused:  # a paused schedule lets its slots pass: resuming fires none of them
        return Plan(advance_to=cadence.latest_until(now))
    if first >= now - schedule.grace:
        late = [first]
        while len(late) <= MAX_LATE_SLOTS and (following := cadence.next_after(late[-1])) <= now:
            late.append(following)
        if len(late) <= MAX_LATE_SLOTS:
            return Plan(fire=late, advance_to=late[-1])
    latest = cadence.latest_until(now)
    return Plan(fire=[latest] if schedule.catch_up == "once" else [], advance_to=latest, missed=True)


def slot_time(slot: int) -> str:
    return datetime.fromtimestamp(slot, UTC).isoformat()


class ScheduleFirer:
    """Fires the due slots of the declared schedules; one per worker main process (see `firer_for`)."""

    def __init__(self, settings: Settings, client: redis.Redis, celery: PocketQueueCelery | None = None) -> None:
        self.settings = settings
        self.store = ScheduleStore(client, Keys(settings.queue_key_prefix))
        self._celery = celery
        self._next_touch = 0.0

    @cached_property
    def client(self) -> Client:
        # Made on first use: a worker with no schedules never opens its pool.
        from pocketqueue.client.sync import Client

        # The worker's own app builds the messages, rather than a second Celery app made in
        # the worker's process (Celery would make it current in this thread).
        return Client(self.settings, celery=self._celery)

    def tick(self, schedules: Sequence[Schedule] | None = None) -> int:
        """Fire what is due now; returns how many jobs were dispatched (repeats of a slot included)."""
        schedules = registered_schedules() if schedules is None else schedules
        if not schedules:
            return 0  # no Redis call at all for a deployment without schedules
        names = [item.name for item in schedules]
        now, states = self.store.read(names)
        if now >= self._next_touch:
            self.store.touch(names)
            self._next_touch = now + TOUCH_SECONDS
        fired = 0
        for item, state in zip(schedules, states, strict=True):
            try:
                fired += self.run(item, plan(item, state, now), now)
            except RedisUnavailable as exc:  # Redis went away mid-dispatch: the next tick tries again
                log.warning("schedule %s: %s; trying again next tick", item.name, exc.detail)
                return fired
            except redis.RedisError:
                raise
            except Exception:  # one broken schedule must not stop the others
                log.exception("schedule %s: firing failed; trying again next tick", item.name)
        return fired

    def run(self, schedule: Schedule, planned: Plan, now: float) -> int:
        """Carry out `planned`: dispatch each slot, then move the marker past it."""
        fired = 0
        if planned.missed:
            log.warning(
                "schedule %s: missed slots up to %s (none fired within its grace of %g s); catch_up=%s",
                schedule.name,
                slot_time(planned.advance_to or 0),
                schedule.grace,
                schedule.catch_up,
            )
        for slot in planned.fire:
            job_id = self.dispatch(schedule, slot, planned.missed)
            # The dispatch first, the marker after: a crash in between fires the slot again,
            # which gets the same job back.
            self.store.advance(schedule.name, slot, job_id or "", now if job_id else None)
            fired += job_id is not None
        if planned.advance_to is not None and planned.advance_to not in planned.fire:
            self.store.advance(schedule.name, planned.advance_to)  # slots that pass unfired (skipped, paused)
        return fired

    def dispatch(self, schedule: Schedule, slot: int, catch_up: bool = False) -> str | None:
        """The job of `slot` (a new one, or the one an earlier firing of the slot made); None if refused."""
        tags = {"schedule": schedule.name}
        if catch_up:
            tags[CATCH_UP_TAG] = "true"
        options: DispatchOptions = {"idempotency_key": schedule.idempotency_key(slot), "tags": tags}
        if schedule.queue is not None:
            options["queue"] = schedule.queue
        try:
            handle = self.client.dispatch(schedule.task_name, schedule.args, schedule.kwargs, **options)
        except IdempotencyKeyReused as exc:
            # Fired already, by a leader that judged the slot otherwise (a catch-up or not):
            # the same slot, the same job.
            return exc.job_id
        except RedisUnavailable:
            raise
        except QueueError as exc:  # the declaration cannot become a job (e.g. args that do not fit)
            log.error("schedule %s: slot %s not fired: %s", schedule.name, slot_time(slot), exc.detail)
            return None
        log.info(
            "schedule %s: slot %s %s job %s",
            schedule.name,
            slot_time(slot),
            "already had" if handle.duplicate else "fired" + (" (catch-up)" if catch_up else ""),
            handle.job_id,
        )
        return handle.job_id


@cache
def firer_for(app: PocketQueueCelery) -> ScheduleFirer:
    """The worker's one firer, on the janitor's Redis client (made on the first tick that leads)."""
    return ScheduleFirer(app.settings, app.janitor_store.redis, app)


def fire_due_schedules(app: PocketQueueCelery) -> int:
    """The janitor leader's call, once a tick: fire every declared schedule's due slots."""
    if not registered_schedules():
        return 0
    return firer_for(app).tick()
