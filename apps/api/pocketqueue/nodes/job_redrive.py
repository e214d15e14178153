"""JobRedriveNode: sends failed (dead-lettered) jobs round again, under the same ids."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from pocketflow import AsyncNode

from pocketqueue.errors import UniqueJobActive
from pocketqueue.jobs.message import message_for
from pocketqueue.jobs.models import Job, JobStatus
from pocketqueue.jobs.payload import PayloadError
from pocketqueue.runtime import QueueRuntime

log = logging.getLogger(__name__)

CHUNK = 500
# Dead-letter entries one bulk re-drive examines at most: a request stays bounded however
# many jobs failed; `next_cursor` says where the next one carries on.
MAX_SCAN = 5000


@dataclass(frozen=True)
class RedriveFilter:
    """Which dead-lettered jobs to re-drive: all of them, or those matching every field set."""

    job_ids: list[str] | None = None
    task: str | None = None
    error_type: str | None = None
    cursor: tuple[float, str] | None = None  # a bulk re-drive carries on after this entry

    def matches(self, job: Job) -> bool:
        if self.task is not None and job.task != self.task:
            return False
        return self.error_type is None or (job.error is not None and job.error.type == self.error_type)


@dataclass
class RedriveReport:
    redriven: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)  # job id -> why (its status, 'missing', ...)
    next_cursor: tuple[float, str] | None = None  # set when a bulk re-drive stopped at MAX_SCAN


class JobRedriveNode(AsyncNode):  # type: ignore[misc]
    """Re-drives `shared["job_id"]`, or the jobs `shared["redrive"]` (a RedriveFilter) picks.

    Each job keeps its id; attempts and errors are reset, status `queued`, and it leaves
    the dead-letter set, all in one Lua script per job (so a job re-driven twice at once
    is queued once). Sets `shared["report"]` (a RedriveReport) and, for one job,
    `shared["job"]`. Actions: "redriven", and for one job "not_failed", "missing", or
    "rejected" (`shared["error"]`: another active job holds its unique key).
    """

    async def prep_async(self, shared: dict[str, Any]) -> tuple[QueueRuntime, RedriveFilter, bool]:
        if "job_id" in shared:
            return shared["runtime"], RedriveFilter(job_ids=[shared["job_id"]]), True
        return shared["runtime"], shared.get("redrive") or RedriveFilter(), False

    async def exec_async(self, prep_res: tuple[QueueRuntime, RedriveFilter, bool]) -> RedriveReport:
        runtime, wanted, _ = prep_res
        report = RedriveReport()
        named = wanted.job_ids is not None
        if named:
            job_ids = list(dict.fromkeys(wanted.job_ids or []))
            for start in range(0, len(job_ids), CHUNK):
                await self._redrive_chunk(runtime, wanted, job_ids[start : start + CHUNK], report)
        else:
            await self._redrive_dead_letters(runtime, wanted, report)
        if not named:  # entries whose records expired before the janitor reaped them
            await runtime.store.forget_dead([job_id for job_id, why in report.skipped.items() if why == "missing"])
            report.skipped = {job_id: why for job_id, why in report.skipped.items() if why != "missing"}
        if report.redriven:
            log.info("re-drove %d failed job(s)", len(report.redriven))
        return report

    async def _redrive_dead_letters(self, runtime: QueueRuntime, wanted: RedriveFilter, report: RedriveReport) -> None:
        """Walk the dead-letter set from `wanted.cursor`, oldest first, MAX_SCAN entries at most.

        Only as far as the newest entry when the walk starts: a job re-driven here that fails
        again at once re-enters the set further on, and must not be re-driven twice.
        """
        cursor, scanned = wanted.cursor, 0
        until = await runtime.store.newest_dead_letter()
        while scanned < MAX_SCAN and until is not None:
            rows = await runtime.store.dead_letter_after(cursor, min(CHUNK, MAX_SCAN - scanned), until)
            if not rows:
                return
            await self._redrive_chunk(runtime, wanted, [job_id for job_id, _ in rows], report)
            scanned += len(rows)
            cursor = (rows[-1][1], rows[-1][0])
        if await runtime.store.dead_letter_after(cursor, 1, until):
            report.next_cursor = cursor

    async def _redrive_chunk(
        self, runtime: QueueRuntime, wanted: RedriveFilter, job_ids: list[str], report: RedriveReport
    ) -> None:
        named = wanted.job_ids is not None
        for job_id, job in zip(job_ids, await runtime.store.get_many(job_ids), strict=True):
            if job is None:
                report.skipped[job_id] = "missing"
            elif job.status != JobStatus.FAILED:
                report.skipped[job_id] = job.status.value
            elif not wanted.matches(job):
                if named:  # an id the caller named is always accounted for
                    report.skipped[job_id] = "filtered out"
            else:
                try:
                    message, queue_list = message_for(runtime.celery, job, runtime.settings.queue_name)
                except PayloadError:  # arguments an older version wrote that cannot be read back
                    report.skipped[job_id] = "unreadable arguments"
                    continue
                outcome = await runtime.store.redrive(job_id, message, queue_list)
                if outcome == "ok":
                    report.redriven.append(job_id)
                else:
                    report.skipped[job_id] = outcome

    async def post_async(self, shared: dict[str, Any], prep_res: Any, exec_res: RedriveReport) -> str:
        shared["report"] = exec_res
        _, _, single = prep_res
        if not single:
            return "redriven"
        job_id = shared["job_id"]
        why = exec_res.skipped.get(job_id)
        if why == "missing":
            return "missing"
        job = await shared["runtime"].store.get(job_id)
        if job is None:
            return "missing"
        shared["job"] = job
        if why is not None and why.startswith("unique:"):
            shared["error"] = UniqueJobActive(job.unique_key or "", why.removeprefix("unique:"))
            return "rejected"
        return "not_failed" if why is not None else "redriven"
