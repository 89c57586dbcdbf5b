"""Real Redis for tests: the machine's server (started when down), and private servers a test may kill.

Tests share the machine's Redis at 127.0.0.1:6379 and stay apart by key prefix. A test that kills
and restarts Redis runs its own ``redis-server`` on a free port, so other engineers' runs and
other tests never see it go down.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import redis

SHARED = ("127.0.0.1", 6379)
START_SHARED = ("redis-server", "--daemonize", "yes", "--bind", "127.0.0.1", "-::1", "--port", "6379",
                "--save", "", "--appendonly", "no", "--dir", "/var/lib/redis",
                "--logfile", "/var/log/redis/ci.log")


def _answers(host: str, port: int) -> bool:
    try:
        return bool(redis.Redis(host=host, port=port, socket_timeout=0.5, socket_connect_timeout=0.5).ping())
    except (redis.RedisError, OSError):
        return False


def _wait(host: str, port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not _answers(host, port):
        if time.monotonic() > deadline:
            raise RuntimeError(f"Redis is not answering on {host}:{port}")
        time.sleep(0.05)


def ensure_redis_running() -> str:
    """Start the machine's Redis if it does not answer; its URL."""
    if not _answers(*SHARED):
        subprocess.run(START_SHARED, check=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _wait(*SHARED)
    return f"redis://{SHARED[0]}:{SHARED[1]}/0"


def unique_prefix() -> str:
    """A key prefix no other test (or earlier run) uses."""
    return f"vltest:{uuid.uuid4().hex[:10]}:mem"


def keys_and_values(url: str, prefix: str) -> dict[bytes, bytes]:
    """Every key under ``prefix`` with its value (sorted-set members joined), by SCAN."""
    client = redis.Redis.from_url(url)
    try:
        found: dict[bytes, bytes] = {}
        for key in client.scan_iter(match=f"{prefix}:*", count=1000):
            kind = client.type(key)
            if kind == b"string":
                found[key] = client.get(key) or b""
            elif kind == b"zset":
                found[key] = b"\n".join(client.zrange(key, 0, -1))
            else:
                found[key] = kind
        return found
    finally:
        client.close()


def drop_prefix(url: str, prefix: str) -> None:
    """Delete every key under ``prefix``."""
    client = redis.Redis.from_url(url)
    try:
        keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class PrivateRedis:
    """A ``redis-server`` of this test's own, without persistence: a restart comes back empty."""

    directory: Path
    port: int
    process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        """Start it and wait until it answers."""
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly",
             "no", "--dir", str(self.directory), "--daemonize", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _wait("127.0.0.1", self.port)

    def kill(self) -> None:
        """SIGKILL it, as a crash or an OOM kill would."""
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait(10)

    def answers(self) -> bool:
        return _answers("127.0.0.1", self.port)


@contextlib.contextmanager
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    """A private Redis on a free port, killed at the end."""
    directory = tmp_path / "redis"
    directory.mkdir(exist_ok=True)
    server = PrivateRedis(directory, _free_port())
    server.start()
    try:
        yield server
    finally:
        server.kill()
