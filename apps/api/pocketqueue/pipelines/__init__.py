"""Pipeline jobs: a PocketFlow flow run as one durable job, stage by stage, with checkpoints."""

from pocketqueue.pipelines.flow_task import flow_task
from pocketqueue.pipelines.runner import StageContext, current_stage
from pocketqueue.pipelines.stages import stage

__all__ = ["StageContext", "current_stage", "flow_task", "stage"]
