"""End-to-end latency: a turn's capture to its row committed in the Manager's MariaDB table.

Live sessions add turns through ChatHistoryService while the production shipper (built as
the daemon builds it) runs on the same loop, as ``voicelog simulate`` does. Each turn's text
carries its capture time; the row's ``updated_at`` (set by MariaDB at INSERT, inside the
transaction that commits it) is the commit time. Both clocks are this machine's.
"""

from __future__ import annotations

import asyncio
import random
import time
from pathlib import Path
from typing import Any

from bench.common import TEXTS, bench_settings, identity_for, mac_for, summary
from bench.manager_process import ManagerProcess, epoch, running_manager
from voicelog.agent.daemon import build_shipper
from voicelog.agent.wiring import host_spool
from voicelog.services.backup import BackupWriter
from voicelog.services.capture import ChatHistoryService
from voicelog.services.config import Settings
from voicelog.services.domain import ChatType

DELIVERY_TIMEOUT = 60.0


def _content(seq: int) -> str:
    return f"{seq:06d} @{time.time_ns()} {TEXTS[seq % len(TEXTS)]}"


def _captured_at(content: str) -> float:
    return int(content.split()[1][1:]) / 1e9


async def _talk(service: ChatHistoryService, gap: tuple[float, float], until: float,
                rng: random.Random) -> int:
    seq = 0
    while True:
        await asyncio.sleep(rng.uniform(*gap))
        if time.monotonic() >= until:
            return seq
        seq += 1
        service.add_message(ChatType.USER if seq % 2 else ChatType.AGENT, _content(seq))


async def _all_delivered(manager: ManagerProcess, expected: int) -> None:
    deadline = time.monotonic() + DELIVERY_TIMEOUT
    while await asyncio.to_thread(manager.row_count) < expected:
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {manager.row_count()} of {expected} turns arrived")
        await asyncio.sleep(0.2)


async def _measure(sizes: Any, work: Path, manager: ManagerProcess) -> tuple[int, Settings]:
    settings = bench_settings(work, manager.url, chat_history={
        "send_interval": sizes.latency_send_interval}, shipper={"max_concurrent_sessions": sizes.concurrency})
    shipper, release = build_shipper(settings)
    stop = asyncio.Event()
    shipping = asyncio.create_task(shipper.run(stop))
    spool = host_spool(settings)  # a job process's own connection
    backups = BackupWriter(settings.chat_history.backup_dir)
    services = [ChatHistoryService(spool, identity_for(i), settings.chat_history, backups=backups,
                                   on_flush=shipper.wake) for i in range(sizes.latency_sessions)]
    until = time.monotonic() + sizes.latency_seconds
    counts = await asyncio.gather(*(_talk(s, sizes.latency_gap, until, random.Random(i))
                                    for i, s in enumerate(services)))
    try:
        await _all_delivered(manager, sum(counts))
    finally:
        stop.set()
        await shipping
        await release()
        for service in services:
            await service.cleanup("bench_end")
        spool.close()
    return sum(counts), settings


def run(sizes: Any, work: Path) -> dict[str, Any]:
    """Latency percentiles (ms) of every turn captured during the run."""
    macs = [mac_for(i) for i in range(sizes.latency_sessions)]
    with running_manager(work, macs) as manager:
        captured, settings = asyncio.run(_measure(sizes, work / "latency", manager))
        latencies = [epoch(updated) - _captured_at(content) for _, content, _, updated in manager.rows()]
    return {"sessions": sizes.latency_sessions, "seconds": sizes.latency_seconds,
            "turn_gap_s": list(sizes.latency_gap), "send_interval_s": sizes.latency_send_interval,
            "batch_size": settings.chat_history.batch_size,
            "poll_interval_s": settings.shipper.poll_interval, "captured": captured, "delivered": len(latencies),
            "latency_ms": summary(latencies, scale=1e3, digits=0)}
