"""A flow's stages: its nodes by name, their weights, and the progress they add up to.

Each node of a flow job's flow is a stage, named for its class in snake case (`Extract`
is `extract`, `TopicAnalysis` is `topic_analysis`) unless `stage(name, node)` names it.
Names are how a checkpoint says where to resume, so they must be unique in a flow.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, TypeVar

from pocketflow import BaseNode, Flow

from pocketqueue.jobs.models import StageStatus

N = TypeVar("N", bound=BaseNode)

_STAGE_ATTRIBUTE = "pocketqueue_stage"
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")


def stage(name: str, node: N) -> N:
    """Name `node`'s stage (for two nodes of one class, or a name of your choosing); returns it."""
    if not name or len(name) > 100:
        raise ValueError("a stage name must be 1 to 100 characters")
    setattr(node, _STAGE_ATTRIBUTE, name)
    return node


def stage_name(node: BaseNode) -> str:
    named: str | None = getattr(node, _STAGE_ATTRIBUTE, None)
    return named or _CAMEL.sub("_", type(node).__name__).lower()


def nodes_by_stage(flow: Flow) -> dict[str, BaseNode]:
    """Every node reachable from the flow's start, by stage name, in the order a walk meets them
    (each node's successors in the order they were wired). Raises ValueError on a clash."""
    if flow.start_node is None:
        raise ValueError("the flow has no start node")
    found: dict[str, BaseNode] = {}
    seen: set[int] = set()
    waiting = [flow.start_node]
    while waiting:
        node = waiting.pop(0)
        if id(node) in seen:
            continue
        seen.add(id(node))
        name = stage_name(node)
        if name in found:
            raise ValueError(
                f"two nodes of the flow are both stage {name!r}: name one with pocketqueue.stage(name, node)"
            )
        found[name] = node
        waiting.extend(node.successors.values())
    return found


def weights(names: list[str], given: Mapping[str, float] | None) -> dict[str, float]:
    """Each stage's share of the progress, in percent: `given` scaled to 100, or equal shares."""
    if not given:
        return {name: 100.0 / len(names) for name in names}
    unknown, missing = sorted(set(given) - set(names)), [name for name in names if name not in given]
    if unknown or missing:
        raise ValueError(f"stages must weigh each stage of the flow, {names}: unknown {unknown}, missing {missing}")
    if any(isinstance(w, bool) or not isinstance(w, int | float) or w < 0 for w in given.values()):
        raise ValueError("stage weights must be numbers, zero or more")
    total = float(sum(given.values()))
    if total <= 0:
        raise ValueError("stage weights must not all be zero")
    return {name: 100.0 * given[name] / total for name in names}


def fresh(shares: Mapping[str, float]) -> list[dict[str, Any]]:
    """The stages of a flow job that has not started: all pending."""
    return [
        {"name": name, "weight": round(share, 3), "status": StageStatus.PENDING.value, "attempts": 0}
        for name, share in shares.items()
    ]


def progress(stages: list[dict[str, Any]], within: int = 0) -> int:
    """The job's progress (0-100): the weight of every completed stage, plus `within` percent
    of the running one's."""
    done = sum(s["weight"] for s in stages if s["status"] in (StageStatus.COMPLETED, StageStatus.SKIPPED))
    running = sum(s["weight"] for s in stages if s["status"] == StageStatus.RUNNING)
    return max(0, min(100, int(done + running * within / 100)))


def mark(stages: list[dict[str, Any]], name: str, status: StageStatus, at: str, error: str | None = None) -> None:
    """Set stage `name`'s status (at `at`, a timestamp): a start counts an attempt and clears
    the last error; an end notes when it ended."""
    for entry in stages:
        if entry["name"] != name:
            continue
        entry["status"] = status.value
        if status == StageStatus.RUNNING:
            entry.update(started_at=at, attempts=entry.get("attempts", 0) + 1, finished_at=None, error=None)
        else:
            entry["finished_at"] = at
        if error is not None:
            entry["error"] = error[:2000]


def skip_the_rest(stages: list[dict[str, Any]]) -> None:
    """The flow ended: the stages its branches never reached are skipped."""
    for entry in stages:
        if entry["status"] == StageStatus.PENDING:
            entry["status"] = StageStatus.SKIPPED.value
