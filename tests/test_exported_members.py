"""The public API: what users import. Changing these lists is a breaking change."""

from __future__ import annotations

import pocketqueue
import pocketqueue.flows
import pocketqueue.nodes


def test_top_level_exports() -> None:
    assert sorted(pocketqueue.__all__) == [
        "AsyncClient",
        "AsyncJobHandle",
        "Client",
        "JobCancelled",
        "JobContext",
        "JobFailed",
        "JobHandle",
        "JobTimeout",
        "PermanentError",
        "Priority",
        "QueueError",
        "Schedule",
        "StageContext",
        "Task",
        "current_stage",
        "flow_task",
        "schedule",
        "stage",
        "task",
    ]
    for name in pocketqueue.__all__:  # every name resolves (the clients are loaded on first use)
        assert getattr(pocketqueue, name) is not None


def test_node_exports() -> None:
    assert sorted(pocketqueue.nodes.__all__) == [
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


def test_flow_factories() -> None:
    factories = sorted(name for name in vars(pocketqueue.flows) if name.startswith("create_"))
    assert factories == [
        "create_batch_and_wait_flow",
        "create_batch_dispatch_flow",
        "create_batch_read_flow",
        "create_cancel_flow",
        "create_dead_letter_flow",
        "create_dispatch_and_wait_flow",
        "create_dispatch_flow",
        "create_health_flow",
        "create_listing_flow",
        "create_redis_probe_flow",
        "create_redrive_flow",
        "create_schedule_pause_flow",
        "create_schedule_trigger_flow",
        "create_schedules_flow",
        "create_status_flow",
        "create_workers_flow",
    ]


def test_worker_app_is_importable_the_way_celery_looks_for_it() -> None:
    import pocketqueue.worker as worker

    assert callable(worker.get_celery_app)
    assert "celery_app" not in vars(worker)  # built lazily, never at import time
