"""RedisProbeNode: a full write-read-delete round trip against Redis, timed."""

from __future__ import annotations

import time
import uuid
from typing import Any

from pocketflow import AsyncNode

from pocketqueue.runtime import QueueRuntime


class RedisProbeNode(AsyncNode):  # type: ignore[misc]
    """Writes, reads back and deletes a probe key; sets `shared["probe"]`; action "probed"."""

    async def prep_async(self, shared: dict[str, Any]) -> QueueRuntime:
        runtime: QueueRuntime = shared["runtime"]
        return runtime

    async def exec_async(self, runtime: QueueRuntime) -> dict[str, Any]:
        key = f"{runtime.settings.queue_key_prefix}:probe:{uuid.uuid4()}"
        value = uuid.uuid4().hex
        started = time.perf_counter()
        async with runtime.redis.pipeline(transaction=False) as pipe:
            pipe.set(key, value, ex=10)  # the TTL cleans up if the DEL never arrives
            pipe.get(key)
            pipe.delete(key)
            _, read_back, _ = await pipe.execute()
        return {
            "ok": read_back == value,
            "latency_ms": round((time.perf_counter() - started) * 1000, 3),
            "redis_version": (await runtime.redis.info("server")).get("redis_version"),
        }

    async def post_async(self, shared: dict[str, Any], prep_res: Any, exec_res: dict[str, Any]) -> str:
        shared["probe"] = exec_res
        return "probed"
