"""Built-in tasks, always registered."""

from __future__ import annotations

import time
from typing import Any

from pocketqueue.worker.tasks import JobContext, task


@task(name="pocketqueue.debug")
def debug(
    job: JobContext,
    sleep: float = 0,
    fail: bool = False,
    result: Any = None,
    steps: int = 0,
    batch: dict[str, Any] | None = None,
) -> Any:
    """Sleep (split over `steps` progress reports), then fail or echo `result`.

    As a batch's `on_complete` it is given the batch's outcome (`batch`) and echoes that
    when no `result` was asked for, so the documented batch example runs as written.
    """
    if steps > 0:
        for done in range(1, steps + 1):
            time.sleep(sleep / steps)
            job.progress(done * 100 // steps, step=f"step {done} of {steps}")
    elif sleep > 0:
        time.sleep(sleep)
    if fail:
        raise RuntimeError("pocketqueue.debug failed on purpose (fail=true)")
    return batch if result is None and batch is not None else result
