"""The audit trail: who cancelled, re-drove, paused or triggered what, and when.

A Redis stream (`Keys.audit`), trimmed to QUEUE_AUDIT_MAX_ENTRIES, newest last. The API
writes an entry after each admin action (and each cancel) succeeds, naming the key that
asked (`who`, never its secret); the CLI's admin commands write theirs as `cli:<user>`.
`GET /api/queue/audit` reads it, newest first, for admins.
"""

from __future__ import annotations

import getpass
import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, cast

from pydantic import BaseModel, Field
from redis.asyncio import Redis

from pocketqueue.jobs.keys import Keys

MAX_JOB_IDS = 100  # an entry names at most this many jobs, and counts them all
YEAR_SECONDS = 366 * 86_400


class AuditEntry(BaseModel):
    """One action: its stream id (a cursor), when, who, what and on which jobs."""

    id: str = Field(description="The entry's id; pass it as `before` to read older entries")
    at: datetime
    who: str = Field(description="The name of the API key that acted (`anonymous` with no keys; `cli:<user>`)")
    action: str = Field(description="The operation, e.g. `cancel_job`, `retry_job`, `pause_schedule`")
    target: str | None = Field(default=None, description="What it acted on besides jobs, e.g. a schedule's name")
    job_ids: list[str] = Field(description=f"The jobs it changed (the first {MAX_JOB_IDS})")
    job_count: int = Field(description="How many jobs it changed in all")


def entry_fields(
    who: str, action: str, job_ids: Sequence[str], target: str | None, job_count: int | None
) -> dict[Any, Any]:
    fields: dict[Any, Any] = {
        "who": who,
        "action": action,
        "jobs": json.dumps(list(job_ids[:MAX_JOB_IDS])),
        "n": str(len(job_ids) if job_count is None else job_count),
    }
    if target is not None:
        fields["target"] = target
    return fields


async def record(
    redis: Redis,
    keys: Keys,
    max_entries: int,
    *,
    who: str,
    action: str,
    job_ids: Sequence[str] = (),
    target: str | None = None,
    job_count: int | None = None,
) -> None:
    """Append an entry; `job_count` when the jobs are counted but not named (a queue cleared)."""
    async with redis.pipeline(transaction=True) as pipe:
        fields = entry_fields(who, action, job_ids, target, job_count)
        pipe.xadd(keys.audit, fields, maxlen=max_entries, approximate=True)
        pipe.expire(keys.audit, YEAR_SECONDS)
        await pipe.execute()


def cli_user() -> str:
    """Who an admin command of the CLI acts as in the trail (it needs no key: it talks to Redis)."""
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):  # no user name for this uid (a bare container)
        return "cli"


def _entry(entry_id: str, fields: dict[str, Any]) -> AuditEntry:
    milliseconds = int(entry_id.split("-")[0])
    return AuditEntry(
        id=entry_id,
        at=datetime.fromtimestamp(milliseconds / 1000, UTC),
        who=fields.get("who", ""),
        action=fields.get("action", ""),
        target=fields.get("target"),
        job_ids=json.loads(fields.get("jobs", "[]")),
        job_count=int(fields.get("n", "0")),
    )


MAX_SEQUENCE = 2**64 - 1


def _just_before(entry_id: str) -> str | None:
    """The newest possible id older than `entry_id` (None: there is none), for XREVRANGE's max.

    Worked out here rather than sent as Redis's exclusive `(id`, which Redis refuses for
    `0-0` (schemathesis found it) and needs 6.2.
    """
    milliseconds, _, sequence = entry_id.partition("-")
    ms, seq = int(milliseconds), int(sequence or "0")
    if seq > 0:
        return f"{ms}-{seq - 1}"
    if ms > 0:
        return f"{ms - 1}-{MAX_SEQUENCE}"
    return None


async def read(redis: Redis, keys: Keys, limit: int, before: str | None = None) -> list[AuditEntry]:
    """Up to `limit` entries, newest first, older than the entry `before` when given."""
    high = "+" if before is None else _just_before(before)
    if high is None:
        return []
    rows = cast(list[tuple[str, dict[str, Any]]], await redis.xrevrange(keys.audit, max=high, min="-", count=limit))
    return [_entry(entry_id, fields) for entry_id, fields in rows]
