"""Periodic jobs: where slots fall (cron in a timezone, DST, intervals), what a tick fires
(late, missed, paused), and, with real workers, each slot fired exactly once across three
workers while the leader is SIGKILLed, pause/resume/trigger over HTTP, and catch-up.

The worker checks share one set of workers (module scope), in file order: three workers,
the leader killed, then the API on the two left, then a restart of one for catch-up.
"""

from __future__ import annotations

import os
import signal
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pq_schedule_tasks  # noqa: F401  (declares the schedules below, as a worker's TASK_MODULES does)
import pytest
import redis

from conftest import WorkerProcess, api_client, make_settings, wait_until
from pocketqueue import Schedule, schedule
from pocketqueue.config import Settings
from pocketqueue.jobs.keys import Keys, queue_lists
from pocketqueue.jobs.models import Job, decode_record
from pocketqueue.schedules import lookup_schedule, registered_schedules
from pocketqueue.schedules.clock import Cron, Interval
from pocketqueue.schedules.firing import CATCH_UP_TAG, ScheduleFirer, plan
from pocketqueue.schedules.state import ScheduleState, ScheduleStore
from test_api import assert_problem

EVERY_SECOND = "tests.every-second"
ONCE, SKIP = "tests.catch-up-once", "tests.catch-up-skip"
TASK_MODULES = ["pq_test_tasks", "pq_schedule_tasks"]


def at(text: str) -> float:
    """Seconds since the epoch of an ISO 8601 time with its offset."""
    return datetime.fromisoformat(text).timestamp()


def iso(slot: int, zone: str = "UTC") -> str:
    return datetime.fromtimestamp(slot, ZoneInfo(zone)).isoformat()


# --- where slots fall -----------------------------------------------------------------


def test_a_cron_slot_is_read_in_the_schedules_timezone() -> None:
    paris = Cron("30 7 * * mon-fri", "Europe/Paris")
    # Friday evening, winter: next is Monday 07:30 in Paris, 06:30 UTC.
    assert iso(paris.next_after(at("2025-01-10T18:00:00+00:00"))) == "2025-01-13T06:30:00+00:00"
    # Summer time: 07:30 in Paris is 05:30 UTC.
    assert iso(paris.next_after(at("2025-07-01T04:00:00+00:00"))) == "2025-07-01T05:30:00+00:00"
    assert iso(paris.latest_until(at("2025-07-05T12:00:00+00:00")), "Europe/Paris") == "2025-07-04T07:30:00+02:00"


def test_the_slot_at_a_moment_is_that_slot_and_the_next_is_strictly_after() -> None:
    every_five = Cron("*/5 * * * *")
    slot = int(at("2025-03-03T12:05:00+00:00"))
    assert every_five.latest_until(slot) == slot
    assert every_five.latest_until(slot + 299.9) == slot
    assert every_five.latest_until(slot - 0.1) == slot - 300
    assert every_five.next_after(slot) == slot + 300
    assert every_five.next_after(slot - 0.5) == slot


def test_a_sixth_cron_field_is_seconds() -> None:
    assert Cron("* * * * * */10").next_after(at("2025-03-03T12:00:01+00:00")) == at("2025-03-03T12:00:10+00:00")


def test_a_wall_time_skipped_in_spring_fires_once_when_the_clock_jumps_past_it() -> None:
    # Europe/London, 2024-03-31: 01:00 GMT jumps to 02:00 BST; 01:30 does not exist that day.
    daily = Cron("30 1 * * *", "Europe/London")
    first = daily.next_after(at("2024-03-30T12:00:00+00:00"))
    assert iso(first, "Europe/London") == "2024-03-31T02:00:00+01:00"
    assert iso(daily.next_after(first), "Europe/London") == "2024-04-01T01:30:00+01:00"


def test_a_fixed_wall_time_repeated_in_autumn_fires_once() -> None:
    # Europe/London, 2024-10-27: 02:00 BST falls back to 01:00 GMT; 01:30 happens twice.
    daily = Cron("30 1 * * *", "Europe/London")
    first = daily.next_after(at("2024-10-26T12:00:00+00:00"))
    assert iso(first, "Europe/London") == "2024-10-27T01:30:00+01:00"
    after = daily.next_after(first)
    assert iso(after, "Europe/London") == "2024-10-28T01:30:00+00:00"  # not 01:30 GMT the same night
    assert daily.latest_until(after - 1) == first


def test_an_hourly_wildcard_keeps_its_real_spacing_through_the_repeated_hour() -> None:
    half_hourly = Cron("*/30 * * * *", "Europe/London")
    slots = [int(at("2024-10-27T00:00:00+00:00"))]  # 01:00 BST; 01:00 GMT comes an hour later
    for _ in range(4):
        slots.append(half_hourly.next_after(slots[-1]))
    assert [later - earlier for earlier, later in pairwise(slots)] == [1800] * 4
    assert [iso(slot, "Europe/London")[11:] for slot in slots[1:3]] == ["01:30:00+01:00", "01:00:00+00:00"]


def test_an_interval_falls_on_whole_multiples_since_the_epoch() -> None:
    hourly = Interval(3600)
    assert iso(hourly.next_after(at("2025-03-03T12:34:56+00:00"))) == "2025-03-03T13:00:00+00:00"
    assert hourly.latest_until(at("2025-03-03T13:00:00+00:00")) == at("2025-03-03T13:00:00+00:00")


# --- declarations ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"cron": "61 * * * *"}, "invalid cron expression"),
        ({"cron": "* * * *"}, "has 4 fields"),
        ({"cron": "0 0 31 2 *"}, "never matches"),
        ({"cron": "* * * * *", "timezone": "Mars/Olympus"}, "unknown timezone"),
        ({"every": 1, "timezone": "Nowhere"}, "unknown timezone"),
        ({"every": 0}, "at least 1"),
        ({"every": 1.5}, "whole number"),
        ({"every": timedelta(milliseconds=500)}, "whole number"),
        ({}, "cron or every"),
        ({"cron": "* * * * *", "every": 60}, "cron or every"),
        ({"every": 60, "catch_up": "all"}, "catch_up"),
        ({"every": 60, "grace": -1}, "grace"),
        ({"every": 60, "args": [{1, 2}]}, "JSON"),
        ({"every": 60, "kwargs": {"x": float("nan")}}, "JSON"),
    ],
)
def test_a_declaration_that_cannot_work_is_a_clear_value_error(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Schedule("tests.bad", task="tests.scheduled", **options)


@pytest.mark.parametrize("name", ["", "has space", "a/b", "x" * 101])
def test_a_schedule_name_is_plain(name: str) -> None:
    with pytest.raises(ValueError, match="schedule name"):
        Schedule(name, task="tests.scheduled", every=60)


def test_the_same_declaration_twice_is_harmless_two_under_one_name_are_refused() -> None:
    again = Schedule(EVERY_SECOND, task="tests.scheduled", every=1, args=["every-second"])
    schedule(again)  # a module imported twice
    with pytest.raises(ValueError, match="two different schedules"):
        schedule(Schedule(EVERY_SECOND, task="tests.scheduled", every=2, args=["every-second"]))
    assert lookup_schedule(EVERY_SECOND).every_seconds == 1


def test_task_with_a_schedule_declares_one_named_after_the_task() -> None:
    nightly = lookup_schedule("tests.nightly")
    assert (nightly.task, nightly.cron, nightly.timezone) == ("tests.nightly", "0 4 * * *", "UTC")
    assert lookup_schedule(ONCE).task == "tests.scheduled"  # given as the task object


# --- what a tick fires ----------------------------------------------------------------

EVERY_MINUTE = Schedule("tests.plan", task="tests.scheduled", every=60, grace=90)
NOON = int(at("2025-03-03T12:00:00+00:00"))


@pytest.mark.parametrize(
    ("state", "now", "fire", "advance_to", "missed"),
    [
        # Never seen: start from the next slot; the one that just passed is not "missed".
        (ScheduleState(), NOON + 5, [], NOON, False),
        (ScheduleState(slot=NOON), NOON + 59, [], None, False),  # nothing due
        (ScheduleState(slot=NOON), NOON + 60.2, [NOON + 60], NOON + 60, False),  # on time
        # Late, within the grace (a failover): each slot fires on its own.
        (ScheduleState(slot=NOON), NOON + 120 + 5, [NOON + 60, NOON + 120], NOON + 120, False),
        # Missed (no worker ran): one catch-up job, for the latest slot only.
        (ScheduleState(slot=NOON), NOON + 600 + 5, [NOON + 600], NOON + 600, True),
        # Paused: the slots pass, and resuming will not fire them.
        (ScheduleState(slot=NOON, paused=True), NOON + 130, [], NOON + 120, False),
    ],
)
def test_plan(state: ScheduleState, now: float, fire: list[int], advance_to: int | None, missed: bool) -> None:
    planned = plan(EVERY_MINUTE, state, now)
    assert (planned.fire, planned.advance_to, planned.missed) == (fire, advance_to, missed)


def test_missed_slots_with_skip_fire_nothing_and_move_on() -> None:
    skipping = Schedule("tests.plan-skip", task="tests.scheduled", every=60, catch_up="skip")
    planned = plan(skipping, ScheduleState(slot=NOON), NOON + 3600 + 1)
    assert (planned.fire, planned.advance_to, planned.missed) == ([], NOON + 3600, True)


# --- the firing, against a real Redis (no worker needed) ------------------------------


@pytest.fixture
def private(redis_url: str, sync_redis: redis.Redis) -> Iterator[Settings]:
    settings = make_settings(redis_url, uuid.uuid4().hex[:8], task_modules=TASK_MODULES)
    yield settings
    keys = list(sync_redis.scan_iter(f"{settings.queue_key_prefix}:*", count=1000))
    sync_redis.delete(*keys, *queue_lists(settings.queue_name))


def test_a_slot_fired_again_after_a_crash_gets_the_first_job(private: Settings, sync_redis: redis.Redis) -> None:
    item = lookup_schedule(EVERY_SECOND)
    store = ScheduleStore(sync_redis, Keys(private.queue_key_prefix))
    now, _ = store.read([item.name])
    slot = item.cadence.latest_until(now)
    store.advance(item.name, slot - 1)  # the marker the dead leader left
    first = ScheduleFirer(private, sync_redis)
    job_id = first.dispatch(item, slot)  # ... and its dispatch of the next slot, then it died
    successor = ScheduleFirer(private, sync_redis)
    successor.tick([item])  # fires `slot` again (and any slot since), then moves the marker
    jobs = jobs_by_slot(sync_redis, private, item.name)
    assert [job.job_id for job in jobs[slot]] == [job_id]
    assert all(len(same) == 1 for same in jobs.values())
    state = store.read([item.name])[1][0]
    assert state.slot is not None
    assert state.slot >= slot
    assert not store.advance(item.name, slot - 5)  # a stalled leader cannot move it back


# --- real workers ---------------------------------------------------------------------


def server_time(client: redis.Redis) -> float:
    seconds, micros = client.time()
    return float(seconds) + micros / 1e6


def jobs_by_slot(client: redis.Redis, settings: Settings, name: str) -> dict[int, list[Job]]:
    """The jobs a schedule's slots dispatched, by slot (found by the `schedule` tag's index)."""
    keys = Keys(settings.queue_key_prefix)
    ids = [str(job_id) for job_id in client.zrange(keys.listed("tag", f"schedule={name}"), 0, -1)]
    pipe = client.pipeline(transaction=False)
    for job_id in ids:
        pipe.hgetall(keys.job(job_id))
    by_slot: dict[int, list[Job]] = {}
    prefix = f"schedule:{name}:"
    for job_id, raw in zip(ids, pipe.execute(), strict=True):
        job = decode_record(job_id, raw)
        if job is not None and job.idempotency_key and job.idempotency_key.startswith(prefix):
            by_slot.setdefault(int(job.idempotency_key[len(prefix) :]), []).append(job)
    return by_slot


def state_of(client: redis.Redis, settings: Settings, name: str) -> ScheduleState:
    return ScheduleStore(client, Keys(settings.queue_key_prefix)).read([name])[1][0]


def leader(client: redis.Redis, settings: Settings) -> str | None:
    name = client.get(Keys(settings.queue_key_prefix).janitor)
    return str(name) if name else None


class Cluster:
    """Workers on a private queue and prefix, shared by the worker checks of this module."""

    def __init__(self, settings: Settings, logs: Path, client: redis.Redis) -> None:
        self.settings = settings
        self.logs = logs
        self.redis = client
        self.workers: list[WorkerProcess] = []

    def start(self, count: int) -> None:
        started = [
            WorkerProcess(self.settings, self.logs / f"worker-{len(self.workers) + n}.log") for n in range(count)
        ]
        self.workers += started
        for worker in started:  # started together, waited for in turn: boots overlap
            worker.wait_ready()

    def alive(self) -> list[WorkerProcess]:
        return [worker for worker in self.workers if worker.process.poll() is None]

    def stop_all(self) -> None:
        running = self.alive()
        for worker in running:
            worker.process.terminate()
        for worker in running:
            worker.stop()


@pytest.fixture(scope="module")
def cluster(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    settings = make_settings(
        redis_url, uuid.uuid4().hex[:8], task_modules=TASK_MODULES, worker_concurrency=1, queue_recovery_seconds=4
    )
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    running = Cluster(settings, tmp_path_factory.mktemp("schedules"), client)
    try:
        running.start(3)
        yield running
    finally:
        running.stop_all()
        for worker in running.workers:
            worker.stop()  # closes the logs of the killed one too
        keys = list(client.scan_iter(f"{settings.queue_key_prefix}:*", count=1000))
        client.delete(*keys, *queue_lists(settings.queue_name))
        client.close()


def fired_through(cluster: Cluster, name: str, slot: float) -> bool:
    fired = state_of(cluster.redis, cluster.settings, name).fired_slot
    return fired is not None and fired >= slot


def test_each_slot_fires_exactly_once_across_three_workers_while_the_leader_is_killed(cluster: Cluster) -> None:
    client, settings = cluster.redis, cluster.settings
    start = server_time(client)
    wait_until(lambda: fired_through(cluster, EVERY_SECOND, start + 2), timeout=20)
    victim = leader(client, settings)
    assert victim is not None
    pid = int(victim.split("@")[0].rsplit(".", 1)[1])
    assert pid in [worker.process.pid for worker in cluster.alive()]
    os.kill(pid, signal.SIGKILL)  # the janitor leader's main process, mid-whatever it was doing
    os.killpg(pid, signal.SIGKILL)  # and its pool process, so nothing outlives it
    killed_at = server_time(client)
    wait_until(lambda: leader(client, settings) not in (None, victim), timeout=10)
    # The new leader fires the slots that fell during the failover, late, then carries on.
    wait_until(lambda: fired_through(cluster, EVERY_SECOND, killed_at + 3), timeout=15)
    jobs = jobs_by_slot(client, settings, EVERY_SECOND)
    slots = sorted(jobs)
    assert Counter(len(same) for same in jobs.values()) == Counter({1: len(jobs)}), "a slot fired twice"
    assert slots == list(range(slots[0], slots[-1] + 1)), "a slot never fired"
    assert slots[0] <= killed_at - 1
    assert slots[-1] >= killed_at + 3
    assert not any(CATCH_UP_TAG in job.tags for same in jobs.values() for job in same)


async def test_pause_resume_and_trigger_over_http(cluster: Cluster) -> None:
    client, settings = cluster.redis, cluster.settings
    now = server_time(client)
    wait_until(lambda: fired_through(cluster, EVERY_SECOND, now), timeout=15)  # a worker leads
    async with api_client(settings) as api:
        listed = (await api.get("/api/queue/schedules")).json()["schedules"]
        assert [item["name"] for item in listed] == [item.name for item in registered_schedules()]
        every = next(item for item in listed if item["name"] == EVERY_SECOND)
        assert (every["every"], every["cron"], every["paused"], every["catch_up"]) == (1, None, False, "once")
        assert every["last_job_id"] is not None
        assert every["next_run_at"] is not None
        morning = next(item for item in listed if item["name"] == "tests.paris-morning")
        assert (morning["cron"], morning["timezone"]) == ("30 7 * * mon-fri", "Europe/Paris")
        assert datetime.fromisoformat(morning["next_run_at"]).astimezone(UTC).minute == 30

        paused = await api.post(f"/api/queue/schedules/{EVERY_SECOND}/pause")
        assert paused.status_code == 200, paused.text
        assert (paused.json()["paused"], paused.json()["next_run_at"]) == (True, None)
        paused_at = server_time(client)
        wait_until(lambda: server_time(client) > paused_at + 3.2, timeout=10)
        # The leader let the slots pass (the marker moved) without firing any.
        state = state_of(client, settings, EVERY_SECOND)
        assert state.paused
        assert state.slot is not None
        assert state.slot >= paused_at + 2
        resumed = await api.post(f"/api/queue/schedules/{EVERY_SECOND}/resume")
        assert resumed.status_code == 200
        assert resumed.json()["paused"] is False
        resumed_at = server_time(client)
        wait_until(lambda: fired_through(cluster, EVERY_SECOND, resumed_at + 1), timeout=10)
        fired = set(jobs_by_slot(client, settings, EVERY_SECOND))
        assert not fired & set(range(int(paused_at) + 2, int(resumed_at))), "fired while paused, or late on resume"

        triggered = await api.post(f"/api/queue/schedules/{EVERY_SECOND}/trigger")
        assert triggered.status_code == 202, triggered.text
        job = triggered.json()
        assert job["task"] == "tests.scheduled"
        assert job["idempotency_key"] is None
        assert job["tags"] == {"schedule": EVERY_SECOND, "schedule.trigger": "manual"}
        done = (await api.get(f"/api/queue/wait/{job['job_id']}", params={"timeout": 10})).json()
        assert (done["status"], done["result"]) == ("completed", "every-second")

        for action in ("pause", "resume", "trigger"):
            missing = await api.post(f"/api/queue/schedules/no.such.schedule/{action}")
            assert "no.such.schedule" in assert_problem(missing, 404, "schedule-not-found")["detail"]
        assert_problem(await api.post("/api/queue/schedules/not%20a%20name/pause"), 422, "invalid-request")


def test_missed_slots_fire_once_on_return_or_are_skipped(cluster: Cluster) -> None:
    client, settings = cluster.redis, cluster.settings
    now = server_time(client)
    wait_until(lambda: fired_through(cluster, ONCE, now) and fired_through(cluster, SKIP, now), timeout=15)
    cluster.stop_all()  # no worker runs: slots pass
    before = {name: state_of(client, settings, name).slot for name in (ONCE, SKIP)}
    assert None not in before.values()
    last = max(slot for slot in before.values() if slot is not None)
    wait_until(lambda: server_time(client) > last + 3, timeout=10)  # missed for longer than the grace (2 s)
    cluster.start(1)
    wait_until(lambda: fired_through(cluster, ONCE, last + 5) and fired_through(cluster, SKIP, last + 5), timeout=15)
    once, skip = jobs_by_slot(client, settings, ONCE), jobs_by_slot(client, settings, SKIP)
    once_after = sorted(slot for slot in once if slot > (before[ONCE] or 0))
    skip_after = sorted(slot for slot in skip if slot > (before[SKIP] or 0))
    # "once": the first job after the return is one catch-up, for the latest missed slot ...
    caught_up = once_after[0]
    assert caught_up >= last + 3
    assert [CATCH_UP_TAG in job.tags for slot in once_after for job in once[slot]] == [True] + [False] * (
        len(once_after) - 1
    )
    # ... both schedules saw the return in the same tick: "skip" fired nothing for that slot,
    assert skip_after[0] == caught_up + 1
    # and from then on both fire every slot, once.
    assert once_after == list(range(caught_up, once_after[-1] + 1))
    assert skip_after == list(range(caught_up + 1, skip_after[-1] + 1))
    assert all(len(once[slot]) == 1 for slot in once_after)
    assert all(len(skip[slot]) == 1 for slot in skip_after)
