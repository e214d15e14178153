"""Redis's cost of one job, counted in instructions: repeatable where timings are not.

    .venv/bin/python bench/redis_cost.py            # 1,000 jobs (about a minute)
    .venv/bin/python bench/redis_cost.py --jobs 300

Runs redis-server (the one `make run` uses) under valgrind's callgrind, takes 300 jobs
through as a warm-up (so every set is past its small encoding), then creates N jobs with
create.lua, starts each with start.lua and finishes it with finish.lua, and prints the
instructions redis-server spent per job in each phase. Instruction counts do not depend on
what else the machine runs, so two versions of the code can be compared in one sitting
(the drain and dispatch timings of `make bench` drift by a third on a shared machine).
Each phase's count includes the command parsing and replies of its EVALSHA calls.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import redis
from redis.asyncio import Redis as AsyncRedis

from pocketqueue.embedded import free_port, redis_server_binary
from pocketqueue.jobs.dispatch import Planned
from pocketqueue.jobs.keys import Keys
from pocketqueue.jobs.models import Job, JobStatus
from pocketqueue.jobs.store import JobStore
from pocketqueue.jobs.worker_store import WorkerJobStore

WARM_UP = 300
QUEUE = "celery"


class Callgrind:
    """redis-server under callgrind; `phase()` dumps (and zeroes) its counters."""

    def __init__(self, work_dir: Path) -> None:
        self.port = free_port()
        self.out = work_dir / "callgrind.out"
        argv = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={self.out}", redis_server_binary()]
        argv += ["--port", str(self.port), "--save", "", "--appendonly", "no"]
        self.process = subprocess.Popen(argv, cwd=work_dir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.client = redis.Redis(port=self.port, decode_responses=True)
        deadline = time.monotonic() + 60
        while True:
            try:
                self.client.ping()
                return
            except redis.ConnectionError:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    raise RuntimeError("redis-server did not start under valgrind") from None
                time.sleep(0.2)

    def phase(self, run: Callable[[], None]) -> int:
        """Instructions redis-server spent while `run` ran."""
        self.dump()
        run()
        return self.dump()

    def dump(self) -> int:
        before = set(self.out.parent.glob(f"{self.out.name}.*"))
        subprocess.run(["callgrind_control", "--dump", str(self.process.pid)], check=True, capture_output=True)
        (written,) = set(self.out.parent.glob(f"{self.out.name}.*")) - before
        for line in written.read_text().splitlines():
            if line.startswith(("summary:", "totals:")):
                return int(line.split()[1])
        raise RuntimeError(f"no totals in {written}")

    def stop(self) -> None:
        self.client.shutdown(nosave=True)
        self.process.wait(60)


def create(port: int, keys: Keys, job_ids: list[str]) -> None:
    async def run() -> None:
        client = AsyncRedis(port=port, decode_responses=True)
        store = JobStore(client, keys, QUEUE)
        for job_id in job_ids:
            job = Job(job_id=job_id, task="pocketqueue.debug", status=JobStatus.QUEUED, created_at=datetime.now(UTC))
            await store.create(Planned(job, f'{{"id": "{job_id}"}}', QUEUE, None), 86_400)
        await client.aclose()

    asyncio.run(run())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=1000)
    jobs = parser.parse_args().jobs
    if shutil.which("valgrind") is None or shutil.which("callgrind_control") is None:
        raise SystemExit("bench/redis_cost.py needs valgrind (Debian: apt-get install valgrind)")
    keys = Keys("pq")
    with tempfile.TemporaryDirectory(prefix="redis-cost-") as work:
        server = Callgrind(Path(work))
        store = WorkerJobStore(server.client, keys)
        tokens: dict[str, str] = {}

        def start(job_ids: list[str]) -> None:
            for job_id in job_ids:
                tokens[job_id] = uuid.uuid4().hex
                assert store.claim(job_id, "bench@host", 30_000, tokens[job_id]).started

        def finish(job_ids: list[str]) -> None:
            for job_id in job_ids:
                assert store.complete(job_id, tokens[job_id], "null") == "ok"

        warm = [uuid.uuid4().hex for _ in range(WARM_UP)]
        create(server.port, keys, warm)
        start(warm)
        finish(warm)
        job_ids = [uuid.uuid4().hex for _ in range(jobs)]
        costs = {
            "create": server.phase(lambda: create(server.port, keys, job_ids)),
            "start": server.phase(lambda: start(job_ids)),
            "finish": server.phase(lambda: finish(job_ids)),
        }
        server.stop()
    print(f"redis-server instructions per job ({jobs:,} jobs after {WARM_UP} warm-up):")
    for name, total in costs.items():
        print(f"  {name:>7}: {total / jobs:>10,.0f}")
    print(f"  {'all':>7}: {sum(costs.values()) / jobs:>10,.0f}")


if __name__ == "__main__":
    main()
