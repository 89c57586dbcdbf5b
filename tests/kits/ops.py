"""Helpers for operations tests: a real daemon process, its HTTP endpoint, the real broker."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import queue
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import paho.mqtt.client as mqtt
import yaml
from paho.mqtt.enums import CallbackAPIVersion

from tests.kits import REPO
from tests.kits.settings import FAST_SHIPPER, config_file

BROKER = ("127.0.0.1", 1883)


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def daemon_config(tmp_path: Path, manager: Any, **sections: dict[str, Any]) -> Path:
    """A config file for a daemon delivering to ``manager`` with fast timings and a free port."""
    preset = {"chat_history": {"batch_size": 1}, "shipper": FAST_SHIPPER,
              "logging": {"level": "INFO", "format": "json"},
              "http": {"listen": f"127.0.0.1:{free_port()}"}}
    return config_file(tmp_path, name="daemon.yaml", manager=manager, preset=preset, **sections)


@dataclass
class Daemon:
    """A ``voicelog ship`` process started by a test; its logs go to a file."""

    process: asyncio.subprocess.Process
    log_path: Path
    base_url: str

    def logs(self) -> str:
        """Everything the daemon has printed so far."""
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    async def get(self, path: str) -> tuple[int, str]:
        """GET an ops endpoint: status and body text."""
        timeout = aiohttp.ClientTimeout(total=10)
        async with (aiohttp.ClientSession(timeout=timeout) as session,
                    session.get(self.base_url + path) as response):
            return response.status, await response.text()

    async def stop(self, sig: signal.Signals = signal.SIGTERM, timeout: float = 20) -> int:
        """Signal the daemon and wait for it to exit; its exit code."""
        if self.process.returncode is None:
            self.process.send_signal(sig)
        return await asyncio.wait_for(self.process.wait(), timeout)


@contextlib.asynccontextmanager
async def running_daemon(config: Path, *, env: dict[str, str] | None = None,
                         command: str = "ship", own_group: bool = False) -> AsyncIterator[Daemon]:
    """Start ``voicelog <command>`` as a real process; SIGTERM it (then SIGKILL) at the end.

    With ``own_group`` it leads its own process group, so a test can signal the whole group
    (as ``timeout``, ``kill -- -PGID`` or a container stop do) without signalling itself.
    """
    listen = yaml.safe_load(config.read_text())["http"]["listen"]
    log_path = config.with_suffix(".log")
    with log_path.open("wb") as log_file:  # handed to the child; nothing is written here
        process = await asyncio.create_subprocess_exec(
            sys.executable, "main.py", "--config", str(config), command, cwd=REPO,
            env={**os.environ, **(env or {})}, stdin=subprocess.DEVNULL,
            stdout=log_file, stderr=subprocess.STDOUT, start_new_session=own_group)
    daemon = Daemon(process, log_path, f"http://{listen}")
    try:
        yield daemon
    finally:
        if process.returncode is None:
            try:
                await daemon.stop(timeout=20)
            except TimeoutError:
                process.kill()
                await process.wait()


async def wait_until_serving(daemon: Daemon, timeout: float = 20) -> None:
    """Wait until the daemon answers /healthz, failing early with its logs if it died."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if daemon.process.returncode is not None:
            raise AssertionError(f"daemon exited {daemon.process.returncode}:\n{daemon.logs()[-3000:]}")
        with contextlib.suppress(aiohttp.ClientError, OSError):
            if (await daemon.get("/healthz"))[0] == 200:
                return
        await asyncio.sleep(0.05)
    raise AssertionError(f"daemon not serving after {timeout}s:\n{daemon.logs()[-3000:]}")


def metric(text: str, name: str, **labels: str) -> float | None:
    """The value of one sample in a Prometheus exposition, or None."""
    wanted = name + ("{" + ",".join(f'{k}="{v}"' for k, v in labels.items()) + "}" if labels else "")
    for line in text.splitlines():
        if line.startswith(wanted + " "):
            return float(line.rsplit(" ", 1)[1])
    return None


# --- MQTT -----------------------------------------------------------------------------------

def ensure_mosquitto_running(timeout: float = 10.0) -> None:
    """Start the machine's Mosquitto if nothing listens on 1883, and wait for it (bounded)."""
    if _listening(*BROKER):
        return
    subprocess.run(["mosquitto", "-d", "-c", "/etc/mosquitto/mosquitto.conf"], check=False,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + timeout
    while not _listening(*BROKER):
        if time.monotonic() > deadline:
            raise RuntimeError("Mosquitto is not listening on 127.0.0.1:1883")
        time.sleep(0.1)


def _listening(host: str, port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(0.5)
        return probe.connect_ex((host, port)) == 0


def unique_node() -> str:
    """A node id no other test (or earlier run) uses on the shared broker."""
    return f"test-{uuid.uuid4().hex[:10]}"


@dataclass
class Subscriber:
    """A real MQTT client collecting every message on some topics."""

    client: mqtt.Client
    inbox: queue.Queue = field(default_factory=queue.Queue)

    async def next(self, topic: str, timeout: float = 15, where=lambda doc: True) -> dict[str, Any]:
        """The next JSON message on ``topic`` matching ``where``; fails after ``timeout``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                message = await asyncio.to_thread(self.inbox.get, True, 0.2)
            except queue.Empty:
                continue
            document = json.loads(message.payload)
            if message.topic == topic and where(document):
                document["_retained"] = bool(message.retain)
                return document
        raise AssertionError(f"no matching message on {topic} within {timeout}s")

    def publish(self, topic: str, payload: bytes) -> None:
        """Publish at QoS 1 and wait until the broker has it."""
        self.client.publish(topic, payload, qos=1).wait_for_publish(5)


@contextlib.contextmanager
def subscribed(*topics: str):
    """A connected subscriber on ``topics`` (retained messages arrive first)."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"test-sub-{uuid.uuid4().hex[:8]}")
    subscriber = Subscriber(client)
    client.on_message = lambda _c, _u, message: subscriber.inbox.put(message)
    client.connect(*BROKER)
    client.subscribe([(topic, 1) for topic in topics])
    client.loop_start()
    try:
        yield subscriber
    finally:
        client.disconnect()
        client.loop_stop()


def clear_retained(topic: str) -> None:
    """Remove a retained message the test left on the broker."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2)
    client.connect(*BROKER)
    client.loop_start()
    client.publish(topic, b"", qos=1, retain=True).wait_for_publish(5)
    client.disconnect()
    client.loop_stop()
