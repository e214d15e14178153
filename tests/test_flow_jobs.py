"""Flow jobs (pocketqueue.pipelines): a PocketFlow flow as one durable job.

Real workers run the flows of task_modules/pq_flow_tasks.py on a queue and key prefix of
their own; each node logs `<stage>:<attempt>` to a Redis list, so each test sees exactly
which stages ran, how often, in which attempt. Crashes are real: the worker's whole
process group is SIGKILLed mid-stage.
"""

from __future__ import annotations

import os
import signal
import uuid
from collections.abc import Callable
from typing import Any

import pytest
import redis
from pocketflow import AsyncFlow, AsyncNode, BatchFlow

from conftest import WorkerProcess, make_settings, wait_until
from pocketqueue import Client, flow_task, stage
from pocketqueue.config import Settings
from pocketqueue.jobs.models import Job, JobStatus
from pocketqueue.pipelines.stages import nodes_by_stage, progress, weights

StartWorker = Callable[..., WorkerProcess]
BOOK = ["extract", "segment", "topics", "vocabulary", "audio"]


@pytest.fixture
def flow_settings(redis_url: str) -> Settings:
    return make_settings(redis_url, uuid.uuid4().hex[:8], task_modules=["pq_flow_tasks"], queue_max_retries=0)


@pytest.fixture
def log(sync_redis: redis.Redis) -> str:
    return f"pqtest-flowlog-{uuid.uuid4().hex[:8]}"


def runs(client: redis.Redis, log: str) -> list[str]:
    return [str(entry) for entry in client.lrange(log, 0, -1)]


def stages_of(job: Job) -> dict[str, dict[str, Any]]:
    assert job.stages is not None
    return {stage.name: stage.model_dump() for stage in job.stages}


def test_a_flow_job_runs_each_stage_once_with_weighted_progress(
    flow_settings: Settings, start_worker: StartWorker, sync_redis: redis.Redis, log: str
) -> None:
    start_worker(flow_settings)
    client = Client(flow_settings)
    handle = client.dispatch("tests.flow.book", kwargs={"book_id": 42, "log": log})
    result = handle.result(timeout=30)
    assert {name: result[name] for name in BOOK} == {name: f"{name} of book 42" for name in BOOK}
    assert result["book_id"] == 42  # the dispatch's kwargs seeded the store
    assert runs(sync_redis, log) == [f"{name}:1" for name in BOOK]
    job = handle.status()
    assert job.progress == 100
    stages = stages_of(job)
    assert list(stages) == BOOK
    assert [stages[name]["weight"] for name in BOOK] == [20, 15, 20, 20, 25]
    assert all(s["status"] == "completed" and s["attempts"] == 1 and s["error"] is None for s in stages.values())
    assert all(s["started_at"] <= s["finished_at"] for s in stages.values())


def test_a_worker_killed_mid_stage_resumes_at_that_stage(
    flow_settings: Settings, start_worker: StartWorker, sync_redis: redis.Redis, log: str
) -> None:
    doomed = start_worker(flow_settings)
    client = Client(flow_settings)
    # A worker lost mid-job costs an attempt: one retry lets the recovery run it again.
    handle = client.dispatch("tests.flow.book", kwargs={"book_id": 7, "log": log, "hold_in": "topics"}, max_retries=1)
    # Stage 3 is running (and reporting progress inside its 20% share) when the machine dies.
    job = wait_until(lambda: (j := handle.status()).step == "topics" and j.progress > 35 and j, timeout=20)
    assert 35 < job.progress < 55
    os.killpg(doomed.process.pid, signal.SIGKILL)
    doomed.process.wait()
    sync_redis.set(f"{log}:release", "1")
    start_worker(flow_settings)  # recovers the job when its lease lapses
    result = handle.result(timeout=60)
    assert result["audio"] == "audio of book 7"
    assert runs(sync_redis, log) == ["extract:1", "segment:1", "topics:1", "topics:2", "vocabulary:2", "audio:2"]
    stages = stages_of(handle.status())
    assert [stages[name]["attempts"] for name in BOOK] == [1, 1, 2, 1, 1]
    assert all(s["status"] == "completed" for s in stages.values())


def test_a_retry_resumes_at_the_failed_stage_with_the_checkpointed_store(
    flow_settings: Settings, start_worker: StartWorker, sync_redis: redis.Redis, log: str
) -> None:
    start_worker(flow_settings)
    client = Client(flow_settings)
    handle = client.dispatch(
        "tests.flow.book", kwargs={"book_id": 3, "log": log, "fail_once_in": "vocabulary"}, max_retries=1
    )
    assert handle.result(timeout=30)["vocabulary"] == "vocabulary of book 3"
    assert runs(sync_redis, log) == ["extract:1", "segment:1", "topics:1", "vocabulary:1", "vocabulary:2", "audio:2"]
    job = handle.status()
    assert [e.message for e in job.attempt_errors] == ["vocabulary failed once"]
    vocabulary = stages_of(job)["vocabulary"]
    assert (vocabulary["attempts"], vocabulary["status"], vocabulary["error"]) == (2, "completed", None)


def test_a_failed_stage_is_shown_with_its_error(
    flow_settings: Settings, start_worker: StartWorker, sync_redis: redis.Redis, log: str
) -> None:
    start_worker(flow_settings)
    handle = Client(flow_settings).dispatch(
        "tests.flow.book", kwargs={"book_id": 1, "log": log, "fail_once_in": "segment"}
    )
    job = handle.wait(timeout=30)
    assert job.status == JobStatus.FAILED
    stages = stages_of(job)
    assert stages["segment"]["status"] == "failed"
    assert stages["segment"]["error"] == "RuntimeError: segment failed once"
    assert [stages[name]["status"] for name in BOOK] == ["completed", "failed", "pending", "pending", "pending"]
    assert job.progress == 20


def test_a_branching_flow_resumes_on_the_branch_it_took(
    flow_settings: Settings, start_worker: StartWorker, sync_redis: redis.Redis, log: str
) -> None:
    start_worker(flow_settings)
    client = Client(flow_settings)
    kwargs = {"book_id": 5, "log": log, "go": "right", "fail_once_in": "right"}
    handle = client.dispatch("tests.flow.branch", kwargs=kwargs, max_retries=1)
    result = handle.result(timeout=30)
    assert result["decided"] == "right"
    assert "left" not in result
    # decide is not run again: the retry starts at the node its checkpoint named.
    assert runs(sync_redis, log) == ["decide:1", "right:1", "right:2", "finish:2"]
    stages = stages_of(handle.status())
    assert {name: s["status"] for name, s in stages.items()} == {
        "decide": "completed",
        "left": "skipped",
        "right": "completed",
        "finish": "completed",
    }


def test_a_cancel_stops_the_flow_inside_a_stage_and_no_later_stage_runs(
    flow_settings: Settings, start_worker: StartWorker, sync_redis: redis.Redis, log: str
) -> None:
    one_slot = flow_settings.model_copy(update={"worker_concurrency": 1})
    start_worker(one_slot)
    client = Client(one_slot)
    handle = client.dispatch("tests.flow.book", kwargs={"book_id": 9, "log": log, "hold_in": "segment"})
    wait_until(lambda: handle.status().step == "segment", timeout=20)
    assert handle.cancel().status == JobStatus.CANCELLED
    # Released at once: were the cancel missed, the flow would go on to its next stage. The
    # attempt stops however the cancel reaches it first: the worker terminating the job
    # (Celery's revoke), the node's next progress report (JobCancelled), or the checkpoint
    # after the node.
    sync_redis.set(f"{log}:release", "1")
    # One process slot: this job runs only once the cancelled attempt has ended.
    after = f"{log}-after"
    assert client.dispatch("tests.flow.sync", kwargs={"log": after}).result(timeout=20)["n"] == 2
    assert [run for run in runs(sync_redis, log) if run != "segment:cancelled"] == ["extract:1", "segment:1"]
    assert handle.status().status == JobStatus.CANCELLED


def test_a_sync_flow_runs_as_a_flow_job(
    flow_settings: Settings, start_worker: StartWorker, sync_redis: redis.Redis, log: str
) -> None:
    start_worker(flow_settings)
    result = Client(flow_settings).dispatch("tests.flow.sync", kwargs={"log": log, "n": 40}).result(timeout=30)
    assert result["n"] == 42
    assert runs(sync_redis, log) == ["first:1", "second:1"]


# Checked where the flow is registered, before any job exists.


class TopicAnalysis(AsyncNode):  # type: ignore[misc]
    pass


def test_stage_names_default_to_the_class_in_snake_case_and_must_be_unique() -> None:
    first, second = TopicAnalysis(), TopicAnalysis()
    first >> second
    with pytest.raises(ValueError, match="both stage 'topic_analysis'"):
        nodes_by_stage(AsyncFlow(start=first))
    stage("again", second)
    assert list(nodes_by_stage(AsyncFlow(start=first))) == ["topic_analysis", "again"]


def test_weights_must_cover_every_stage_and_are_scaled_to_100() -> None:
    assert weights(["a", "b"], {"a": 1, "b": 3}) == {"a": 25.0, "b": 75.0}
    assert weights(["a", "b", "c", "d"], None) == {"a": 25.0, "b": 25.0, "c": 25.0, "d": 25.0}
    with pytest.raises(ValueError, match="unknown \\['x'\\], missing \\['b'\\]"):
        weights(["a", "b"], {"a": 1, "x": 1})
    with pytest.raises(ValueError, match="must not all be zero"):
        weights(["a"], {"a": 0})
    stages = [{"name": "a", "weight": 25.0, "status": "completed"}, {"name": "b", "weight": 75.0, "status": "running"}]
    assert progress(stages, 50) == 62


def test_flow_task_refuses_what_it_cannot_run_durably() -> None:
    with pytest.raises(ValueError, match="not a batch flow"):
        flow_task(name="tests.flow.bad-batch")(lambda: BatchFlow(start=TopicAnalysis()))
    with pytest.raises(ValueError, match="missing \\['topic_analysis'\\]"):
        flow_task(name="tests.flow.bad-weights", stages={"other": 1})(lambda: AsyncFlow(start=TopicAnalysis()))
