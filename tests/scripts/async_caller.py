"""Async entry points: `dispatch_async`, AsyncClient, and a FastAPI route that awaits a job.

Run by tests/test_client.py in a subprocess; prints what it saw as one JSON object.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
from fastapi import FastAPI
from pq_test_tasks import add, runs

from pocketqueue import AsyncClient, QueueError


async def main() -> dict[str, Any]:
    out: dict[str, Any] = {}
    handle = await add.dispatch_async(2, 2)
    out["dispatch_async"] = (await handle.result(timeout=30))["sum"]
    async with AsyncClient() as client:
        tagged = await client.dispatch("tests.add", kwargs={"a": 1, "b": 2}, tags={"batch": "async-caller"})
        out["waited"] = (await tagged.wait(timeout=30)).status.value
        page = await client.list(tags={"batch": "async-caller"})
        out["listed"] = [job.job_id for job in page.jobs] == [tagged.job_id]
        delayed = await client.dispatch("tests.add", kwargs={"a": 1, "b": 1}, delay_seconds=600)
        out["cancel"] = (await delayed.cancel()).status.value
        try:
            await delayed.cancel()
        except QueueError as exc:
            out["cancel_again"] = type(exc).__name__

    app = FastAPI()

    @app.get("/slow")
    async def slow() -> dict[str, Any]:
        job = await runs.dispatch_async("async-caller-slow", kwargs={"sleep": 1.0, "result": "slow"})
        return {"result": await job.result(timeout=30)}

    @app.get("/fast")
    async def fast() -> dict[str, Any]:
        return {"result": "fast"}

    finished: list[str] = []
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://caller") as http:

        async def call(path: str) -> Any:
            body = (await http.get(path)).json()
            finished.append(path)
            return body

        # The slow route awaits a 1-second job; the fast one must not wait behind it.
        answers = await asyncio.gather(call("/slow"), call("/fast"))
    out["route"] = [answers[0]["result"], finished]
    return out


print(json.dumps(asyncio.run(main())))
