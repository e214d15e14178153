"""`python -m pocketqueue retry-failed | clear`, run in-process against a real Redis and real workers.

Settings come from the environment, as for a user. Jobs are failed (or left running) by
calling the worker side of the store directly, as a worker would: it keeps the tests fast.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from conftest import WorkerProcess, settings_env, wait_until
from pocketqueue.cli import main
from pocketqueue.config import Settings, get_settings
from pocketqueue.jobs.keys import Keys, queue_list, queue_lists
from pocketqueue.jobs.models import JobError, Priority
from pocketqueue.jobs.worker_store import WorkerJobStore
from pocketqueue.nodes import DispatchRequest
from pocketqueue.runtime import open_runtime
from test_lifecycle import private_settings, read, submit

StartWorker = Callable[[Settings], WorkerProcess]
LEASE_MS = 60_000  # a "running" job's lease outlives the test, so no janitor recovers it


@pytest.fixture
def settings(redis_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Settings]:
    """A private queue and prefix, given to the CLI through the environment only."""
    private = private_settings(redis_url, worker_concurrency=1)  # one job at a time, in priority order
    monkeypatch.chdir(tmp_path)  # no .env file
    for name in list(os.environ):
        if name.startswith(("QUEUE_", "CELERY_", "REDIS_")):
            monkeypatch.delenv(name)
    for name, value in settings_env(private).items():
        if name.startswith(("QUEUE_", "REDIS_", "TASK_MODULES")):
            monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    yield private
    get_settings.cache_clear()


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def dispatch(settings: Settings, *requests: DispatchRequest) -> list[str]:
    async def run() -> list[str]:
        async with open_runtime(settings) as runtime:
            return [(await submit(runtime, request)).job_id for request in requests]

    return asyncio.run(run())


def store(client: redis.Redis, settings: Settings) -> WorkerJobStore:
    return WorkerJobStore(client, Keys(settings.queue_key_prefix))


def take_messages(client: redis.Redis, settings: Settings) -> None:
    """Empty the queue's lists, as a worker taking the messages would."""
    client.delete(*queue_lists(settings.queue_name))


def failed_jobs(client: redis.Redis, settings: Settings, *requests: DispatchRequest) -> list[str]:
    """Jobs that a worker ran once and failed for good (they are in the dead-letter set)."""
    job_ids = dispatch(settings, *requests)
    take_messages(client, settings)
    for job_id in job_ids:
        claim = store(client, settings).claim(job_id, "test-worker", LEASE_MS, uuid.uuid4().hex)
        error = JobError(type="RuntimeError", message="boom", attempt=claim.attempt)
        assert store(client, settings).fail(job_id, error, 600, claim.token) == "ok"
    return job_ids


def completed_job(client: redis.Redis, settings: Settings) -> str:
    [job_id] = dispatch(settings, DispatchRequest("tests.add", [1, 1]))
    take_messages(client, settings)
    claim = store(client, settings).claim(job_id, "test-worker", LEASE_MS, uuid.uuid4().hex)
    assert store(client, settings).complete(job_id, claim.token, '{"sum": 2}') == "ok"
    return job_id


def dead_letter(client: redis.Redis, settings: Settings) -> set[str]:
    return set(client.zrange(Keys(settings.queue_key_prefix).dead_letter, 0, -1))  # type: ignore[arg-type]


def test_retry_failed_requeues_a_failed_job_and_a_worker_then_runs_it(
    settings: Settings, sync_redis: redis.Redis, start_worker: StartWorker, capsys: pytest.CaptureFixture[str]
) -> None:
    [job_id] = failed_jobs(sync_redis, settings, DispatchRequest("tests.add", [40, 2]))
    assert read(sync_redis, settings, job_id)["status"] == "failed"
    assert dead_letter(sync_redis, settings) == {job_id}

    code, out, _ = cli(capsys, "retry-failed", "--job-id", job_id)
    assert code == 0, out
    assert f"re-driven  {job_id}" in out
    assert f"re-drove 1 job(s) onto queue {settings.queue_name!r}; skipped 0" in out
    record = read(sync_redis, settings, job_id)
    assert record["status"] == "queued"
    assert record["attempts"] == "0"
    assert not [field for field in record if field.startswith("error")]  # `error` and every `error:<n>`
    assert "finished_at" not in record
    assert sync_redis.ttl(f"{settings.queue_key_prefix}:job:{job_id}") == -1  # active again: no expiry
    assert dead_letter(sync_redis, settings) == set()
    assert sync_redis.llen(queue_list(settings.queue_name, 3)) == 1  # its message, at its (normal) priority

    start_worker(settings)
    wait_until(lambda: read(sync_redis, settings, job_id)["status"] == "completed")
    record = read(sync_redis, settings, job_id)
    assert record["attempts"] == "1"
    assert '"sum": 42' in record["result"]


def test_retry_failed_says_why_a_job_id_was_not_redriven_and_exits_1(
    settings: Settings, sync_redis: redis.Redis, capsys: pytest.CaptureFixture[str]
) -> None:
    done = completed_job(sync_redis, settings)
    [failed] = failed_jobs(sync_redis, settings, DispatchRequest("tests.add", [1, 2]))
    missing = uuid.uuid4().hex

    code, out, _ = cli(capsys, "retry-failed", "--job-id", done)
    assert code == 1
    assert f"skipped    {done}: completed, not failed (only failed jobs can be re-driven)" in out
    assert read(sync_redis, settings, done)["status"] == "completed"
    assert read(sync_redis, settings, done)["result"] == '{"sum": 2}'

    # Several at once: those that can be are re-driven, and the exit code still says "not all".
    code, out, _ = cli(capsys, "retry-failed", "--job-id", done, "--job-id", missing, "--job-id", failed)
    assert code == 1
    assert f"re-driven  {failed}" in out
    assert f"skipped    {missing}: missing (never created, or expired)" in out
    assert "re-drove 1 job(s)" in out
    assert "skipped 2" in out
    assert read(sync_redis, settings, failed)["status"] == "queued"

    # The same id twice is one job asked for once.
    [again] = failed_jobs(sync_redis, settings, DispatchRequest("tests.add", [1, 2]))
    code, out, _ = cli(capsys, "retry-failed", "--job-id", again, "--job-id", again)
    assert code == 0, out
    assert out.count(again) == 1


def test_retry_failed_all_redrives_every_failed_job_or_those_of_one_task(
    settings: Settings, sync_redis: redis.Redis, capsys: pytest.CaptureFixture[str]
) -> None:
    done = completed_job(sync_redis, settings)
    adds = failed_jobs(sync_redis, settings, *[DispatchRequest("tests.add", [n, n]) for n in range(3)])
    [fail] = failed_jobs(sync_redis, settings, DispatchRequest("tests.fail", ["boom"]))
    assert dead_letter(sync_redis, settings) == {*adds, fail}

    code, out, _ = cli(capsys, "retry-failed", "--all", "--task", "tests.fail")
    assert code == 0, out
    assert f"re-driven  {fail}" in out
    assert "re-drove 1 job(s)" in out
    assert dead_letter(sync_redis, settings) == set(adds)

    code, out, _ = cli(capsys, "retry-failed", "--all")
    assert code == 0, out
    assert all(f"re-driven  {job_id}" in out for job_id in adds)
    assert "re-drove 3 job(s)" in out
    assert done not in out
    assert dead_letter(sync_redis, settings) == set()
    assert {read(sync_redis, settings, job_id)["status"] for job_id in [*adds, fail]} == {"queued"}
    assert read(sync_redis, settings, done)["status"] == "completed"
    assert sync_redis.llen(queue_list(settings.queue_name, 3)) == 4

    code, out, _ = cli(capsys, "retry-failed", "--all")
    assert code == 0
    assert out.strip() == "nothing to re-drive: no failed jobs"
    code, out, _ = cli(capsys, "retry-failed", "--all", "--task", "tests.add")
    assert code == 0
    assert out.strip() == "nothing to re-drive: no failed jobs of task 'tests.add'"


@pytest.mark.parametrize(
    ("args", "says"),
    [
        ([], "one of the arguments --all --job-id is required"),
        (["--all", "--job-id", "abc"], "not allowed with argument"),
        (["--job-id", "abc", "--task", "tests.add"], "--task filters --all"),
    ],
)
def test_retry_failed_needs_all_or_job_ids(
    settings: Settings, capsys: pytest.CaptureFixture[str], args: list[str], says: str
) -> None:
    code, out, err = cli(capsys, "retry-failed", *args)
    assert code == 2
    assert err.splitlines()[-1].startswith("pocketqueue: error: ")
    assert says in err
    assert "Traceback" not in err + out


def waiting_jobs(client: redis.Redis, settings: Settings, key: str) -> dict[str, list[str]]:
    """Jobs of every waiting kind, each recording any run in the Redis list `key`."""

    def runs(priority: Priority = Priority.NORMAL, delay: float | None = None) -> DispatchRequest:
        return DispatchRequest("tests.runs", [key], priority=priority, delay_seconds=delay)

    # A retrying job: it ran once, failed, and waits in the schedule for its backoff.
    [retrying] = dispatch(settings, runs())
    take_messages(client, settings)
    claim = store(client, settings).claim(retrying, "test-worker", LEASE_MS, uuid.uuid4().hex)
    error = JobError(type="RuntimeError", message="boom", attempt=claim.attempt)
    assert store(client, settings).retry(retrying, claim.token, error, 0.5) == "ok"
    # A running job: its message is gone from the lists, and its lease is live.
    [running] = dispatch(settings, runs())
    take_messages(client, settings)
    assert store(client, settings).claim(running, "test-worker", LEASE_MS, uuid.uuid4().hex).started
    queued = dispatch(settings, runs(Priority.HIGH), runs(), runs(), runs(Priority.LOW))
    scheduled = dispatch(settings, runs(delay=0.5))  # due before a worker could start
    return {"queued": queued, "scheduled": scheduled, "retrying": [retrying], "processing": [running]}


def statuses(client: redis.Redis, settings: Settings, jobs: dict[str, list[str]]) -> dict[str, set[str]]:
    return {kind: {read(client, settings, job_id)["status"] for job_id in ids} for kind, ids in jobs.items()}


def test_clear_without_confirm_says_what_it_would_remove_and_removes_nothing(
    settings: Settings, sync_redis: redis.Redis, capsys: pytest.CaptureFixture[str]
) -> None:
    jobs = waiting_jobs(sync_redis, settings, f"runs-{uuid.uuid4().hex}")
    before = statuses(sync_redis, settings, jobs)
    assert before == {k: {k} for k in jobs}
    lengths = [sync_redis.llen(name) for name in queue_lists(settings.queue_name)]
    assert lengths == [1, 2, 1]

    code, out, err = cli(capsys, "clear", "--queue", settings.queue_name)
    assert code == 2
    assert out == ""
    assert err.startswith(
        f"pocketqueue: error: clear would remove 4 message(s) from queue {settings.queue_name!r} "
        "(high 1, normal 2, low 1) and cancel 2 scheduled or retrying job(s); running jobs are not touched. "
        "Add --confirm to do it."
    )
    assert statuses(sync_redis, settings, jobs) == before
    assert [sync_redis.llen(name) for name in queue_lists(settings.queue_name)] == lengths
    assert sync_redis.zcard(Keys(settings.queue_key_prefix).schedule) == 2

    # Another queue's name: its (empty) lists only, never this queue's schedule.
    code, out, _ = cli(capsys, "clear", "--queue", f"{settings.queue_name}-other", "--confirm")
    assert code == 0
    assert "(its lists): cancelled 0 job(s)" in out
    assert statuses(sync_redis, settings, jobs) == before
    assert sync_redis.zcard(Keys(settings.queue_key_prefix).schedule) == 2


def test_clear_confirmed_cancels_every_waiting_job_and_no_worker_runs_them(
    settings: Settings, sync_redis: redis.Redis, start_worker: StartWorker, capsys: pytest.CaptureFixture[str]
) -> None:
    key = f"runs-{uuid.uuid4().hex}"
    jobs = waiting_jobs(sync_redis, settings, key)

    code, out, _ = cli(capsys, "clear", "--queue", settings.queue_name, "--confirm")
    assert code == 0, out
    assert out.strip() == (
        f"cleared queue {settings.queue_name!r} (its lists and the schedule): cancelled 6 job(s); "
        "running jobs were not touched"
    )
    assert statuses(sync_redis, settings, jobs) == {
        "queued": {"cancelled"},
        "scheduled": {"cancelled"},
        "retrying": {"cancelled"},
        "processing": {"processing"},
    }
    assert [sync_redis.exists(name) for name in queue_lists(settings.queue_name)] == [0, 0, 0]
    keys = Keys(settings.queue_key_prefix)
    assert sync_redis.zcard(keys.schedule) == 0
    assert sync_redis.zcard(keys.index("queued")) == 0
    assert sync_redis.zcard(keys.index("cancelled")) == 6

    start_worker(settings)
    # The last job to run, if the others were still there: published from the schedule after
    # them (they were due first), at the lowest priority, to a worker that runs one job at a time.
    [marker] = dispatch(settings, DispatchRequest("tests.add", [1, 2], priority=Priority.LOW, delay_seconds=0.05))
    wait_until(lambda: read(sync_redis, settings, marker)["status"] == "completed")
    assert sync_redis.llen(key) == 0  # none of them ran
    assert statuses(sync_redis, settings, jobs)["scheduled"] == {"cancelled"}
