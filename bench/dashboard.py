"""The dashboard's two speed targets, against a real API process on a million job records.

    .venv/bin/python bench/dashboard.py                    # 1,000,000 records (about 20 minutes, 15 of fill)
    .venv/bin/python bench/dashboard.py --quick            # 10,000 records, 20 s idle windows (2-3 minutes)
    .venv/bin/python bench/dashboard.py --records 300000

1. Every page answers in under 100 ms with 1,000,000 job records. The run starts its own
   Redis (bench/procs.py `scratch`, AOF off: only reads are timed), fills it through the
   real create and cancel scripts (bench/listing_fill.py), fails a few thousand queued
   jobs through the real finish script (so the dead-letter page has rows), and starts a
   real API process (`python -m pocketqueue api`) on it. For each page, the requests the
   page makes on load (PAGES says which: read from dashboard/static/views/) are sent one
   after the other over one keep-alive connection, after WARMUP_RUNS untimed rounds,
   --runs times: the page's time is their sum (the browser sends them in parallel, so this
   is an upper bound of what the API makes the page wait). An EventSource is timed to its
   response head: the stream then stays open, and its first bytes are what the page waits
   for. Only the API's answer is timed, not the browser's rendering. The verdict is on
   each page's p95.
2. 20 open dashboards cost the API process under 10% of one core while idle. The same API
   serves PAGES_OPEN overview pages in a real headless Chromium (one browser context each:
   Chromium opens at most 6 connections to a host per context, and each overview holds an
   event stream open); once each has drawn its numbers, the API process's CPU time
   (utime + stime from /proc/PID/stat) is read across --idle-seconds with no job dispatched,
   and compared with the same window with no page open (the API's own idle cost).

Every process the run starts (Redis, the fill's pool, the API, Chromium) is stopped at the
end, also on Ctrl-C or an error. The markdown report is printed and written under
bench/results/.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import signal
import statistics
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import httpx
import redis

from listing import _interrupt as interrupt
from listing_fill import Filler
from pocketqueue.config import Settings
from pocketqueue.embedded import free_port
from pocketqueue.jobs.keys import Keys
from pocketqueue.jobs.models import JobError
from pocketqueue.jobs.worker_store import WorkerJobStore
from procs import Service, ServiceError, code_version, cpu_seconds, machine_summary, scratch, write_report
from run import progress, scrub_settings_env

if TYPE_CHECKING:
    from playwright.sync_api import ConsoleMessage, Error, Request, Response
    from playwright.sync_api import Page as BrowserPage

BENCH_DIR = Path(__file__).resolve().parent
PACKAGE = BENCH_DIR.parent / "apps" / "api" / "pocketqueue"
STATIC = PACKAGE / "dashboard" / "static"
DASHBOARD_ROUTES = PACKAGE / "api" / "routes" / "dashboard.py"
HOST = "127.0.0.1"
CHROMIUM = "/usr/bin/chromium"

TARGET_MS = 100.0  # the issue: every page answers in under 100 ms...
TARGET_CPU_PERCENT = 10.0  # ...and 20 idle dashboards cost the API under 10% of a core
WARMUP_RUNS = 3
PAGES_OPEN = 20
LOAD_TIMEOUT_MS = 10_000  # for one overview page to draw its numbers
SETTLE_SECONDS = 5.0  # after a load, before an idle window: what the load started has finished
DASHBOARD_POLL_SECONDS = 30.0  # the dashboard is being written: wait for its files this often...
DASHBOARD_WAIT_SECONDS = 30 * 60.0  # ...for up to this long
REQUEST_TIMEOUT_SECONDS = 30.0
# A synthetic traceback of a common length: the dead-letter page carries each job's error.
TRACEBACK = "Traceback (most recent call last):\n" + "".join(
    f'  File "/srv/app/tasks/book.py", line {100 + n}, in step_{n}\n    result = step_{n + 1}(page)\n'
    for n in range(12)
)


@dataclass(frozen=True)
class Options:
    records: int
    failed: int
    runs: int
    idle_seconds: float
    keep: bool


# The pages and what they ask on load ----------------------------------------------


@dataclass(frozen=True)
class Call:
    """One request a page makes on load."""

    path: str  # with its query
    stream: bool = False  # an EventSource: timed to its response head (the stream stays open)

    @property
    def label(self) -> str:
        return f"GET {self.path}" + (" (EventSource, to its head)" if self.stream else "")


@dataclass(frozen=True)
class Page:
    name: str
    calls: tuple[Call, ...]


def dead_letter_page() -> int:
    """How many failed jobs the dead-letter view loads on open (one page; more on request)."""
    script = (STATIC / "views" / "dead-letters.js").read_text()
    found = re.search(r"const PAGE = ([\d_]+);", script)
    if found is None:
        raise ServiceError("views/dead-letters.js no longer says PAGE: update pages()")
    return int(found[1].replace("_", ""))


def pages(job_id: str) -> list[Page]:
    """What each page asks the API when loaded directly (dashboard/static/app.js, views/*.js).

    Each starts with the session (app.js, before any view); EventSources are opened as the
    view opens them.
    """
    session = Call("/dashboard/session")
    events = Call("/api/queue/events", stream=True)
    # Dead letters: the newest PAGE on open (loadDeadLetters), and a stream of new failures.
    dead = (
        Call(f"/api/queue/dead-letter?offset=0&limit={dead_letter_page()}"),
        Call("/api/queue/events?status=failed", stream=True),
    )
    return [
        Page("shell", (Call("/dashboard"),)),
        Page("overview", (session, Call("/api/queue/stats?history_minutes=60"), Call("/api/queue/workers"), events)),
        # The stream is opened first and its events held until the page is in; then the task names.
        Page("jobs", (session, events, Call("/api/queue/jobs?limit=50"), Call("/api/queue/tasks"))),
        # The job's stream is opened once its record is shown.
        Page(
            "job", (session, Call(f"/api/queue/status/{job_id}"), Call(f"/api/queue/jobs/{job_id}/events", stream=True))
        ),
        Page("dead letters", (session, *dead)),
        Page("workers", (session, Call("/api/queue/workers"), events)),
        Page("schedules", (session, Call("/api/queue/schedules"))),
    ]


# Timing ---------------------------------------------------------------------------


def p95(values: list[float]) -> float:
    """The nearest-rank 95th percentile."""
    ordered = sorted(values)
    return ordered[max(0, -(-len(ordered) * 95 // 100) - 1)]


@dataclass
class Timed:
    """A page's timed rounds: the round's total, and each call's share."""

    page: Page
    totals: list[float] = field(default_factory=list)  # seconds
    calls: dict[Call, list[float]] = field(default_factory=dict)
    sizes: dict[Call, int] = field(default_factory=dict)  # body bytes (an EventSource: 0)

    @property
    def median_ms(self) -> float:
        return statistics.median(self.totals) * 1000

    @property
    def p95_ms(self) -> float:
        return p95(self.totals) * 1000

    @property
    def passed(self) -> bool:
        return self.p95_ms < TARGET_MS


class Api:
    """Sends a page's calls: plain ones over one keep-alive connection, as a browser tab would.

    An EventSource is cut as soon as its head arrives, which closes its connection: it gets
    a client of its own, so the keep-alive connection the others use is never dropped.
    (A browser, too, opens a connection for a stream, since the stream keeps it busy.)
    """

    def __init__(self, base_url: str, stack: ExitStack) -> None:
        timeout = httpx.Timeout(REQUEST_TIMEOUT_SECONDS)
        headers = {"Accept": "application/json, application/problem+json"}
        self.plain = stack.enter_context(httpx.Client(base_url=base_url, timeout=timeout, headers=headers))
        self.streams = stack.enter_context(httpx.Client(base_url=base_url, timeout=timeout))

    def send(self, call: Call) -> int:
        """One call; returns the body's bytes. Anything but a 200 stops the run."""
        if call.stream:
            with self.streams.stream("GET", call.path, headers={"Accept": "text/event-stream"}) as response:
                self._check(call, response, "")
                return 0
        response = self.plain.get(call.path)
        self._check(call, response, response.text)
        return len(response.content)

    @staticmethod
    def _check(call: Call, response: httpx.Response, text: str) -> None:
        if response.status_code != 200:
            raise ServiceError(f"{call.label} answered {response.status_code}: {text[:300]}")

    def time_page(self, page: Page, runs: int) -> Timed:
        timed = Timed(page, calls={call: [] for call in page.calls})
        for _ in range(WARMUP_RUNS):
            for call in page.calls:
                timed.sizes[call] = self.send(call)
        for _ in range(runs):
            round_started = time.perf_counter()
            for call in page.calls:
                started = time.perf_counter()
                self.send(call)
                timed.calls[call].append(time.perf_counter() - started)
            timed.totals.append(time.perf_counter() - round_started)
        return timed


# Idle CPU -------------------------------------------------------------------------


@dataclass
class Idle:
    """The API process's CPU over one idle window, and what the open pages asked meanwhile."""

    pages_open: int
    seconds: float  # wall-clock length of the window
    api_cpu: float  # CPU seconds of the API process
    redis_cpu: float  # and of Redis, for comparison
    requests: Counter[str]  # requests the pages sent during the window, by path

    @property
    def percent(self) -> float:
        return 100 * self.api_cpu / self.seconds

    @property
    def passed(self) -> bool:
        return self.percent < TARGET_CPU_PERCENT


def idle_window(
    pages_open: int, api_pid: int, redis_pid: int, seconds: float, wait: Callable[[float], None], seen: Counter[str]
) -> Idle:
    """CPU times before and after `wait(seconds)`; `seen` counts the pages' requests meanwhile."""
    seen.clear()
    api_before, redis_before, started = cpu_seconds(api_pid), cpu_seconds(redis_pid), time.monotonic()
    wait(seconds)
    elapsed = time.monotonic() - started
    api_cpu, redis_cpu = cpu_seconds(api_pid) - api_before, cpu_seconds(redis_pid) - redis_before
    return Idle(pages_open, elapsed, api_cpu, redis_cpu, Counter(seen))


class Browsers:
    """Headless Chromium with PAGES_OPEN overview pages, each in a browser context of its own."""

    def __init__(self, base_url: str, stack: ExitStack) -> None:
        from playwright.sync_api import sync_playwright  # imported late: only this part needs it

        self.base_url = base_url
        driver = stack.enter_context(sync_playwright())
        self.browser = driver.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        stack.callback(self._close)
        self.pages: list[BrowserPage] = []
        self.requests: Counter[str] = Counter()  # every request any page sent, by path
        self.problems: list[str] = []  # console errors, page errors, answers >= 400

    def _close(self) -> None:
        # On Ctrl-C the driver may already be gone; Playwright's own exit then kills Chromium.
        with contextlib.suppress(Exception):
            self.browser.close()

    def open_overviews(self, count: int) -> float:
        """Open `count` overview pages, each until its numbers show; returns the seconds it took."""
        started = time.perf_counter()
        for n in range(count):
            context = self.browser.new_context(viewport={"width": 1280, "height": 900})
            page = context.new_page()
            self._watch(page, f"page {n}")
            page.goto(f"{self.base_url}/dashboard")
            # Loaded: the first stats answer is drawn (the tiles show an en dash until then).
            page.wait_for_function(
                "() => { const c = document.querySelector('main#view [data-testid=count-queued] .count');"
                " return c !== null && c.textContent.trim() !== '\\u2013'; }",
                timeout=LOAD_TIMEOUT_MS,
            )
            self.pages.append(page)
        return time.perf_counter() - started

    def _watch(self, page: BrowserPage, name: str) -> None:
        """Count the page's requests; note its errors (a page that failed would cost nothing)."""

        def sent(request: Request) -> None:
            self.requests.update([urlsplit(request.url).path])

        def answered(response: Response) -> None:
            if response.status >= 400:
                self.problems.append(f"{name}: {response.status} for {response.url}")

        def logged(message: ConsoleMessage) -> None:
            if message.type == "error":
                self.problems.append(f"{name}: console error: {message.text}")

        def raised(error: Error) -> None:
            self.problems.append(f"{name}: {error}")

        page.on("request", sent)
        page.on("response", answered)
        page.on("console", logged)
        page.on("pageerror", raised)

    def wait(self, seconds: float) -> None:
        # Waiting through Playwright keeps its event loop turning, so the listeners see requests.
        self.pages[0].wait_for_timeout(seconds * 1000)


# The dashboard may still be on its way ---------------------------------------------


def missing_dashboard_files() -> list[str]:
    """The files of the dashboard that are not there yet: the page, its route, every script it loads."""
    index = STATIC / "index.html"
    missing = [str(path.relative_to(PACKAGE)) for path in (index, DASHBOARD_ROUTES) if not path.exists()]
    if missing:
        return missing
    # The page loads its scripts and style; the scripts import others (ES modules, relative paths).
    wanted = [STATIC / ref for ref in re.findall(r'/dashboard/static/([\w./-]+)"', index.read_text())]
    seen: set[Path] = set()
    while wanted:
        path = wanted.pop().resolve()
        if path in seen:
            continue
        seen.add(path)
        if not path.exists():
            missing.append(str(path.relative_to(PACKAGE)))
        elif path.suffix == ".js":
            wanted += [path.parent / ref for ref in re.findall(r"""from\s+['"](\.\.?/[^'"]+)['"]""", path.read_text())]
    return sorted(missing)


def wait_for_dashboard() -> None:
    """Other engineers are writing the dashboard now: wait (bounded) until all of it is there."""
    deadline = time.monotonic() + DASHBOARD_WAIT_SECONDS
    while missing := missing_dashboard_files():
        if time.monotonic() > deadline:
            raise ServiceError(f"the dashboard is still incomplete after 30 minutes; missing: {', '.join(missing)}")
        progress(f"dashboard not complete yet (missing {', '.join(missing)}); looking again in 30 s")
        time.sleep(DASHBOARD_POLL_SECONDS)


# The run --------------------------------------------------------------------------


class Scene:
    """The scratch Redis, filled; the API process on it. All stopped on exit (ExitStack)."""

    def __init__(self, options: Options, stack: ExitStack) -> None:
        self.stack = stack
        place = scratch(stack, "dashboard", options.keep)
        self.work_dir, self.logs, self.url = place.work_dir, place.logs, place.url
        assert place.redis.process is not None
        self.redis_pid = place.redis.process.pid
        self.redis = redis.Redis.from_url(self.url, decode_responses=True, socket_timeout=300)
        stack.callback(self.redis.close)
        # Only reads are timed: an AOF of a few GB (and its rewrites) would only slow the fill.
        self.redis.config_set("appendonly", "no")
        self.tag = f"pqdash-{uuid.uuid4().hex[:6]}"
        self.keys = Keys(self.tag)
        self.filler = Filler(self.url, self.keys, options.records)
        self.fill_seconds = 0.0
        self.failed: list[str] = []

    def fill(self, records: int, failed: int) -> None:
        progress(f"filling to {records:,} records (create.lua, cancel.lua)")

        def report(written: int, seconds: float) -> None:
            progress(f"  {written:,} records, {seconds:.0f} s")

        self.fill_seconds = self.filler.fill_to(records, report)
        if failed:
            self.fail(failed)

    def fail(self, count: int) -> None:
        """Fail `count` queued jobs through finish.lua, as a worker that cannot run them would."""
        progress(f"failing {count:,} queued jobs (finish.lua, as WorkerJobStore.fail_queued)")
        store = WorkerJobStore(self.redis, self.keys)
        ttl = Settings.model_fields["queue_dead_letter_ttl_seconds"].default
        # Random ones: failures spread over the whole history, as they would be.
        picked: list[str] = self.redis.zrandmember(self.keys.index("queued"), count)  # type: ignore[assignment]
        for job_id in picked:
            error = JobError(type="BookRenderError", message=f"page {job_id[:4]} would not render", traceback=TRACEBACK)
            if store.fail_queued(job_id, error, ttl) == "ok":
                self.failed.append(job_id)

    def start_api(self) -> str:
        """The API process on the filled prefix, answering; returns its base URL."""
        port = free_port()
        env = {
            **os.environ,  # scrubbed of PocketQueue's settings (main)
            "REDIS_URL": self.url,
            "QUEUE_KEY_PREFIX": self.tag,
            "QUEUE_NAME": self.tag,
            "API_HOST": HOST,
            "API_PORT": str(port),
            "LOG_LEVEL": "WARNING",
            "DATA_DIR": str(self.work_dir / "var"),
        }
        # In the scratch directory: no .env file of ours is read.
        self.api = Service("api", [sys.executable, "-m", "pocketqueue", "api"], env, self.work_dir, self.logs)
        self.stack.callback(self.api.stop)
        self.stack.push(self._show_api_log)
        self.api.start()
        self.api.wait_http(port, "/api/queue/health")
        return f"http://{HOST}:{port}"

    def _show_api_log(self, kind: type[BaseException] | None, *_: object) -> None:
        # Runs before the API is stopped: on an error, what the API said about it.
        if kind is not None and kind is not KeyboardInterrupt:
            print(f"\n--- last lines of the API's log ---\n{self.api.log_tail()}", file=sys.stderr)

    def job_id(self) -> str:
        """The job the job page shows: a failed one (it has the most to show), else a middle one."""
        if self.failed:
            return self.failed[len(self.failed) // 2]
        middle = self.filler.written // 2
        ids: list[str] = self.redis.zrevrange(self.keys.listed("all"), middle, middle)  # type: ignore[assignment]
        return ids[0]


@dataclass
class Results:
    records: int
    cancelled: int
    failed: int
    fill_seconds: float
    used_memory: int
    job_id: str
    timed: list[Timed]
    idle: list[Idle]
    load_seconds: float  # to open PAGES_OPEN overviews, one after the other
    problems: list[str]  # what the browser pages logged or were refused
    loads: tuple[float, float]  # the 1-minute load average before and after the timing


def run(options: Options, stack: ExitStack) -> Results:
    scene = Scene(options, stack)
    progress(f"Redis for this run: {scene.url} (AOF off), prefix {scene.tag}")
    scene.fill(options.records, options.failed)
    used_memory = int(scene.redis.info("memory")["used_memory"])
    progress(f"{options.records:,} records, {len(scene.failed):,} failed; used_memory {used_memory / 1024**2:,.0f} MiB")
    wait_for_dashboard()
    base_url = scene.start_api()
    api = Api(base_url, stack)
    if (shell := api.plain.get("/dashboard")).status_code != 200:
        raise ServiceError(f"GET /dashboard answered {shell.status_code} (is its router included in the app?)")

    timed = []
    load_before = os.getloadavg()[0]
    for page in pages(scene.job_id()):
        timed.append(api.time_page(page, options.runs))
        progress(f"  {page.name:13} {timed[-1].median_ms:7.2f} ms median, {timed[-1].p95_ms:7.2f} ms p95")
    api.streams.close()  # no stream of ours open during the idle windows
    # The machine is shared (2 cores): the load says how much else ran while we timed.
    loads = (load_before, os.getloadavg()[0])

    api_pid = scene.api.pid
    time.sleep(SETTLE_SECONDS)
    progress(f"idle: no page open, {options.idle_seconds:.0f} s")
    none_open = idle_window(0, api_pid, scene.redis_pid, options.idle_seconds, time.sleep, Counter())
    progress(f"  API {none_open.percent:.2f}% of a core")

    progress(f"opening {PAGES_OPEN} overview pages in headless Chromium")
    browsers = Browsers(base_url, stack)
    load_seconds = browsers.open_overviews(PAGES_OPEN)
    browsers.wait(SETTLE_SECONDS)
    progress(f"idle: {PAGES_OPEN} pages open, {options.idle_seconds:.0f} s")
    all_open = idle_window(PAGES_OPEN, api_pid, scene.redis_pid, options.idle_seconds, browsers.wait, browsers.requests)
    progress(f"  API {all_open.percent:.2f}% of a core")
    return Results(
        options.records,
        scene.filler.cancelled,
        len(scene.failed),
        scene.fill_seconds,
        used_memory,
        scene.job_id(),
        timed,
        [none_open, all_open],
        load_seconds,
        browsers.problems,
        loads,
    )


# The report -----------------------------------------------------------------------


def render(options: Options, results: Results, seconds: float) -> tuple[str, list[str]]:
    machine = machine_summary()
    failures = [
        f"{t.page.name} p95 {t.p95_ms:.1f} ms (target < {TARGET_MS:.0f} ms)" for t in results.timed if not t.passed
    ]
    failures += [
        f"{i.pages_open} pages open: API at {i.percent:.1f}% of a core (target < {TARGET_CPU_PERCENT:.0f}%)"
        for i in results.idle
        if i.pages_open and not i.passed
    ]
    lines = [
        f"# Dashboard benchmark, {datetime.now():%Y-%m-%d %H:%M}",
        "",
        f"{machine['cpu']}, {machine['cores']} cores, {machine['memory']}; Python {machine['python']}, "
        f"{machine['os']}; code {code_version(BENCH_DIR.parent)}; run took {seconds / 60:.1f} min.",
        "",
        f"{results.records:,} job records ({results.cancelled:,} cancelled, {results.failed:,} failed through "
        f"finish.lua, the rest queued or scheduled), filled in {results.fill_seconds:,.0f} s; Redis used_memory "
        f"{results.used_memory / 1024**2:,.0f} MiB. No worker runs: the workers page lists none, "
        "and no schedule is declared.",
        "",
        f"## 1. Each page's requests on load ({options.runs} rounds after {WARMUP_RUNS} warm-up)",
        "",
        "Sent one after the other over one keep-alive connection (httpx); the page's time is their sum. "
        "An EventSource is timed to its response head, on a connection of its own. Target: p95 under "
        f"{TARGET_MS:.0f} ms. Load average (1 min) before / after: {results.loads[0]:.2f} / {results.loads[1]:.2f}.",
        "",
        "| page | requests | median ms | p95 ms | max ms | bytes | verdict |",
        "|---|--:|--:|--:|--:|--:|---|",
    ]
    for t in results.timed:
        lines.append(
            f"| {t.page.name} | {len(t.page.calls)} | {t.median_ms:.2f} | {t.p95_ms:.2f} "
            f"| {max(t.totals) * 1000:.2f} | {sum(t.sizes.values()):,} | {'PASS' if t.passed else 'FAIL'} |"
        )
    lines += ["", "Each request (the job page's job: a failed one, `" + results.job_id + "`):", ""]
    lines += ["| page | request | median ms | p95 ms | bytes |", "|---|---|--:|--:|--:|"]
    for t in results.timed:
        for call, times in t.calls.items():
            lines.append(
                f"| {t.page.name} | `{call.label}` | {statistics.median(times) * 1000:.2f} "
                f"| {p95(times) * 1000:.2f} | {t.sizes[call]:,} |"
            )
    lines += [
        "",
        f"## 2. The API process's CPU while idle ({options.idle_seconds:.0f} s, no job dispatched)",
        "",
        f"Overview pages (/dashboard) in headless Chromium, one browser context each, all loaded "
        f"(opening {PAGES_OPEN} took {results.load_seconds:.1f} s), then {SETTLE_SECONDS:.0f} s to settle. "
        "CPU from /proc/PID/stat (utime + stime). Target with 20 open: under "
        f"{TARGET_CPU_PERCENT:.0f}% of one core.",
        "",
        "| pages open | window s | API CPU s | API % of one core | Redis % of one core | requests the pages sent |",
        "|--:|--:|--:|--:|--:|---|",
    ]
    for i in results.idle:
        sent = ", ".join(f"{path} {count}" for path, count in i.requests.most_common()) or "-"
        lines.append(
            f"| {i.pages_open} | {i.seconds:.1f} | {i.api_cpu:.2f} | {i.percent:.2f} "
            f"| {100 * i.redis_cpu / i.seconds:.2f} | {sent} |"
        )
    if results.problems:
        lines += ["", "The browser pages reported:", ""]
        lines += [f"- {problem}" for problem in results.problems[:20]]
        if len(results.problems) > 20:
            lines.append(f"- ... and {len(results.problems) - 20} more")
    return "\n".join(lines), failures


def parse_options(argv: list[str] | None) -> Options:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, help="job records to fill (default 1,000,000; 10,000 with --quick)")
    parser.add_argument("--quick", action="store_true", help="10,000 records, 20 s idle windows")
    parser.add_argument("--failed", type=int, help="queued jobs to fail (default 5,000; 500 with --quick)")
    parser.add_argument("--runs", type=int, default=50, help="timed rounds per page (default 50)")
    parser.add_argument("--idle-seconds", type=float, help="each idle window (default 60; 20 with --quick)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch directory (Redis and API logs)")
    args = parser.parse_args(argv)
    records = args.records if args.records is not None else (10_000 if args.quick else 1_000_000)
    failed = args.failed if args.failed is not None else (500 if args.quick else 5_000)
    idle = args.idle_seconds if args.idle_seconds is not None else (20.0 if args.quick else 60.0)
    if records < 1_000 or not 0 <= failed <= records // 2 or args.runs < 1 or idle <= 0:
        parser.error("--records at least 1,000, --failed at most half of them, --runs and --idle-seconds positive")
    return Options(records, failed, args.runs, idle, args.keep)


def main(argv: list[str] | None = None) -> int:
    options = parse_options(argv)
    scrub_settings_env()
    signal.signal(signal.SIGINT, interrupt)
    signal.signal(signal.SIGTERM, interrupt)
    started = time.monotonic()
    try:
        with ExitStack() as stack:
            results = run(options, stack)
    except KeyboardInterrupt:
        print("interrupted; everything this run started has been stopped", file=sys.stderr)
        return 130
    except ServiceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    text, failures = render(options, results, time.monotonic() - started)
    return write_report("dashboard", text, failures)


if __name__ == "__main__":
    sys.exit(main())
