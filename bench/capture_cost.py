"""Capture cost: how long one ``add_message`` blocks the event loop, per durability level.

``add_message`` is synchronous, so the whole call is a stall of the agent's event loop; its
duration is the stall. The baseline is what the earlier toy did: append a dict to a list.
Sessions run as tasks on one loop that each add a turn and then yield, so with 200 sessions
the writes of different sessions interleave on one shared spool, as job threads would.
"""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.common import bench_settings, identity_for, ratio, summary, text_for
from voicelog.services.backup import BackupWriter
from voicelog.services.capture import ChatHistoryService
from voicelog.services.config import Durability
from voicelog.services.domain import ChatType
from voicelog.services.spool import Spool, open_spool

LEVELS = ("list", "process", "power")
DEFAULT_LEVEL = "process"


class ListBuffer:
    """The toy's capture: a dict per message appended to an in-memory list."""

    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []

    def add_message(self, chat_type: int, content: str) -> None:
        self.messages.append({"chat_type": int(chat_type), "content": content, "timestamp": time.time()})


def _capturers(level: str, sessions: int, work: Path) -> tuple[list[Callable[..., Any]], Spool | None]:
    if level == "list":
        return [ListBuffer().add_message for _ in range(sessions)], None
    settings = bench_settings(work, chat_history={"durability": level})
    durability = settings.chat_history.durability
    # As a job process opens it: a Checkpointer thread copies the WAL, no capture commit does.
    spool = open_spool(work / "spool.db", durability=durability, checkpoint=True)
    backups = BackupWriter(settings.chat_history.backup_dir, fsync=durability == Durability.POWER)
    services = [ChatHistoryService(spool, identity_for(i), settings.chat_history, backups=backups)
                for i in range(sessions)]
    return [service.add_message for service in services], spool


async def _interleaved(capturers: list[Callable[..., Any]], turns: int) -> tuple[list[int], list[int]]:
    stalls: list[int] = []
    cpu: list[int] = []
    clock, thread_clock = time.perf_counter_ns, time.thread_time_ns

    async def session(add: Callable[..., Any]) -> None:
        for seq in range(1, turns + 1):
            text = text_for(seq)
            kind = ChatType.USER if seq % 2 else ChatType.AGENT
            started, started_cpu = clock(), thread_clock()
            add(kind, text)
            # wall time is the stall; CPU time tells our work from waits (fsync, being preempted)
            cpu.append(thread_clock() - started_cpu)
            stalls.append(clock() - started)
            await asyncio.sleep(0)  # let the other sessions' events run, as a live loop would

    await asyncio.gather(*(session(add) for add in capturers))
    return stalls, cpu


def measure(level: str, sessions: int, turns_total: int, work: Path) -> dict[str, Any]:
    """Stall per captured turn (microseconds) for ``sessions`` interleaved sessions."""
    turns = max(1, turns_total // sessions)
    capturers, spool = _capturers(level, sessions, work / f"{level}-{sessions}")
    gc.collect()  # start each run from the same heap state; GC during the run is part of the cost
    try:
        stalls, cpu = asyncio.run(_interleaved(capturers, turns))
    finally:
        if spool is not None:
            spool.close()
    cpu_summary = summary(cpu, scale=1e-3, digits=1)
    return {"level": level, "sessions": sessions, **summary(stalls, scale=1e-3, digits=1),
            "cpu_p50": cpu_summary["p50"], "cpu_p99": cpu_summary["p99"], "cpu_p99_9": cpu_summary["p99_9"]}


def run(sizes: Any, work: Path) -> dict[str, Any]:
    """Every level beside the list baseline, at 1 and at ``sizes.capture_sessions`` sessions."""
    rows = []
    for sessions in (1, sizes.capture_sessions):
        for level in LEVELS:
            total = sizes.capture_turns_power if level == Durability.POWER else sizes.capture_turns
            rows.append(measure(level, sessions, total, work))
    for row in rows:
        base = next(r for r in rows if r["level"] == "list" and r["sessions"] == row["sessions"])
        row["p99_vs_list"] = ratio(row["p99"], base["p99"], 1)
    default_p99 = max(r["p99"] for r in rows if r["level"] == DEFAULT_LEVEL)
    default_p99_9 = max(r["p99_9"] for r in rows if r["level"] == DEFAULT_LEVEL)
    return {"unit": "microseconds of event-loop stall per add_message", "rows": rows,
            "default_level": DEFAULT_LEVEL, "default_level_worst_p99_us": default_p99,
            "default_level_worst_p99_9_us": default_p99_9}
