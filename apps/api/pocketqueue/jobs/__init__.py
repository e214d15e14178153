"""The job domain: records, statuses, keys, Lua transitions and the task registry."""

from pocketqueue.jobs.keys import Keys
from pocketqueue.jobs.models import FINISHED_STATUSES, Job, JobError, JobStatus
from pocketqueue.jobs.store import JobStore

__all__ = ["FINISHED_STATUSES", "Job", "JobError", "JobStatus", "JobStore", "Keys"]
