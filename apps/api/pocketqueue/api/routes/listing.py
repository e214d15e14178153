"""The job listing: every job, filtered and searched, newest first, page by page."""

from __future__ import annotations

import re
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import AwareDatetime, BeforeValidator, Field

from pocketqueue import flows
from pocketqueue.api.auth import ReadAccess
from pocketqueue.api.deps import RuntimeDep, new_shared
from pocketqueue.api.openapi import problem_responses
from pocketqueue.api.schemas import CURSOR_PATTERN, JobList, JobPublic
from pocketqueue.jobs.models import JobStatus
from pocketqueue.jobs.request import MAX_KEY_LENGTH, MAX_TAGS
from pocketqueue.observe.listing import MAX_LIMIT, JobQuery

router = APIRouter(tags=["jobs"])

TAG = r"^[A-Za-z0-9_.-]{1,64}:.{1,128}$"


def _iso_only(value: Any) -> Any:
    # Lax parsing would read `0.5` as seconds since 1970; the schema says an ISO 8601 time.
    if isinstance(value, str) and not re.match(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}", value):
        raise ValueError("must be an ISO 8601 time with an offset, e.g. 2030-01-01T09:00:00Z")
    return value


IsoTime = Annotated[AwareDatetime, BeforeValidator(_iso_only)]


@router.get("/jobs", dependencies=[ReadAccess], responses=problem_responses(422, 503))
async def list_jobs(
    runtime: RuntimeDep,
    status: Annotated[list[JobStatus] | None, Query(description="Repeat for several statuses")] = None,
    task: Annotated[str | None, Query(min_length=1, max_length=MAX_KEY_LENGTH)] = None,
    tag: Annotated[
        list[Annotated[str, Field(pattern=TAG)]] | None,
        Query(max_length=MAX_TAGS, description="`name:value`; repeat for several (all must match)"),
    ] = None,
    q: Annotated[
        str | None,
        Query(min_length=1, max_length=MAX_KEY_LENGTH, description="A job id, id prefix, idempotency or unique key"),
    ] = None,
    created_after: Annotated[IsoTime | None, Query(description="Exclusive; ISO 8601 with an offset")] = None,
    created_before: Annotated[IsoTime | None, Query(description="Exclusive; ISO 8601 with an offset")] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 50,
    cursor: Annotated[str | None, Query(pattern=CURSOR_PATTERN, description="`next_cursor` of the last page")] = None,
) -> JobList:
    """Jobs matching every filter given, newest first.

    Carry on with `cursor=<next_cursor>`: a cursor never skips or repeats a job, whatever
    is dispatched or finishes meanwhile. A page can hold fewer than `limit` jobs and still
    have a `next_cursor` (a query that matches few of the jobs it walks answers after
    walking 10,000); `next_cursor` is null only when there is nothing left.
    """
    tags = tuple(_split(text) for text in tag or ())
    query = JobQuery(
        statuses=tuple(status or ()),
        task=task,
        tags=tags,
        q=q,
        created_after=created_after.timestamp() if created_after else None,
        created_before=created_before.timestamp() if created_before else None,
        limit=limit,
        cursor=cursor,
    )
    shared = new_shared(runtime, query=query)
    await flows.run_flow(flows.shared_flow(flows.create_listing_flow), shared)
    page = shared["page"]
    return JobList(jobs=[JobPublic.of(job) for job in page.jobs], next_cursor=page.next_cursor)


def _split(tag: str) -> tuple[str, str]:
    name, _, value = tag.partition(":")
    return name, value
