"""The daemon's operations side in-process: prune on a timer, and health beside the LiveKit worker."""

import asyncio
import json

import aiohttp

from tests.kits.delivery import capture_numbered, eventually
from tests.kits.ops import free_port
from tests.kits.settings import delivery_settings
from voicelog.agent.daemon import run_daemon, run_shipper
from voicelog.agent.lifecycle import StopSignals
from voicelog.agent.wiring import host_spool

MAC = "68:25:dd:ba:39:78"


async def test_daemon_prunes_delivered_sessions_on_its_own(tmp_path, reference_manager):
    """With prune_interval set, delivered sessions past retention leave the spool and backups unasked."""
    await reference_manager.bind_device(MAC)
    settings = delivery_settings(tmp_path, reference_manager, http={"listen": ""},
                                 chat_history={"retention_days": 0, "prune_interval": 0.2})
    spool = host_spool(settings)
    session = capture_numbered(settings, spool, MAC, 2)
    signals = StopSignals()
    daemon = asyncio.create_task(run_shipper(settings, signals))
    try:
        await eventually(lambda: spool.session(session) is None, what="the delivered session pruned")
    finally:
        signals.stop.set()
        summary = await daemon
        spool.close()
    assert summary.delivered == 2
    assert len(await reference_manager.rows(session)) == 2
    assert not list((tmp_path / "backups").glob(f"*/{session}.json"))


class FakeLiveKitServer:
    """Stands in for the AgentServer: runs until told to fail."""

    def __init__(self) -> None:
        self.crash = asyncio.Event()

    async def run(self) -> None:
        await self.crash.wait()
        raise RuntimeError("lost the LiveKit connection")

    def on(self, event: str, callback) -> None:
        """AgentServer's event registration; this stand-in never registers with LiveKit."""

    async def drain(self, timeout: float | None) -> None:
        return None

    async def aclose(self) -> None:
        return None


async def test_start_reports_the_worker_in_health_and_exits_1_when_it_dies(tmp_path, reference_manager):
    """`start` serves /healthz covering the LiveKit worker and the shipper; a dead worker means exit 1."""
    listen = f"127.0.0.1:{free_port()}"
    settings = delivery_settings(tmp_path, reference_manager, http={"listen": listen})
    server = FakeLiveKitServer()
    daemon = asyncio.create_task(run_daemon(settings, server))

    async def health() -> dict | None:
        try:
            async with (aiohttp.ClientSession() as session,
                        session.get(f"http://{listen}/healthz") as response):
                return json.loads(await response.text()) | {"status_code": response.status}
        except aiohttp.ClientError:
            return None

    await eventually(lambda: _serving(health), what="/healthz answering")
    answer = await health()
    assert answer["status_code"] == 200
    assert answer["checks"] == {"livekit_worker": "ok", "shipper": "ok"}
    server.crash.set()
    assert await asyncio.wait_for(daemon, 30) == 1


async def _serving(health) -> bool:
    return await health() is not None
