"""Runs one attempt of a flow job: node by node, with a checkpoint after each.

PocketFlow's own loop (`Flow._orch`) runs a flow from its start node to its end in
memory. This one walks the flow the same way (a copy of each node, the flow's params,
`get_next_node` on each action) but starts at the node the last checkpoint names, with
the shared store it saved, and after each node saves, in one Redis step under the
attempt's claim (checkpoint.lua): that node's stage completed, the node to run next, the
store as JSON and the progress. So a retry or a crash recovery resumes after the last
completed node, and a completed node never runs again. A node's own retries
(`max_retries`, `wait`) happen inside it, as PocketFlow means them.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Mapping
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

from pocketflow import AsyncNode, BaseNode, Flow

from pocketqueue.config import get_settings
from pocketqueue.jobs.models import StageStatus
from pocketqueue.jobs.registry import PermanentError
from pocketqueue.jobs.worker_store import FlowState, ResultNotJSON, ResultTooLarge, to_json
from pocketqueue.pipelines import stages as stage_list
from pocketqueue.worker.context import JobCancelled, JobContext
from pocketqueue.worker.tasks import retry_redis

_current: ContextVar[StageContext | None] = ContextVar("pocketqueue_stage", default=None)


class StageContext:
    """What a node of a flow job can reach while it runs (`pocketqueue.current_stage()`)."""

    def __init__(self, job: JobContext, stages: list[dict[str, Any]], name: str) -> None:
        self.job, self.name, self._stages = job, name, stages

    @property
    def job_id(self) -> str:
        return self.job.job_id

    @property
    def cancelled(self) -> bool:
        return self.job.cancelled

    def progress(self, percent: int) -> None:
        """How far this node is through its own stage (0-100); the job's progress follows by
        the stage's weight. Raises JobCancelled if the job was cancelled meanwhile."""
        if isinstance(percent, bool) or not isinstance(percent, int) or not 0 <= percent <= 100:
            raise ValueError(f"progress must be an int from 0 to 100, got {percent!r}")
        self.job.progress(stage_list.progress(self._stages, percent), self.name)


def current_stage() -> StageContext:
    """The stage running now, from inside a node of a flow job; RuntimeError anywhere else."""
    running = _current.get()
    if running is None:
        raise RuntimeError("current_stage() is only available inside a node of a running flow job")
    return running


async def run_flow(
    job: JobContext, factory: Callable[[], Flow], given: Mapping[str, float] | None, seed: dict[str, Any]
) -> dict[str, Any]:
    """Run the flow `factory` builds, from the job's last checkpoint (or from its start, with
    `seed` as the shared store); returns the store as the flow left it."""
    flow = factory()
    nodes = stage_list.nodes_by_stage(flow)
    shares = stage_list.weights(list(nodes), given)
    saved = retry_redis(job.flow_state, "reading the checkpoint", job.job_id)
    position: str | None
    if saved is None:
        shared, stages, position = seed, stage_list.fresh(shares), stage_list.stage_name(flow.start_node)
    else:
        shared = json.loads(saved.store_json) if saved.store_json else seed
        stages, position = saved.stages, saved.position
        if [entry["name"] for entry in stages] != list(nodes):
            raise PermanentError(
                f"the flow's stages changed since this job's last checkpoint: "
                f"{[entry['name'] for entry in stages]} then, {list(nodes)} now"
            )
    checkpoint = _Checkpoint(job, stages)
    prepared = await flow.prep_async(shared) if isinstance(flow, AsyncNode) else flow.prep(shared)
    action = None
    while position is not None:
        node = copy.copy(nodes[position])
        node.set_params({**flow.params})
        stage_list.mark(stages, position, StageStatus.RUNNING, _now())
        checkpoint.save(position, None)  # the start counts an attempt; a cancel is noticed here
        entered = _current.set(StageContext(job, stages, position))
        try:
            action = await node._run_async(shared) if isinstance(node, AsyncNode) else node._run(shared)
        except JobCancelled:
            raise
        except Exception as exc:
            stage_list.mark(stages, position, StageStatus.FAILED, _now(), f"{type(exc).__name__}: {exc}")
            checkpoint.save(position, None)
            raise
        finally:
            _current.reset(entered)
        stage_list.mark(stages, position, StageStatus.COMPLETED, _now())
        following: BaseNode | None = flow.get_next_node(node, action)
        position = stage_list.stage_name(following) if following is not None else None
        if position is None:
            stage_list.skip_the_rest(stages)
        checkpoint.save(position, checkpoint.encode(shared))
    if isinstance(flow, AsyncNode):
        await flow.post_async(shared, prepared, action)
    else:
        flow.post(shared, prepared, action)
    return shared


class _Checkpoint:
    """Saves the flow's state under the attempt's claim, riding out a short Redis outage."""

    def __init__(self, job: JobContext, stages: list[dict[str, Any]]) -> None:
        self.job, self.stages = job, stages
        settings = get_settings()
        self.depth, self.most = settings.queue_max_json_depth, settings.queue_max_result_bytes

    def encode(self, shared: dict[str, Any]) -> str:
        try:
            return to_json(shared, self.depth, self.most)
        except (ResultNotJSON, ResultTooLarge) as exc:
            raise PermanentError(f"the shared store cannot be checkpointed: {exc}") from None

    def save(self, position: str | None, store_json: str | None) -> None:
        state = FlowState(position, store_json, self.stages)
        progress = stage_list.progress(self.stages)
        retry_redis(lambda: self.job.checkpoint(state, progress), "saving the checkpoint", self.job.job_id)


def _now() -> str:
    return datetime.now(UTC).isoformat()
