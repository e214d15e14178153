"""When a schedule's slots fall: cron expressions (croniter) in a timezone, or a fixed interval.

A slot is a whole number of seconds since the epoch (UTC), the same on every worker: the
cadence is a pure function of the declaration, so any leader computes the same slots and
the same idempotency keys from them.

Cron expressions are read in the schedule's timezone, and daylight saving time works as
cron users expect (Vixie cron's rule):
- a wall time that does not exist (the hour skipped in spring) fires once, when the
  clock jumps past it (croniter moves it to the first minute after the gap);
- a wall time that happens twice (the hour repeated in autumn) fires once, the first
  time, for an expression with fixed hours (`30 1 * * *`); an expression that fires
  every hour (`*/15 * * * *`) fires on each real occurrence, so its spacing holds.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from typing import Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterBadDateError, CroniterError, croniter  # type: ignore[import-untyped]

# Five fields (minute to day of week), or six with seconds last (croniter's convention),
# or an alias such as @hourly or @daily.
CRON_FIELDS = (5, 6)


class Cadence(Protocol):
    """Where the slots of a schedule fall."""

    def next_after(self, moment: float) -> int:
        """The first slot strictly after `moment` (seconds since the epoch)."""
        ...

    def latest_until(self, moment: float) -> int:
        """The last slot at or before `moment`."""
        ...


@dataclass(frozen=True)
class Interval:
    """Every `seconds` seconds, on whole multiples of it since the epoch (every=3600: on the hour, UTC)."""

    seconds: int

    def next_after(self, moment: float) -> int:
        return self.latest_until(moment) + self.seconds

    def latest_until(self, moment: float) -> int:
        return int(moment // self.seconds) * self.seconds


@dataclass(frozen=True)
class Cron:
    """A cron expression read in `timezone`."""

    expression: str
    timezone: str = "UTC"
    zone: ZoneInfo = field(init=False, repr=False, compare=False)
    # Fixed hours: a wall time the autumn change repeats fires only the first time.
    once_per_wall_time: bool = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "zone", parse_timezone(self.timezone))
        hours = parse_cron(self.expression).expanded[1]
        object.__setattr__(self, "once_per_wall_time", hours != ["*"])
        try:  # a valid expression can still never match (`0 0 31 2 *`: February 31st)
            self.next_after(datetime.now(UTC).timestamp())
        except CroniterBadDateError:
            raise ValueError(f"cron expression {self.expression!r} never matches a date") from None

    def next_after(self, moment: float) -> int:
        return _next_cron_slot(self, moment)

    def latest_until(self, moment: float) -> int:
        # croniter's get_prev is strictly before its start: step back once, then see
        # whether `moment` itself is a slot.
        slots = croniter(self.expression, datetime.fromtimestamp(moment, self.zone))
        while True:
            slot: datetime = slots.get_prev(datetime)
            if not self._repeated(slot):
                break
        following = self.next_after(slot.timestamp())
        return following if following <= moment else int(slot.timestamp())

    def _repeated(self, slot: datetime) -> bool:
        """Whether `slot` is the second occurrence of a wall time (autumn) a fixed-hour expression already fired at."""
        if not self.once_per_wall_time:
            return False
        first = slot.replace(fold=0)
        return first.utcoffset() != slot.utcoffset()


@lru_cache(maxsize=4096)
def _next_cron_slot(cron: Cron, moment: float) -> int:
    # Cached: the leader asks for the slot after each schedule's marker every tick, and a
    # croniter costs a fraction of a millisecond to build.
    slots = croniter(cron.expression, datetime.fromtimestamp(moment, cron.zone))
    while True:
        slot: datetime = slots.get_next(datetime)
        if not cron._repeated(slot):
            return int(slot.timestamp())


def parse_cron(expression: str) -> croniter:
    """The croniter for `expression`, or ValueError saying what is wrong with it."""
    if not isinstance(expression, str) or not expression.strip():
        raise ValueError("a cron expression must be a non-empty string, e.g. '*/5 * * * *'")
    fields = expression.split()
    if not expression.startswith("@") and len(fields) not in CRON_FIELDS:
        raise ValueError(
            f"cron expression {expression!r} has {len(fields)} fields; give 5 (minute hour day month weekday) "
            "or 6 (the same, then seconds)"
        )
    try:
        return croniter(expression)
    except (CroniterError, ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"invalid cron expression {expression!r}: {exc}") from None


def parse_timezone(name: str) -> ZoneInfo:
    """The IANA timezone `name` (e.g. 'Europe/Paris'), or ValueError."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        raise ValueError(f"unknown timezone {name!r}: give an IANA name such as 'UTC' or 'Europe/Paris'") from None
