"""Flow jobs for tests/test_flow_jobs.py: PocketFlow flows registered with @flow_task.

Every node notes `<stage>:<job attempt>` in the Redis list the shared store names
(`log`), so a test sees exactly which stages ran, how often and in which attempt. The
store steers them: `hold_in` makes that stage wait (reporting progress) until the key
`<log>:release` exists; `fail_once_in` makes that stage raise the first time it runs.
"""

from __future__ import annotations

import asyncio
import functools
import os
from typing import Any

import redis
from pocketflow import AsyncFlow, AsyncNode, Flow, Node

from pocketqueue import Client, JobCancelled, JobContext, current_stage, flow_task, stage, task


@functools.cache
def _client() -> redis.Redis:
    return redis.Redis.from_url(os.environ["REDIS_URL"], decode_responses=True)


def _note(shared: dict[str, Any], name: str) -> None:
    """Log this run, then hold or fail as the store asks."""
    log = shared["log"]
    _client().rpush(log, f"{name}:{current_stage().job.attempt}")
    if shared.get("fail_once_in") == name and _client().incr(f"{log}:failed:{name}") == 1:
        raise RuntimeError(f"{name} failed once")


async def _hold(shared: dict[str, Any], name: str) -> None:
    if shared.get("hold_in") != name:
        return
    percent = 0
    while not _client().exists(f"{shared['log']}:release"):
        percent = min(percent + 10, 90)
        try:
            current_stage().progress(percent)  # raises JobCancelled once the job is cancelled
        except JobCancelled:
            _client().rpush(shared["log"], f"{name}:cancelled")
            raise
        await asyncio.sleep(0.1)


class _Stage(AsyncNode):  # type: ignore[misc]
    async def prep_async(self, shared: dict[str, Any]) -> dict[str, Any]:
        return shared

    async def exec_async(self, shared: dict[str, Any]) -> str:
        name = current_stage().name
        _note(shared, name)
        await _hold(shared, name)
        return f"{name} of book {shared['book_id']}"

    async def post_async(self, shared: dict[str, Any], prep: Any, result: str) -> None:
        shared[current_stage().name] = result


class Extract(_Stage):
    pass


class Segment(_Stage):
    pass


class Topics(_Stage):
    pass


class Vocabulary(_Stage):
    pass


class Audio(_Stage):
    pass


@flow_task(name="tests.flow.book", stages={"extract": 20, "segment": 15, "topics": 20, "vocabulary": 20, "audio": 25})
def book() -> AsyncFlow:
    """The book pipeline of the README: five weighted stages."""
    extract, segment, topics, vocabulary, audio = Extract(), Segment(), Topics(), Vocabulary(), Audio()
    extract >> segment >> topics >> vocabulary >> audio
    return AsyncFlow(start=extract)


class Decide(AsyncNode):  # type: ignore[misc]
    async def prep_async(self, shared: dict[str, Any]) -> dict[str, Any]:
        return shared

    async def exec_async(self, shared: dict[str, Any]) -> str:
        _note(shared, "decide")
        return str(shared["go"])

    async def post_async(self, shared: dict[str, Any], prep: Any, go: str) -> str:
        shared["decided"] = go
        return go


@flow_task(name="tests.flow.branch")
def branch() -> AsyncFlow:
    """decide -> left or right (by the store's `go`) -> finish; equal weights."""
    decide, left, right, finish = (
        Decide(),
        stage("left", Extract()),
        stage("right", Segment()),
        stage("finish", Audio()),
    )
    decide - "left" >> left
    decide - "right" >> right
    left >> finish
    right >> finish
    return AsyncFlow(start=decide)


class Count(Node):  # type: ignore[misc]
    """A sync node: adds one to the store's `n`."""

    def prep(self, shared: dict[str, Any]) -> dict[str, Any]:
        return shared

    def exec(self, shared: dict[str, Any]) -> None:
        _note(shared, current_stage().name)

    def post(self, shared: dict[str, Any], prep: Any, result: None) -> None:
        shared["n"] = shared.get("n", 0) + 1


@flow_task(name="tests.flow.sync")
def sync_flow() -> Flow:
    """A plain (sync) Flow of two nodes."""
    first, second = stage("first", Count()), stage("second", Count())
    first >> second
    return Flow(start=first)


@task(name="tests.batch.collect")
def collect(job: JobContext, batch: dict[str, Any], log: str = "") -> dict[str, Any]:
    """A batch's on_complete: notes each run in `log`, returns what the batch did."""
    if log:
        _client().rpush(log, job.job_id)
    return batch


class FanOut(AsyncNode):  # type: ignore[misc]
    """Dispatches a batch of tests.add jobs whose callback is the flow that goes on (fan_in)."""

    async def prep_async(self, shared: dict[str, Any]) -> list[int]:
        return list(shared["numbers"])

    async def exec_async(self, numbers: list[int]) -> str:
        jobs = [{"task": "tests.add", "args": [n, n]} for n in numbers]
        return Client().dispatch_batch(jobs, on_complete={"task": "tests.flow.fan_in"}).batch_id

    async def post_async(self, shared: dict[str, Any], prep: Any, batch_id: str) -> None:
        shared["batch_id"] = batch_id


class Total(AsyncNode):  # type: ignore[misc]
    """Adds up the batch's results (the store was seeded with `batch` by the callback)."""

    async def prep_async(self, shared: dict[str, Any]) -> dict[str, Any]:
        return dict(shared["batch"])

    async def post_async(self, shared: dict[str, Any], batch: dict[str, Any], _: Any) -> None:
        shared["total"] = sum(entry["result"]["sum"] for entry in batch["jobs"].values())
        del shared["batch"]  # the store is the result: keep it small


@flow_task(name="tests.flow.fan_out")
def fan_out() -> AsyncFlow:
    return AsyncFlow(start=FanOut())


@flow_task(name="tests.flow.fan_in")
def fan_in() -> AsyncFlow:
    return AsyncFlow(start=Total())
