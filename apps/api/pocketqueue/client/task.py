"""Task: what `@task` returns. Still the plain function, plus `.delay()` and friends.

    @task(name="videos.generate", queue="videos")
    def generate(job, video_id: str) -> dict: ...

    generate(fake_job, "v1")                     # a plain call, for unit tests
    generate.delay("v1")                         # a job; returns a JobHandle
    generate.dispatch("v1", priority="high")     # the same, with dispatch options
    await generate.dispatch_async("v1")          # from async code; an AsyncJobHandle
    generate.with_options(delay_seconds=60).delay("v1")
    generate.apply_async(args=["v1"], countdown=60)  # Celery's spelling

Dispatching uses the process's default Client (or AsyncClient), which plans the job
with the same checks and the same create.lua as HTTP dispatch.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, Generic, ParamSpec, TypeVar, Unpack, cast

from pocketqueue.client.options import DispatchOptions, build_request
from pocketqueue.errors import InvalidRequest
from pocketqueue.jobs.registry import TaskSpec

if TYPE_CHECKING:
    from pocketqueue.client.handle import AsyncJobHandle, JobHandle

P = ParamSpec("P")
R = TypeVar("R")

# Celery's apply_async options that mean something here, and what they become.
_CELERY_PRIORITY_CUTS = ((3, "high"), (6, "normal"), (9, "low"))  # kombu's Redis: 0 is the most urgent


class Task(Generic[P, R]):
    """A registered job task: call it as the function, or dispatch it as a job."""

    def __init__(self, spec: TaskSpec, options: DispatchOptions | None = None) -> None:
        self.spec = spec
        self.name = spec.name
        self._options: DispatchOptions = options or {}
        functools.update_wrapper(self, spec.func)

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        result: R = self.spec.func(*args, **kwargs)
        return result

    def __repr__(self) -> str:
        return f"<Task {self.name}>"

    def with_options(self, **options: Unpack[DispatchOptions]) -> Task[P, R]:
        """The same task with dispatch options preset (priority, delay_seconds, eta, max_retries,
        idempotency_key, unique_key, tags, queue); later options win."""
        build_request(self.name, None, None, options)  # an unknown option fails here, not at dispatch
        return Task(self.spec, {**self._options, **options})

    def delay(self, *args: Any, **kwargs: Any) -> JobHandle:
        """Dispatch a job with these arguments (the job context is added by the worker)."""
        return self.dispatch(*args, kwargs=kwargs)

    def dispatch(
        self, *args: Any, kwargs: Mapping[str, Any] | None = None, **options: Unpack[DispatchOptions]
    ) -> JobHandle:
        """Dispatch a job: positional arguments, `kwargs=` for keyword arguments, options by name."""
        from pocketqueue.client.sync import default_client

        merged: DispatchOptions = {**self._options, **options}
        return default_client().dispatch(self.name, list(args), kwargs, **merged)

    async def dispatch_async(
        self, *args: Any, kwargs: Mapping[str, Any] | None = None, **options: Unpack[DispatchOptions]
    ) -> AsyncJobHandle:
        """`dispatch`, from async code: never blocks the event loop."""
        from pocketqueue.client.aio import default_async_client

        merged: DispatchOptions = {**self._options, **options}
        return await default_async_client().dispatch(self.name, list(args), kwargs, **merged)

    def apply_async(
        self,
        args: Sequence[Any] | None = None,
        kwargs: Mapping[str, Any] | None = None,
        *,
        countdown: float | None = None,
        eta: datetime | None = None,
        priority: int | str | None = None,
        queue: str | None = None,
        **options: Any,
    ) -> JobHandle:
        """Celery's `apply_async`: `countdown` is delay_seconds; a Celery priority 0-9 maps
        to high (0-3), normal (4-6) or low (7-9), as kombu's Redis transport orders them."""
        chosen: dict[str, Any] = dict(options)
        if countdown is not None:
            chosen["delay_seconds"] = countdown
        if eta is not None:
            chosen["eta"] = eta
        if queue is not None:
            chosen["queue"] = queue
        if priority is not None:
            chosen["priority"] = _priority(priority)
        build_request(self.name, None, None, chosen)  # an unknown option is an InvalidRequest
        return self.dispatch(*(args or ()), kwargs=kwargs, **cast(DispatchOptions, chosen))


def _priority(value: int | str) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool) or not 0 <= value <= 9:
        raise InvalidRequest(f"a Celery priority is 0 to 9; got {value!r}")
    return next(name for top, name in _CELERY_PRIORITY_CUTS if value <= top)
