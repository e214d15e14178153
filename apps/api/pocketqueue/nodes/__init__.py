"""PocketFlow AsyncNodes: the building blocks the API's flows (and yours) are made of.

The shared store they read and write:

    runtime        QueueRuntime (input: Redis pool, watcher, Celery app, settings)
    redis          the checked Redis client (RedisConnectionNode)
    request        DispatchRequest (input to CeleryTaskDispatchNode)
    job_id         one job id (input to TaskStatusMonitorNode, TaskCancelNode)
    job_ids        many job ids (input to TaskStatusMonitorNode)
    wait_timeout   seconds to wait for a job to finish (optional monitor input)
    job            the Job read, created or cancelled
    jobs, missing  batch read results
    error          the QueueError that rejected a dispatch
    offset, limit  a dead-letter page to read (DeadLetterListNode); total, jobs: what it read
    redrive        RedriveFilter: which dead-lettered jobs to re-drive (JobRedriveNode)
    report         RedriveReport: what was re-driven, and what was skipped and why
    registry       the live workers, WorkerViews from their heartbeats (WorkerRegistryNode)
    ping           ask WorkerRegistryNode for a broadcast ping too (WorkerPingNode)
    workers, probe health results (workers: the names that answered the ping)
    query, page    a listing query (JobQuery) and the page found (JobListNode)
    schedule_name  a schedule's name (input to ScheduleLookupNode); schedule: the Schedule found
    paused         pause (True) or resume (False) `schedule` (input to SchedulePauseNode)
    schedules      ScheduleViews: every declared schedule, or `schedule` alone (ScheduleStateNode)
    batch_request  BatchRequest: jobs to write as one batch (input to BatchDispatchNode)
    batch_id       a batch's id (input to BatchReadNode, BatchWaitNode); batch: the Batch written or read
"""

from pocketqueue.jobs.request import DispatchRequest
from pocketqueue.nodes.batch_dispatch import BatchDispatchNode
from pocketqueue.nodes.batch_read import BatchReadNode
from pocketqueue.nodes.batch_wait import BatchWaitNode
from pocketqueue.nodes.dead_letter import DeadLetterListNode
from pocketqueue.nodes.end import EndNode
from pocketqueue.nodes.job_listing import JobListNode
from pocketqueue.nodes.job_redrive import JobRedriveNode, RedriveFilter, RedriveReport
from pocketqueue.nodes.redis_connection import RedisConnectionNode
from pocketqueue.nodes.redis_probe import RedisProbeNode
from pocketqueue.nodes.schedule_lookup import ScheduleLookupNode
from pocketqueue.nodes.schedule_pause import SchedulePauseNode
from pocketqueue.nodes.schedule_state import ScheduleStateNode
from pocketqueue.nodes.schedule_trigger import ScheduleTriggerNode
from pocketqueue.nodes.status_monitor import TaskStatusMonitorNode
from pocketqueue.nodes.task_cancel import TaskCancelNode
from pocketqueue.nodes.task_dispatch import CeleryTaskDispatchNode
from pocketqueue.nodes.worker_ping import WorkerPingNode
from pocketqueue.nodes.worker_registry import WorkerRegistryNode

__all__ = [
    "BatchDispatchNode",
    "BatchReadNode",
    "BatchWaitNode",
    "CeleryTaskDispatchNode",
    "DeadLetterListNode",
    "DispatchRequest",
    "EndNode",
    "JobListNode",
    "JobRedriveNode",
    "RedisConnectionNode",
    "RedisProbeNode",
    "RedriveFilter",
    "RedriveReport",
    "ScheduleLookupNode",
    "SchedulePauseNode",
    "ScheduleStateNode",
    "ScheduleTriggerNode",
    "TaskCancelNode",
    "TaskStatusMonitorNode",
    "WorkerPingNode",
    "WorkerRegistryNode",
]
