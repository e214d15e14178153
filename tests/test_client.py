"""The queue from Python: `@task` objects, Client/AsyncClient, job handles, async tasks.

Against a real Redis and the session's real worker; the callers run as real processes
(a plain script with no event loop, an asyncio program with a FastAPI app).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from conftest import WorkerProcess, settings_env
from pocketqueue import Client, JobFailed
from pocketqueue.config import Settings

SCRIPTS = Path(__file__).parent / "scripts"


def run_script(name: str, settings: Settings) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, str(SCRIPTS / name)], env=settings_env(settings), capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-4000:]
    seen: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return seen


def test_a_plain_script_dispatches_waits_and_cancels(settings: Settings, worker: WorkerProcess) -> None:
    seen = run_script("sync_caller.py", settings)
    assert seen["client_result"] == 42  # Client, without importing the task code
    assert seen["idempotent"] == [True, False, True]
    assert seen["reused_key"] == "IdempotencyKeyReused"
    assert seen["delay"] == 5
    assert seen["dispatch"] == ["completed", 6, {"case": "sync"}, "high"]
    # apply_async: countdown is a delay, Celery priority 0 is high; cancelled while scheduled.
    assert seen["apply_async"] == ["scheduled", "high", "cancelled"]
    assert seen["failed"] == ["ValueError", "bad input", True]
    assert seen["timeout"] is True
    assert seen["nested"] == [9, True]  # a task that dispatches another and waits for it
    assert seen["limited"] == ["SoftTimeLimitExceeded", True]  # the task's own soft_time_limit (1 s)
    assert seen["refused"] == ["InvalidArguments", "InvalidRequest", "InvalidRequest", "InvalidRequest"]
    assert seen["forked_child"] == 0
    assert seen["parent_after_fork"] == 10


def test_async_callers_never_block_the_loop(settings: Settings, worker: WorkerProcess) -> None:
    seen = run_script("async_caller.py", settings)
    assert seen["dispatch_async"] == 4
    assert seen["waited"] == "completed"
    assert seen["listed"] is True
    assert seen["cancel"] == "cancelled"
    assert seen["cancel_again"] == "JobAlreadyFinished"
    # The route awaiting a 1-second job answered last: the fast route did not wait behind it.
    assert seen["route"] == ["slow", ["/fast", "/slow"]]


def test_async_tasks_share_one_loop_per_pool_process(settings: Settings, worker: WorkerProcess) -> None:
    client = Client(settings)
    handles = [client.dispatch("tests.client.async_flow", kwargs={"value": n}) for n in range(8)]
    jobs = [handle.wait(timeout=30) for handle in handles]
    assert [job.result["value"] for job in jobs] == [n * 2 + 1 for n in range(8)]
    assert {job.step for job in jobs} == {"doubled"}  # progress from inside the flow's node
    counts: dict[int, list[int]] = {}
    for job in sorted(jobs, key=lambda job: job.started_at or job.created_at):
        counts.setdefault(job.result["pid"], []).append(job.result["jobs_on_loop"])
    # Each pool process ran its jobs on one loop, reused: it counted them 1, 2, 3...
    for seen in counts.values():
        assert len(set(seen)) == len(seen), counts
        assert sorted(seen)[-1] >= len(seen), counts
    assert max(len(seen) for seen in counts.values()) >= 2, counts
    with pytest.raises(JobFailed) as failed:
        client.dispatch("tests.client.async_fail").result(timeout=30)
    assert (failed.value.error_type, failed.value.message) == ("KeyError", "'async boom'")
    client.close()


def test_a_tasks_own_hard_time_limit_fails_its_job(settings: Settings, worker: WorkerProcess) -> None:
    client = Client(settings)
    with pytest.raises(JobFailed) as failed:
        client.dispatch("tests.client.hard_limited", kwargs={"seconds": 30}).result(timeout=30)
    assert failed.value.error_type == "TimeLimitExceeded"
    assert "2 s, the task's time_limit" in failed.value.message
    client.close()
