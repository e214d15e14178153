"""Schedule: a task to dispatch on every slot of a cron expression or an interval."""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Literal, Protocol

from pocketqueue.errors import NotFound
from pocketqueue.schedules.clock import Cadence, Cron, Interval, parse_timezone

CatchUp = Literal["once", "skip"]
CATCH_UP_POLICIES: tuple[CatchUp, ...] = ("once", "skip")
# Names go into Redis keys, idempotency keys and URL paths: keep them plain.
NAME_PATTERN = r"^[A-Za-z0-9_.:-]{1,100}$"
_NAME = re.compile(NAME_PATTERN)
MAX_GRACE_SECONDS = 3600.0


class ScheduleNotFound(NotFound):
    title = "Schedule not found"
    slug = "schedule-not-found"

    def __init__(self, name: str) -> None:
        super().__init__(f"No schedule named {name!r} is declared. GET /api/queue/schedules lists them.")
        self.name = name


class NamedTask(Protocol):
    """What `@task` returns: anything with the task's registered name."""

    @property
    def name(self) -> str: ...


@dataclass(frozen=True)
class Schedule:
    """Dispatch `task` with `args`/`kwargs` on every slot of `cron` (in `timezone`) or `every` seconds.

    name      unique; names the schedule in the API, in Redis and in its jobs' idempotency keys
    task      the task name (or the task object `@task` returned)
    cron      a cron expression: 5 fields, or 6 with seconds last (`*/5 * * * *`, `0 9 * * mon-fri`)
    every     seconds between slots (a whole number, at least 1), or a timedelta; slots fall on
              whole multiples of it since the epoch, so `every=3600` fires on the hour (UTC)
    timezone  IANA name the cron expression is read in (default UTC); DST as cron does it
    catch_up  slots missed while no worker ran: "once" fires one job for the latest of them
              when a worker returns, "skip" fires none (the next slot fires as usual)
    grace     seconds a slot may be late and still fire on its own (a leader failing over,
              Redis blinking); a slot later than that was missed, and `catch_up` decides
    queue     the queue its jobs go to (None: the task's own, else QUEUE_NAME)
    """

    name: str
    task: str | NamedTask
    cron: str | None = None
    every: int | timedelta | None = None
    args: list[Any] = field(default_factory=list)
    kwargs: dict[str, Any] = field(default_factory=dict)
    timezone: str = "UTC"
    catch_up: CatchUp = "once"
    grace: float = 30.0
    queue: str | None = None
    cadence: Cadence = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _NAME.match(self.name):
            raise ValueError(f"schedule name {self.name!r} must be 1 to 100 letters, digits, '_', '.', ':' or '-'")
        object.__setattr__(self, "task", _task_name(self.task))
        object.__setattr__(self, "cadence", self._cadence())
        if self.catch_up not in CATCH_UP_POLICIES:
            raise ValueError(f"schedule {self.name!r}: catch_up must be 'once' or 'skip', not {self.catch_up!r}")
        if not isinstance(self.grace, int | float) or not 0 <= self.grace <= MAX_GRACE_SECONDS:
            raise ValueError(f"schedule {self.name!r}: grace must be from 0 to {MAX_GRACE_SECONDS:g} seconds")
        if self.queue is not None and (not isinstance(self.queue, str) or not self.queue):
            raise ValueError(f"schedule {self.name!r}: queue must be a queue name or None")
        if not isinstance(self.args, list | tuple) or not isinstance(self.kwargs, dict):
            raise ValueError(f"schedule {self.name!r}: args must be a list and kwargs a dict")
        object.__setattr__(self, "args", list(self.args))
        try:  # every dispatch re-checks them; a declaration that can never dispatch fails here, at import
            json.dumps([self.args, self.kwargs], allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"schedule {self.name!r}: args and kwargs must be JSON values ({exc})") from None

    def _cadence(self) -> Cadence:
        if (self.cron is None) == (self.every is None):
            raise ValueError(f"schedule {self.name!r}: give cron or every, not both or neither")
        if self.cron is not None:
            try:
                return Cron(self.cron, self.timezone)
            except ValueError as exc:
                raise ValueError(f"schedule {self.name!r}: {exc}") from None
        parse_timezone(self.timezone)  # checked for an interval too: a typo should not wait until it matters
        return Interval(_whole_seconds(self.name, self.every))

    @property
    def task_name(self) -> str:
        return str(self.task)

    @property
    def every_seconds(self) -> int | None:
        return self.cadence.seconds if isinstance(self.cadence, Interval) else None

    def idempotency_key(self, slot: int) -> str:
        """The key the job of `slot` is dispatched with: a second firing of the slot gets the same job."""
        return f"schedule:{self.name}:{slot}"


def _task_name(task: object) -> str:
    name = task if isinstance(task, str) else getattr(task, "name", None)
    if not isinstance(name, str) or not name:
        raise ValueError(f"task must be a task name or a task object with a name, not {task!r}")
    return name


def _whole_seconds(name: str, every: object) -> int:
    seconds = every.total_seconds() if isinstance(every, timedelta) else every
    if isinstance(seconds, bool) or not isinstance(seconds, int | float) or not math.isfinite(seconds):
        raise ValueError(f"schedule {name!r}: every must be a number of seconds or a timedelta")
    if seconds < 1 or seconds != int(seconds):
        raise ValueError(f"schedule {name!r}: every must be a whole number of seconds, at least 1 (got {every!r})")
    return int(seconds)
