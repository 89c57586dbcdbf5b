"""A long Manager outage: the backlog grows on disk, not in the shipper's memory, then drains.

20,000 turns are captured while the Manager is down and a real ``main.py ship`` process keeps
retrying; its resident memory is sampled as the backlog grows and must stay flat. When the
Manager comes back every turn arrives, in order per session, exactly once.
"""

from __future__ import annotations

import asyncio
import signal
import sys
import time

import pytest

from tests.kits import REPO
from tests.kits.delivery import eventually
from tests.kits.faults import room, rss_kib, ship_config
from voicelog.services.capture import ChatHistoryService
from voicelog.services.config import ChatHistorySettings
from voicelog.services.domain import ChatType, resolve_identity
from voicelog.services.spool import open_spool

MAC = "68:25:dd:ba:39:78"
SESSIONS, PER_SESSION, CHUNKS = 20, 1000, 10
RSS_GROWTH_LIMIT_KIB = 8 * 1024  # 20k turns of ~200 characters held in memory would be well over


def text(i: int) -> str:
    return f"turn {i} of a long outage" + " la" * 60


def capture_chunk(services: list[ChatHistoryService], chunk: int) -> None:
    """Capture one tenth of every session's turns, numbered per session."""
    per_chunk = PER_SESSION // CHUNKS
    for service in services:
        for i in range(chunk * per_chunk + 1, (chunk + 1) * per_chunk + 1):
            service.add_message(ChatType.USER if i % 2 else ChatType.AGENT, text(i))


@pytest.mark.slow
async def test_backlog_of_20k_turns_stays_on_disk_and_drains_in_order(tmp_path, reference_manager):
    """Shipper RSS stays flat while 20k turns pile up; after the outage all arrive in order."""
    await reference_manager.bind_device(MAC)
    await reference_manager.go_down()
    config = ship_config(tmp_path, reference_manager, retry_max=0.2, max_concurrent_sessions=SESSIONS)
    spool = open_spool(tmp_path / "backups" / "spool.db")
    settings = ChatHistorySettings()
    services = [ChatHistoryService(spool, resolve_identity(room(n), {"device_mac": MAC}, MAC), settings)
                for n in range(SESSIONS)]
    shipper = await asyncio.create_subprocess_exec(
        sys.executable, "main.py", "--config", str(config), "ship", cwd=REPO,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
    try:
        capture_chunk(services, 0)
        await eventually(lambda: sum(t.attempts for s in spool.sessions() for t in spool.turns(s.session_id)) >= 8,
                         what="the shipper failing against the down Manager")
        baseline, samples = rss_kib(shipper.pid), []
        for chunk in range(1, CHUNKS):
            capture_chunk(services, chunk)
            await asyncio.sleep(0)  # let the Manager side (down) and the shipper run between chunks
            samples.append(rss_kib(shipper.pid))
        assert spool.status_counts() == {"pending": SESSIONS * PER_SESSION}
        assert max(samples) - baseline < RSS_GROWTH_LIMIT_KIB, (baseline, samples)
        started = time.monotonic()
        await reference_manager.come_up()
        await eventually(lambda: spool.status_counts() == {"delivered": SESSIONS * PER_SESSION},
                         timeout=150, what="the whole backlog delivered")
        print(f"\noutage: shipper RSS {baseline} KiB -> {samples} KiB while 20k turns "
              f"queued; drained in {time.monotonic() - started:.1f}s")
    finally:
        shipper.send_signal(signal.SIGTERM)
        await asyncio.wait_for(shipper.wait(), timeout=30)
    for service in services:
        rows = [r["content"] for r in await reference_manager.rows(service.session_id)]
        assert rows == [text(i) for i in range(1, PER_SESSION + 1)]
    spool.close()
