"""The task registry: which task names may be dispatched, and what arguments they take.

`@pocketqueue.task` fills it when a module in TASK_MODULES is imported; the API checks
every dispatch against it, so only registered tasks with arguments that fit ever reach
the broker.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from pocketqueue.errors import ConfigurationError, InvalidArguments, TaskNotRegistered


class PermanentError(Exception):
    """Raise it from a task to fail the job at once: no retries, straight to the dead-letter set."""


@dataclass(frozen=True)
class TaskSpec:
    """A registered task: its public name, the function that does the work, its retry policy."""

    name: str
    func: Callable[..., Any]
    max_retries: int | None = None  # None: QUEUE_MAX_RETRIES (a dispatch can override either)
    retry_delays: tuple[float, ...] | None = None  # None: QUEUE_RETRY_DELAYS
    retry_on: tuple[type[BaseException], ...] = (Exception,)  # errors worth another attempt
    queue: str | None = None  # None: QUEUE_NAME (a dispatch can override it)
    time_limit: int | None = None  # seconds; None: QUEUE_TASK_TIME_LIMIT
    soft_time_limit: int | None = None  # seconds; None: QUEUE_TASK_SOFT_TIME_LIMIT
    # Computed once: inspect.signature() costs more than the rest of a dispatch's checks.
    signature: inspect.Signature = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "signature", inspect.signature(self.func))

    def retries(self, exc: BaseException) -> bool:
        """Whether an attempt that raised `exc` may be retried (if it has retries left)."""
        return isinstance(exc, self.retry_on) and not isinstance(exc, PermanentError)

    def check_arguments(self, args: list[Any], kwargs: dict[str, Any]) -> None:
        """Raise InvalidArguments unless (job, *args, **kwargs) fits the function."""
        try:
            self.signature.bind(None, *args, **kwargs)
        except TypeError as exc:
            raise InvalidArguments(f"Task {self.name!r}: {exc}.") from exc


_TASKS: dict[str, TaskSpec] = {}


def register(spec: TaskSpec) -> None:
    existing = _TASKS.get(spec.name)
    if existing is not None and existing.func is not spec.func:
        # Re-importing the same module is harmless; two functions under one name is a bug.
        same_origin = (existing.func.__module__, existing.func.__qualname__) == (
            spec.func.__module__,
            spec.func.__qualname__,
        )
        if not same_origin:
            raise ConfigurationError(f"Two functions are registered as task {spec.name!r}.")
    _TASKS[spec.name] = spec


def lookup(name: str) -> TaskSpec:
    try:
        return _TASKS[name]
    except KeyError:
        raise TaskNotRegistered(name) from None


def find(name: str) -> TaskSpec | None:
    """The task registered under `name` in this process, if any."""
    return _TASKS.get(name)


def registered_names() -> list[str]:
    return sorted(_TASKS)


def import_task_modules(modules: Iterable[str]) -> None:
    """Import the built-in tasks and every module named in TASK_MODULES."""
    for module in ["pocketqueue.worker.builtin", *modules]:
        try:
            importlib.import_module(module)
        except ImportError as exc:
            raise ConfigurationError(f"TASK_MODULES: cannot import {module!r}: {exc}") from exc
