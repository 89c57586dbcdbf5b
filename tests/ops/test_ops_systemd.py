"""Running under systemd: the unit file is valid and hardened, the daemon speaks sd_notify."""

import asyncio
import os
import shutil
import socket
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from tests.kits import REPO
from tests.kits.ops import daemon_config, running_daemon, wait_until_serving
from voicelog.services.config import load_settings
from voicelog.services.ops import Notifier

UNIT = REPO / "systemd" / "voicelog.service"
VENV_VOICELOG = REPO / ".venv" / "bin" / "voicelog"


def unit_section(name: str) -> dict[str, list[str]]:
    """Every value of every key in one section (systemd keys may repeat, e.g. Environment)."""
    values: dict[str, list[str]] = {}
    section = None
    for line in UNIT.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
        elif section == name:
            key, _, value = line.partition("=")
            values.setdefault(key.strip(), []).append(value.strip())
    return values


def test_unit_file_declares_notify_restart_secrets_and_hardening():
    """The unit runs as a notify service with watchdog, restarts on failure and is locked down."""
    service = {key: values[-1] for key, values in unit_section("Service").items()}
    assert service["Type"] == "notify"
    assert service["Restart"] == "on-failure"
    assert int(service["WatchdogSec"]) > 0
    assert service["EnvironmentFile"].startswith("/etc/voicelog/")
    assert service["User"] == "voicelog"
    for key, value in {"NoNewPrivileges": "yes", "ProtectSystem": "strict", "ProtectHome": "yes",
                       "PrivateTmp": "yes", "StateDirectory": "voicelog",
                       "ReadWritePaths": "/var/lib/voicelog"}.items():
        assert service[key] == value, key
    service_config = load_settings(REPO / "systemd" / "config.yaml", environ={})
    assert Path(service_config.chat_history.spool_file).is_relative_to(service["ReadWritePaths"]), \
        "the spool and backups of the config installed with the unit must be in its writable path"
    assert service_config.chat_history.backup_dir.startswith(service["ReadWritePaths"] + "/")
    drain_timeout = 20  # shipper.drain_timeout default: worker drain + shipper drain + cancel
    assert int(service["TimeoutStopSec"]) >= 2 * drain_timeout + 15


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
def test_unit_file_passes_systemd_analyze_verify(tmp_path):
    """systemd itself finds nothing wrong with the unit (with ExecStart pointed at this venv)."""
    unit = tmp_path / "voicelog.service"
    unit.write_text(UNIT.read_text().replace("/opt/voicelog/.venv/bin/voicelog", str(VENV_VOICELOG)))
    result = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True,
                            timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert "voicelog.service" not in result.stderr, result.stderr


def notify_socket(path: str) -> socket.socket:
    receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    receiver.bind(path)
    receiver.setblocking(False)
    return receiver


async def next_message(receiver: socket.socket, wanted: str, timeout: float = 20) -> str:
    """Wait for a datagram holding the line ``wanted``; return the datagram."""
    loop = asyncio.get_running_loop()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            data = await asyncio.wait_for(loop.sock_recv(receiver, 4096), deadline - time.monotonic())
        except TimeoutError:
            break
        if wanted in data.decode().splitlines():
            return data.decode()
    raise AssertionError(f"no {wanted} from the daemon within {timeout}s")


async def test_daemon_tells_systemd_ready_watchdog_and_stopping(tmp_path, reference_manager):
    """Under a notify socket the real daemon sends READY=1, WATCHDOG=1 pings and STOPPING=1 on SIGTERM."""
    abstract = f"voicelog-test-{uuid.uuid4().hex}"
    receiver = notify_socket("\0" + abstract)
    config = daemon_config(tmp_path, reference_manager)
    env = {"NOTIFY_SOCKET": "@" + abstract, "WATCHDOG_USEC": "400000"}
    try:
        async with running_daemon(config, env=env) as daemon:
            ready = await next_message(receiver, "READY=1")
            assert "STATUS=delivering; health on http://127.0.0.1:" in ready
            await next_message(receiver, "WATCHDOG=1", timeout=5)
            await next_message(receiver, "WATCHDOG=1", timeout=5)
            await wait_until_serving(daemon)
            daemon.process.terminate()
            stopping = await next_message(receiver, "STOPPING=1")
            assert stopping.startswith("STOPPING=1")
            assert await daemon.stop() == 0
    finally:
        receiver.close()


def test_notifier_sends_to_a_socket_path_and_is_silent_without_one(tmp_path):
    """A filesystem NOTIFY_SOCKET gets the datagrams; no NOTIFY_SOCKET means no-op, no error."""
    path = str(tmp_path / "notify.sock")
    receiver = notify_socket(path)
    try:
        notifier = Notifier({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "10000000",
                             "WATCHDOG_PID": str(os.getpid())})
        assert notifier.watchdog_interval == 5.0
        assert notifier.ready("up") and notifier.stopping()
        assert receiver.recv(4096) == b"READY=1\nSTATUS=up"
        assert receiver.recv(4096) == b"STOPPING=1"
        notifier.close()
    finally:
        receiver.close()
    silent = Notifier({})
    assert not silent.enabled and silent.ready("up") is False
    assert Notifier({"WATCHDOG_USEC": "1000", "WATCHDOG_PID": "1"}).watchdog_interval is None
