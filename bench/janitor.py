"""The janitor's Redis cost with a long queue behind slow workers, with 1 and with 8 workers.

    .venv/bin/python bench/janitor.py            # 100,000 jobs, 60 s windows (about 7 minutes on 2 cores)
    .venv/bin/python bench/janitor.py --quick    # 2,000 jobs, short windows (about 2 minutes)

Checks two bounds: with many jobs legitimately queued, the broker lists hold no more
messages than there are queued jobs (plus a small constant: reconciliation must not
multiply messages), and the janitors' Redis work per tick does not grow with the jobs
queued, nor with the workers beyond one lease attempt each (one leader sweeps). The run
starts its own Redis on a free loopback port (never an existing one) and real workers
(`python -m pocketqueue worker`, through bench/worker_entry.py) of concurrency 1, with
the default QUEUE_RECOVERY_SECONDS; everything is stopped at the end, also on Ctrl-C.

1. One worker starts; --jobs jobs (`pocketqueue.debug`, sleeping --sleep s each) are
   dispatched through the dispatch flow, so the worker falls far behind.
2. Four phases, each a --window s window without MONITOR (INFO commandstats deltas, which
   count the commands scripts run too; redis-server's CPU from /proc) and then a --monitor
   s window under MONITOR (every command tallied by connection, so the janitors' own
   commands, and their ticks, are known):
   slow-1   the one worker working through the queue;
   idle-1   its consumer cancelled (Celery's cancel_consumer): nothing runs, the jobs stay
            queued, the janitor keeps ticking;
   idle-8   seven more workers, idle the same way: eight janitors, one leading;
   slow-8   all eight consuming again (add_consumer).
Throughout, every 0.5 s, one MULTI reads the broker lists' lengths and the queued index:
the lists holding more messages than there are queued jobs means duplicate messages.

The markdown report is printed and written under bench/results/.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
import time
import uuid
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from types import FrameType

import redis
from pydantic import SecretStr

import janitor_report
from pocketqueue import flows
from pocketqueue.config import Settings
from pocketqueue.jobs.keys import Keys, queue_lists
from pocketqueue.nodes import DispatchRequest
from pocketqueue.runtime import open_runtime
from pocketqueue.worker.app import create_celery_app
from procs import Service, ServiceError, machine_busy_seconds, scratch
from redis_watch import BrokerSampler, MonitorTally, Sample, Window, job_outcomes, read_counters
from run import ENQUEUE_BATCH, progress, scrub_settings_env

BENCH_DIR = Path(__file__).resolve().parent
TASK = "pocketqueue.debug"
SETTLE_SECONDS = 60.0
CLIENT_NAME = "janitor-bench"  # our own connections, told apart in CLIENT LIST


@dataclass(frozen=True)
class Options:
    jobs: int
    sleep: float  # seconds each job sleeps: what makes the worker slow
    window: float  # seconds measured without MONITOR, per phase
    monitor: float  # seconds measured under MONITOR, per phase
    many: int  # workers in the 8-worker phases
    keep: bool


@dataclass(frozen=True)
class Phase:
    """One phase's figures: an unmonitored window, then a monitored one."""

    label: str
    workers: int
    window: Window
    busy: float  # the machine's busy CPU seconds (all processes, all cores) during `window`
    tally: MonitorTally
    start: Sample  # broker lists and indexes as the window began,
    middle: Sample  # as it ended (the MONITOR window began),
    end: Sample  # and as the MONITOR window ended
    excess: tuple[int, int]  # lowest and highest (lists - queued) seen in the phase
    leader: str


class Scenario:
    """Owns the scratch directory, the Redis, the workers and the samplers; all stopped on exit."""

    def __init__(self, options: Options, stack: ExitStack) -> None:
        self.options = options
        self.stack = stack
        place = scratch(stack, "janitor", options.keep)  # first: its Redis stops last, after the workers
        self.work_dir, self.logs, self.url = place.work_dir, place.logs, place.url
        assert place.redis.process is not None
        self.redis_pid = place.redis.process.pid
        self.tag = f"pqjan-{uuid.uuid4().hex[:6]}"
        self.settings = Settings(  # type: ignore[call-arg]
            _env_file=None,
            redis_url=SecretStr(self.url),
            data_dir=self.work_dir / "var",
            task_modules=[],
            worker_concurrency=1,
            log_level="WARNING",
            queue_name=self.tag,
            queue_key_prefix=self.tag,
        )
        self.keys = Keys(self.tag)
        self.redis = self._client()
        self.sampler = BrokerSampler(self._client(), self.keys, queue_lists(self.tag))
        self.sampler.start()
        stack.callback(self.sampler.stop)
        # Only to pause and resume consuming. The workers' own app config: kombu's Redis
        # transport also joins its binding entries with the `sep` PocketQueue sets, so a
        # control command from a default Celery app gets no reply (the worker's fails).
        self.control = create_celery_app(self.settings)
        stack.callback(self.control.close)
        self.workers: list[Service] = []
        self.stopped: list[Service] = []

    def _client(self) -> redis.Redis:
        client = redis.Redis.from_url(self.url, decode_responses=True, socket_timeout=60, client_name=CLIENT_NAME)
        client.ping()
        self.stack.callback(client.close)
        return client

    def worker_env(self) -> dict[str, str]:
        """Our environment without any PocketQueue settings, plus every one of ours."""
        ours = {name.upper() for name in Settings.model_fields}
        env = {key: value for key, value in os.environ.items() if key.upper() not in ours}
        for name, value in self.settings.model_dump().items():
            if value is None:
                continue
            if isinstance(value, SecretStr):
                value = value.get_secret_value()
            elif isinstance(value, list):
                value = ",".join(str(item) for item in value)
            env[name.upper()] = str(value)
        env["PYTHONPATH"] = os.pathsep.join([str(BENCH_DIR), *filter(None, [os.environ.get("PYTHONPATH")])])
        return env

    def start_workers(self, count: int) -> None:
        first = len(self.workers)
        for number in range(first, first + count):
            ready = self.work_dir / f"worker-{number}.ready"
            argv = [sys.executable, str(BENCH_DIR / "worker_entry.py"), "pocketqueue", str(ready)]
            service = Service(f"worker-{number}", argv, self.worker_env(), self.work_dir, self.logs)
            self.workers.append(service)
            self.stack.callback(service.stop)  # SIGTERM (warm shutdown), before Redis stops
            service.start()
        for number in range(first, first + count):
            self.workers[number].wait_file(self.work_dir / f"worker-{number}.ready")
        # Each janitor writes its heartbeat key on its first tick.
        self.until(lambda: len(self.worker_names()) >= len(self.workers), 30, "worker heartbeat keys")

    def stop_workers(self) -> None:
        """SIGTERM every worker (a warm shutdown: the janitor resigns, its keys are deleted)."""
        while self.workers:
            service = self.workers.pop()
            service.stop()
            self.stopped.append(service)

    def worker_names(self) -> list[str]:
        live = self.keys.worker("")
        return [key.removeprefix(live) for key in self.redis.scan_iter(f"{live}*")]

    def check(self) -> None:
        for service in self.workers:
            service.check_alive()
        self.sampler.check()

    def until(self, ready: Callable[[], object], timeout: float, what: str) -> None:
        """Poll `ready()` every 0.25 s (checking the workers live) until it is truthy."""
        deadline = time.monotonic() + timeout
        while not ready():
            self.check()
            if time.monotonic() > deadline:
                raise ServiceError(f"timed out after {timeout:.0f} s waiting for {what}")
            time.sleep(0.25)

    def pause(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            self.check()
            time.sleep(min(0.5, left))

    # Consuming on and off -----------------------------------------------------------

    def set_consuming(self, on: bool) -> None:
        """Every worker starts (or stops) consuming the queue; their janitors tick on regardless."""
        control = self.control.control
        missing = set(self.worker_names())
        for _ in range(3):
            call = control.add_consumer if on else control.cancel_consumer
            replies = call(self.tag, destination=sorted(missing), reply=True, timeout=3)
            missing -= {name for reply in replies or [] for name in reply}
            if not missing:
                return
        raise ServiceError(f"no reply to {'add' if on else 'cancel'}_consumer from {', '.join(sorted(missing))}")

    def settle_idle(self) -> None:
        """Wait for the jobs already taken to finish: nothing running or unacknowledged for 3 s."""
        still: list[Sample] = []

        def quiet() -> bool:
            sample = self.sampler.take()
            if sample.processing or sample.unacked or (still and sample.completed != still[0].completed):
                still.clear()
                return False
            still.append(sample)
            return len(still) > 12

        self.until(quiet, SETTLE_SECONDS, "the workers to go idle")

    def resume(self) -> None:
        self.set_consuming(True)
        done = self.sampler.take().completed
        self.until(lambda: self.sampler.take().completed > done, SETTLE_SECONDS, "jobs to run again")

    # Measuring ----------------------------------------------------------------------

    def dispatch(self) -> float:
        started = time.perf_counter()
        created = asyncio.run(dispatch_jobs(self.settings, self.options.jobs, self.options.sleep))
        if created != self.options.jobs:
            raise ServiceError(f"only {created:,} of {self.options.jobs:,} jobs were dispatched")
        return time.perf_counter() - started

    def measure_quiet(self, seconds: float) -> tuple[Window, float]:
        """Redis on its own (no worker): the window and the machine's busy CPU seconds."""
        progress(f"no worker: {seconds:.0f} s of commandstats")
        busy = machine_busy_seconds()
        before = read_counters(self.redis, self.redis_pid, self.sampler)
        self.pause(seconds)
        after = read_counters(self.redis, self.redis_pid, self.sampler)
        return Window.between(before, after), machine_busy_seconds() - busy

    def measure(self, label: str) -> Phase:
        progress(f"{label}: {self.options.window:.0f} s of commandstats, then {self.options.monitor:.0f} s of MONITOR")
        self.sampler.new_phase()
        start = self.sampler.take()
        busy = machine_busy_seconds()
        before = read_counters(self.redis, self.redis_pid, self.sampler)
        self.pause(self.options.window)
        after = read_counters(self.redis, self.redis_pid, self.sampler)
        busy = machine_busy_seconds() - busy
        middle = self.sampler.take()
        tally = MonitorTally(self.url, self.keys, ignore=self.own_addresses())
        tally.start()
        tally.started.wait(10)
        self.pause(self.options.monitor)
        tally.stop()
        end = self.sampler.take()
        leader = str(self.redis.get(self.keys.janitor) or "(none)")
        excess = (self.sampler.phase_min, self.sampler.phase_max)
        window = Window.between(before, after)
        return Phase(label, len(self.workers), window, busy, tally, start, middle, end, excess, leader)

    def own_addresses(self) -> frozenset[str]:
        """Our own connections (the sampler's, the main one), left out of MONITOR's tally."""
        return frozenset(str(client["addr"]) for client in self.redis.client_list() if client["name"] == CLIENT_NAME)

    def log_lines(self, *needles: str) -> dict[str, int]:
        """How many lines of the workers' logs contain each needle."""
        found = dict.fromkeys(needles, 0)
        for service in [*self.stopped, *self.workers]:
            for line in service.log_path.read_text(errors="replace").splitlines():
                for needle in needles:
                    found[needle] += needle in line
        return found


async def dispatch_jobs(settings: Settings, count: int, sleep: float) -> int:
    """Through PocketQueue's own dispatch flow, 64 at a time; returns how many were created."""
    flow = flows.create_dispatch_flow()
    request = DispatchRequest(TASK, kwargs={"sleep": sleep})
    created = 0
    async with open_runtime(settings) as runtime:
        for start in range(0, count, ENQUEUE_BATCH):
            size = min(ENQUEUE_BATCH, count - start)
            outcomes = await asyncio.gather(
                *(flow.run_async({"runtime": runtime, "request": request}) for _ in range(size))
            )
            created += outcomes.count("dispatched")
            if (start + size) % 10_000 < ENQUEUE_BATCH and start + size >= 10_000:
                progress(f"dispatched {start + size:,} of {count:,}")
    return created


def run_phases(scenario: Scenario) -> tuple[float, list[Phase]]:
    options = scenario.options
    progress(f"Redis for this run: {scenario.url}; starting 1 worker")
    scenario.start_workers(1)
    progress(f"dispatching {options.jobs:,} jobs ({TASK}, sleep {options.sleep} s each)")
    dispatch_seconds = scenario.dispatch()
    progress(f"dispatched in {dispatch_seconds:.1f} s")
    phases = [scenario.measure("slow-1")]
    scenario.set_consuming(False)
    scenario.settle_idle()
    phases.append(scenario.measure("idle-1"))
    progress(f"starting {options.many - 1} more workers")
    scenario.start_workers(options.many - 1)
    scenario.set_consuming(False)
    scenario.settle_idle()
    phases.append(scenario.measure(f"idle-{options.many}"))
    scenario.resume()
    phases.append(scenario.measure(f"slow-{options.many}"))
    return dispatch_seconds, phases


def wind_up(scenario: Scenario) -> janitor_report.After:
    """What the run left; then the workers stop, and Redis is measured once more on its own."""
    progress("counting republished jobs; stopping the workers")
    records = job_outcomes(scenario.redis, scenario.keys)
    scenario.stop_workers()
    window, busy = scenario.measure_quiet(min(scenario.options.window, 20.0))
    log_lines = scenario.log_lines("published again", "orphaned", "ERROR", "Traceback")
    return janitor_report.After(records, log_lines, scenario.sampler.run_max, window, busy)


# Main -----------------------------------------------------------------------------


def parse_options(argv: list[str] | None) -> Options:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, help="jobs to queue (default 100000; 2000 with --quick)")
    parser.add_argument("--quick", action="store_true", help="2,000 jobs, 15 s + 8 s windows")
    parser.add_argument("--sleep", type=float, default=0.5, help="seconds each job sleeps (default 0.5)")
    parser.add_argument("--window", type=float, help="seconds per phase without MONITOR (default 60)")
    parser.add_argument("--monitor", type=float, help="seconds per phase under MONITOR (default 20)")
    parser.add_argument("--workers", type=int, default=8, help="workers in the many-worker phases (default 8)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch directory (logs, AOF)")
    args = parser.parse_args(argv)
    jobs = args.jobs if args.jobs is not None else (2_000 if args.quick else 100_000)
    window = args.window if args.window is not None else (15.0 if args.quick else 60.0)
    monitor = args.monitor if args.monitor is not None else (8.0 if args.quick else 20.0)
    if jobs < 1 or args.sleep < 0 or window <= 0 or monitor <= 0 or args.workers < 2:
        parser.error("--jobs, --window and --monitor must be positive, --sleep 0 or more, --workers 2 or more")
    return Options(jobs, args.sleep, window, monitor, args.workers, args.keep)


def _interrupt(signum: int, frame: FrameType | None) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    print("\nstopping everything this run started...", file=sys.stderr, flush=True)
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    options = parse_options(argv)
    scrub_settings_env()
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)
    started = time.monotonic()
    try:
        with ExitStack() as stack:
            scenario = Scenario(options, stack)
            try:
                dispatch_seconds, phases = run_phases(scenario)
            except Exception:
                for service in scenario.workers:
                    print(f"\n--- last lines of {service.name}'s log ---\n{service.log_tail()}", file=sys.stderr)
                raise
            after = wind_up(scenario)
            text = janitor_report.render(scenario, dispatch_seconds, phases, after, time.monotonic() - started)
            if options.keep:
                progress(f"scratch directory kept: {scenario.work_dir}")
    except KeyboardInterrupt:
        print("interrupted; everything this run started has been stopped", file=sys.stderr)
        return 130
    except ServiceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(text, flush=True)
    out_dir = BENCH_DIR / "results"
    out_dir.mkdir(exist_ok=True)
    out_file = out_dir / f"janitor-{datetime.now():%Y%m%d-%H%M%S}.md"
    out_file.write_text(text)
    progress(f"report written to {out_file}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
