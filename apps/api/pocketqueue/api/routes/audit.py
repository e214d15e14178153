"""The audit trail of admin actions (observe/audit.py), for admins."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from pocketqueue.api.auth import AdminAccess
from pocketqueue.api.deps import RuntimeDep
from pocketqueue.api.openapi import problem_responses
from pocketqueue.api.schemas import MAX_PAGE
from pocketqueue.observe import audit
from pocketqueue.observe.audit import AuditEntry

router = APIRouter(tags=["audit"])


class AuditPage(BaseModel):
    """Admin actions, newest first."""

    entries: list[AuditEntry]
    next_before: str | None = Field(description="Send as `before` for the next (older) page; null: no more")


@router.get("/audit", dependencies=[AdminAccess], responses=problem_responses(503))
async def read_audit(
    runtime: RuntimeDep,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
    before: Annotated[str | None, Query(pattern=r"^[0-9]{1,19}-[0-9]{1,19}$", description="An entry's id")] = None,
) -> AuditPage:
    """Who cancelled, re-drove, paused or triggered what, and when (QUEUE_AUDIT_MAX_ENTRIES are kept)."""
    entries = await audit.read(runtime.redis, runtime.store.keys, limit, before)
    return AuditPage(entries=entries, next_before=entries[-1].id if len(entries) == limit else None)
