"""The shipper as a process: SIGTERM drains within the timeout; a restart delivers the rest."""

import asyncio
import signal
import sys
import time
from pathlib import Path

from tests.kits import REPO
from tests.kits.delivery import capture_numbered, contents, eventually
from tests.kits.settings import config_file, delivery_settings
from voicelog.agent.wiring import host_spool
from voicelog.cli.app import main

MAC = "68:25:dd:ba:39:78"


def write_config(tmp_path: Path, manager, drain_timeout: float) -> Path:
    return config_file(tmp_path, name="config.yaml", manager=manager, manager_api={"timeout": 5},
                       chat_history={"batch_size": 1},
                       shipper={"drain_timeout": drain_timeout, "retry_initial": 0.05, "retry_max": 0.2,
                                "poll_interval": 0.05},
                       logging={"level": "INFO", "format": "json"}, http={"listen": ""})


async def test_sigterm_during_delivery_exits_cleanly_and_the_rest_arrives_after_restart(
        tmp_path, reference_manager):
    """SIGTERM mid-delivery: exit 0 within the drain timeout; `ship --once` then completes the job."""
    await reference_manager.bind_device(MAC)
    reference_manager.honour_idempotency = True
    reference_manager.delay_seconds = 0.15  # slow Manager: delivery is still running at SIGTERM
    settings = delivery_settings(tmp_path, reference_manager)
    spool = host_spool(settings)
    sessions = [capture_numbered(settings, spool, MAC, 30, n=n) for n in range(2)]
    config = write_config(tmp_path, reference_manager, drain_timeout=1.0)
    process = await asyncio.create_subprocess_exec(
        sys.executable, "main.py", "--config", str(config), "ship", cwd=REPO,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)

    async def some_rows() -> bool:
        return len(await reference_manager.rows()) >= 4

    await eventually(some_rows, what="delivery under way")
    signalled = time.monotonic()
    process.send_signal(signal.SIGTERM)
    _, stderr = await asyncio.wait_for(process.communicate(), timeout=15)
    took = time.monotonic() - signalled
    assert process.returncode == 0, stderr.decode()[-2000:]
    assert took < 1.0 + 6.0, f"stop took {took:.1f}s"  # drain timeout + bounded cancel grace
    assert len(await reference_manager.rows()) < 60, "the drain should not have finished everything"

    reference_manager.delay_seconds = 0
    assert await asyncio.to_thread(main, ["--config", str(config), "ship", "--once"]) == 0
    for session_id in sessions:
        assert contents(await reference_manager.rows(session_id)) == [f"turn {i}" for i in range(1, 31)]
