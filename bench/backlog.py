"""Backlog drain: a big pending spool delivered by ``voicelog ship --once`` vs the ceiling.

voicelog runs as the real command in its own process, so its resident memory is its own and
is sampled from /proc while it drains. The ceiling POSTs the same turns pre-built from this
process. Drain rate comes from the rows' MariaDB insert times (first to last row), so process
start-up is not counted against either; the time series comes from polling MAX(id).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from bench import senders
from bench.common import bench_settings, fill_spool, mac_for, ratio, report_bodies
from bench.manager_process import REPO, ManagerProcess, process_rss_mb, running_manager
from voicelog.agent.wiring import host_spool

SAMPLE_EVERY = 0.25
DRAIN_TIMEOUT = 900.0


class Sampler(threading.Thread):
    """Every SAMPLE_EVERY s: (seconds since start, rows stored, RSS MB of ``pid`` or 0)."""

    def __init__(self, manager: ManagerProcess) -> None:
        super().__init__(daemon=True)
        self.pid: int | None = None
        self.samples: list[tuple[float, int, float]] = []
        self._manager = manager
        self._done = threading.Event()
        self._t0 = time.monotonic()

    def run(self) -> None:
        with contextlib.closing(self._manager.connect()) as conn, conn.cursor() as cur:
            while not self._done.wait(SAMPLE_EVERY):
                cur.execute("SELECT COALESCE(MAX(id), 0) FROM ai_agent_chat_history")
                rows = int(cur.fetchone()[0])
                rss = 0.0
                if self.pid is not None:
                    with contextlib.suppress(OSError):
                        rss = process_rss_mb(self.pid)
                self.samples.append((round(time.monotonic() - self._t0, 2), rows, round(rss, 1)))

    def finish(self) -> list[tuple[float, int, float]]:
        self._done.set()
        self.join()
        return self.samples


def _drain_rate(manager: ManagerProcess, expected: int) -> dict[str, float]:
    times = manager.insert_times()
    if len(times) != expected:
        raise RuntimeError(f"drain stored {len(times)} of {expected} rows")
    span = times[-1] - times[0]
    return {"rows": len(times), "first_to_last_row_s": round(span, 2),
            "turns_per_s": round((len(times) - 1) / span, 1) if span > 0 else 0.0}


def _ceiling(manager: ManagerProcess, bodies: list[list[dict[str, Any]]], sizes: Any) -> dict[str, Any]:
    manager.truncate()
    sampler = Sampler(manager)
    sampler.start()
    asyncio.run(senders.ceiling_reports(manager.url, bodies, sizes.concurrency))
    series = sampler.finish()
    return {**_drain_rate(manager, sum(map(len, bodies))), "series": series}


def _voicelog(manager: ManagerProcess, config: Path, log_file: Path, expected: int) -> dict[str, Any]:
    manager.truncate()
    sampler = Sampler(manager)
    sampler.start()
    started = time.monotonic()
    with log_file.open("ab") as log:
        process = subprocess.Popen([sys.executable, "main.py", "--config", str(config), "ship", "--once",
                                    # ship --once stops at 60 s by default; on a loaded box the
                                    # drain may take longer, and the watchdog below bounds it.
                                    "--deadline", str(int(DRAIN_TIMEOUT))],
                                   cwd=REPO, stdout=log, stderr=log, stdin=subprocess.DEVNULL)
    sampler.pid = process.pid
    watchdog = threading.Timer(DRAIN_TIMEOUT, process.kill)  # a hung drain must not hang the bench
    watchdog.start()
    try:
        _, status, usage = os.wait4(process.pid, 0)
    except BaseException:
        process.kill()
        raise
    finally:
        watchdog.cancel()
    process.returncode = os.waitstatus_to_exitcode(status)
    wall = time.monotonic() - started
    series = sampler.finish()
    if process.returncode != 0:
        tail = log_file.read_text(encoding="utf-8", errors="replace")[-3000:]
        raise RuntimeError(f"ship --once exited {process.returncode}; the end of its log:\n{tail}")
    return {**_drain_rate(manager, expected), "process_wall_s": round(wall, 2),
            "client_cpu_us_per_turn": round((usage.ru_utime + usage.ru_stime) / expected * 1e6),
            "max_rss_mb": round(usage.ru_maxrss / 1024, 1), **_memory(series), "series": series}


def _memory(series: list[tuple[float, int, float]]) -> dict[str, float]:
    """RSS when the first row arrived (imports done, drain started) and the growth after it."""
    draining = [(t, rows, rss) for t, rows, rss in series if rows > 0 and rss > 0]
    if not draining:
        return {"rss_at_first_row_mb": 0.0, "rss_growth_mb": 0.0}
    base = draining[0][2]
    return {"rss_at_first_row_mb": base, "rss_growth_mb": round(max(r for _, _, r in draining) - base, 1)}


def run(sizes: Any, work: Path) -> dict[str, Any]:
    """Fill the spool, then drain it twice: ceiling first, then ``voicelog ship --once``."""
    sessions, turns = sizes.backlog_sessions, sizes.backlog_turns
    with running_manager(work, [mac_for(i) for i in range(sessions)]) as manager:
        settings = bench_settings(work / "backlog", manager.url, logging={"level": "INFO", "format": "json"},
                                  shipper={"max_concurrent_sessions": sizes.concurrency})
        spool = host_spool(settings)
        filling = time.perf_counter()
        filled = fill_spool(settings, spool, sessions, turns)
        fill_s = time.perf_counter() - filling
        spool.close()
        ceiling = _ceiling(manager, report_bodies(filled), sizes)
        voicelog = _voicelog(manager, Path(settings.source), work / "ship-once.log", sessions * turns)
    return {"sessions": sessions, "turns": sessions * turns, "concurrency": sizes.concurrency,
            "fill_s": round(fill_s, 1), "ceiling": ceiling, "voicelog": voicelog,
            "voicelog_vs_ceiling": ratio(voicelog["turns_per_s"], ceiling["turns_per_s"])}
