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
    workers, probe health results
"""

from pocketqueue.nodes.end import EndNode
from pocketqueue.nodes.redis_connection import RedisConnectionNode
from pocketqueue.nodes.redis_probe import RedisProbeNode
from pocketqueue.nodes.status_monitor import TaskStatusMonitorNode
from pocketqueue.nodes.task_cancel import TaskCancelNode
from pocketqueue.nodes.task_dispatch import CeleryTaskDispatchNode, DispatchRequest
from pocketqueue.nodes.worker_ping import WorkerPingNode

__all__ = [
    "CeleryTaskDispatchNode",
    "DispatchRequest",
    "EndNode",
    "RedisConnectionNode",
    "RedisProbeNode",
    "TaskCancelNode",
    "TaskStatusMonitorNode",
    "WorkerPingNode",
]
