"""`python -m pocketqueue up|api|worker|redis`: run the whole system, or one part of it.

`python -m pocketqueue retry-failed|clear`: tend its jobs (pocketqueue.admin).

`python -m pocketqueue key new NAME ROLE`: make an API key (pocketqueue.keyring).

`python -m pocketqueue stats|jobs|inspect|monitor`: see them (pocketqueue.terminal).
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from functools import partial
from types import FrameType
from typing import NoReturn
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from pydantic import ValidationError
from pydantic_core import ErrorDetails

from pocketqueue import admin, keyring, terminal
from pocketqueue.config import Settings, get_settings
from pocketqueue.embedded import LocalRedis, answers
from pocketqueue.errors import QueueError
from pocketqueue.supervise import Child, Supervisor


def redacted(url: str) -> str:
    """`url` with its password (in the authority or the query string) replaced, for messages."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if parts.password is not None:
        netloc = netloc.replace(f":{parts.password}@", ":***@", 1)
    query = urlencode([(k, "***" if k.lower() == "password" else v) for k, v in parse_qsl(parts.query)])
    return urlunsplit(parts._replace(netloc=netloc, query=query))


def require_redis(settings: Settings) -> str:
    url = settings.resolved_redis_url()
    settings.broker_url()  # raises if the broker settings cannot work
    if not answers(url, timeout=3.0):
        if settings.uses_local_redis:
            raise QueueError(
                f"the local Redis under {settings.data_dir}/ ({url}) is not running; "
                "start it with `python -m pocketqueue redis` (or run everything with `make run`)."
            )
        raise QueueError(f"cannot reach Redis at {redacted(url)}; is it running, and is REDIS_URL right?")
    return url


def refuse_exposure(settings: Settings) -> None:
    """Stop before serving an open API beyond loopback (Settings.exposure_problem)."""
    problem = settings.exposure_problem()
    if problem:
        raise QueueError(problem)


def run_api(settings: Settings) -> None:
    import uvicorn

    from pocketqueue.jobs.registry import import_task_modules

    refuse_exposure(settings)
    require_redis(settings)
    import_task_modules(settings.task_modules)  # a bad module is a one-line error here, not a lifespan traceback
    uvicorn.run(
        "pocketqueue.api.app:create_app",
        factory=True,
        host=settings.api_host,
        port=settings.api_port,
        log_level=settings.log_level.lower(),
    )


def run_worker(settings: Settings) -> None:
    from pocketqueue.worker import get_celery_app
    from pocketqueue.worker.app import worker_argv

    require_redis(settings)
    get_celery_app().worker_main(worker_argv(settings))


def run_redis(settings: Settings) -> None:
    with LocalRedis(settings.data_dir, appendfsync=settings.local_redis_appendfsync) as server:
        print(f"Local Redis at {server.url} (data in {settings.data_dir}/redis); Ctrl-C stops it.", flush=True)
        _wait_for_stop_signal(lambda: server.process is not None and server.process.poll() is None)


def run_up(settings: Settings) -> int:
    """Start Redis (unless REDIS_URL is set), a worker and the API; restart any that exits; stop all on a signal."""
    server = (
        LocalRedis(settings.data_dir, appendfsync=settings.local_redis_appendfsync)
        if settings.uses_local_redis
        else None
    )
    refuse_exposure(settings)  # here too: before Redis and a worker are started for nothing
    supervisor = Supervisor()
    try:
        if server is not None:
            supervisor.start(Child("redis", partial(_start_redis, server), lambda _: server.stop()))
            print(f"Local Redis: {server.url} (data in {settings.data_dir}/redis)", flush=True)
        require_redis(settings)
        grace = settings.queue_shutdown_grace_seconds + 10
        for part in ("worker", "api"):
            supervisor.start(Child(part, partial(_spawn, part), partial(_stop, grace=grace)))
        base = f"http://{settings.api_host}:{settings.api_port}"
        print(
            f"PocketQueue API: {base}/api/queue   dashboard: {base}/dashboard   docs: {base}/docs"
            "   (Ctrl-C stops everything)",
            flush=True,
        )
        _wait_for_stop_signal(supervisor.keep_running)
        return 0 if supervisor.failure is None else 1
    finally:
        supervisor.stop_all()


def _start_redis(server: LocalRedis) -> subprocess.Popen[bytes]:
    server.start()
    assert server.process is not None  # start() raises unless it is running
    return server.process


def _spawn(part: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "pocketqueue", part], start_new_session=True)


def _stop(child: subprocess.Popen[bytes], grace: float = 30.0) -> None:
    """SIGTERM (a worker's warm shutdown: finish running jobs), then SIGQUIT, then SIGKILL.

    The worker bounds its own warm shutdown (QUEUE_SHUTDOWN_GRACE_SECONDS); `grace` is a
    little longer, so the SIGQUIT here is only a backstop.

    SIGQUIT is Celery's cold shutdown, which hands unacknowledged messages back to Redis;
    a SIGKILL would leave them for the broker's visibility timeout (over an hour).
    """
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGQUIT, 10.0), (signal.SIGKILL, 10.0)):
        if child.poll() is not None:
            return
        child.send_signal(sig)
        try:
            child.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            continue


def _wait_for_stop_signal(still_running: Callable[[], bool]) -> None:
    """Block until SIGINT/SIGTERM, or until `still_running()` turns false."""
    stop = False

    def handle(signum: int, frame: FrameType | None) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGINT, handle)
    signal.signal(signal.SIGTERM, handle)
    while not stop and still_running():
        time.sleep(0.2)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        """Usage errors look like every other error: `pocketqueue: error: ...`, exit 2."""
        self.print_usage(sys.stderr)
        self.exit(2, f"pocketqueue: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="python -m pocketqueue", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="command")
    commands.add_parser("up", help="Redis (unless REDIS_URL is set), a worker and the API, together")
    commands.add_parser("api", help="the HTTP API")
    worker = commands.add_parser("worker", help="a Celery worker")
    worker.add_argument(
        "--queues", metavar="NAMES", help="comma-separated queues to consume (default: WORKER_QUEUES, else QUEUE_NAME)"
    )
    commands.add_parser("redis", help="a local Redis under DATA_DIR")
    key = commands.add_parser("key", help="make an API key").add_subparsers(dest="key_command", required=True)
    new = key.add_parser("new", help="print a fresh key, and the QUEUE_API_KEYS entry that holds only its hash")
    new.add_argument("name", help="what the key is for, e.g. grafana (shown in dispatched_by and the audit trail)")
    new.add_argument("role", choices=["read", "write", "admin"])
    new.set_defaults(handler=new_key)
    admin.add_commands(commands)
    terminal.add_commands(commands)
    return parser


def new_key(settings: Settings, args: argparse.Namespace) -> int:
    secret, entry = keyring.new_key(args.name, args.role)
    print(f"key (give it to the caller; it is shown only now): {secret}")
    print(f"QUEUE_API_KEYS entry (holds only its SHA-256):    {entry}")
    return 0


def _settings_problem(error: ErrorDetails) -> str:
    """One invalid setting as a user reads it: `NAME: what is wrong`, or the check's own sentence."""
    # A check across settings has no location, and pydantic prefixes the sentence of any
    # check that raised ValueError with "Value error, "; those sentences name the settings.
    name = ".".join(map(str, error["loc"])).upper()
    message = error["msg"].removeprefix("Value error, ")
    return message if not name or message.startswith(name) else f"{name}: {message}"


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # --help (0), or a usage error already printed (2)
        return exc.code if isinstance(exc.code, int) else 2
    try:
        if getattr(args, "queues", None):
            # The flag is WORKER_QUEUES for this process (and its pool processes), so the
            # settings stay the one place configuration is read and checked.
            os.environ["WORKER_QUEUES"] = args.queues
            get_settings.cache_clear()
        settings = get_settings()
        if args.command == "up":
            return run_up(settings)
        if hasattr(args, "handler"):  # the admin and terminal commands
            code: int = args.handler(settings, args)
            return code
        {"api": run_api, "worker": run_worker, "redis": run_redis}[args.command](settings)
        return 0
    except QueueError as exc:
        print(f"pocketqueue: error: {exc.detail}", file=sys.stderr)
        return 2
    except ValidationError as exc:
        problems = "; ".join(_settings_problem(error) for error in exc.errors())
        print(f"pocketqueue: error: invalid settings: {problems}", file=sys.stderr)
        return 2
