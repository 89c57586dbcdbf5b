"""Delivery throughput, report and session mode: voicelog's shipper beside the ceiling and the naive sender.

Every variant sends the same sessions' turns, each session in order, ``concurrency`` sessions at
a time, to the reference Manager (its own process) over MariaDB; the chat table is emptied
between variants and the variants run interleaved ``rounds`` times, the median counting.
voicelog runs exactly as ``voicelog ship --once`` does (``agent.daemon.ship_once``), in-process.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from bench import senders
from bench.common import (
    FilledSession,
    bench_settings,
    fill_spool,
    mac_for,
    ratio,
    report_bodies,
    session_bodies,
)
from bench.manager_process import ManagerProcess, check_order, running_manager
from voicelog.agent.daemon import ship_once
from voicelog.agent.wiring import host_spool
from voicelog.services.config import ApiMode, Settings

REPORT_VARIANTS = ("ceiling", "voicelog", "naive")
REPORT_TARGET = SESSION_TARGET = 0.90  # issue 16's throughput targets, for the CPU budget
SESSION_VARIANTS = ("ceiling_session", "voicelog_session")


def _settings(work: Path, manager: ManagerProcess, sizes: Any, mode: ApiMode) -> Settings:
    return bench_settings(work, manager.url, manager_api={"api_mode": mode},
                          shipper={"max_concurrent_sessions": sizes.concurrency})


def _timed(work: Callable[[], Awaitable[Any]]) -> tuple[float, float]:
    """Wall and CPU seconds (this process) of running ``work`` to completion on a fresh loop."""
    wall, cpu = time.perf_counter(), time.process_time()
    asyncio.run(work())
    return time.perf_counter() - wall, time.process_time() - cpu


def _one(variant: str, manager: ManagerProcess, work: Path, sizes: Any,
         verdicts: dict[str, list[dict[str, int]]]) -> dict[str, float]:
    """Run one variant over freshly captured sessions; returns its throughput and client CPU."""
    mode = ApiMode.SESSION if variant.endswith("session") else ApiMode.REPORT
    settings = _settings(work / variant, manager, sizes, mode)
    spool = host_spool(settings)
    filled = fill_spool(settings, spool, sizes.delivery_sessions, sizes.delivery_turns)
    spool.close()
    turns = sizes.delivery_sessions * sizes.delivery_turns
    manager.truncate()
    server = manager.server_cpu_seconds()
    seconds, cpu = _timed(_sender(variant, manager.url, settings, filled, sizes.concurrency))
    server = manager.server_cpu_seconds() - server
    if variant.startswith("voicelog"):
        verdicts[variant].append(check_order(manager.rows(), {f.session_id: f.contents for f in filled}))
    elif manager.row_count() != turns:
        raise RuntimeError(f"{variant} stored {manager.row_count()} of {turns} rows")
    return {"turns_per_s": turns / seconds, "client_cpu_us_per_turn": cpu / turns * 1e6,
            "server_cpu_us_per_turn": server / turns * 1e6}


def _sender(variant: str, url: str, settings: Settings, filled: list[FilledSession],
            concurrency: int) -> Callable[[], Awaitable[Any]]:
    if variant == "ceiling":
        bodies = report_bodies(filled)
        return lambda: senders.ceiling_reports(url, bodies, concurrency)
    if variant == "naive":
        bodies = report_bodies(filled)
        return lambda: senders.naive_reports(url, bodies, concurrency)
    if variant == "ceiling_session":
        uploads = session_bodies(filled)
        return lambda: senders.ceiling_sessions(url, uploads, concurrency)
    return lambda: ship_once(settings, max_attempts=5)


def _rounds(variants: tuple[str, ...], manager: ManagerProcess, work: Path, sizes: Any,
            verdicts: dict[str, list[dict[str, int]]]) -> dict[str, dict[str, Any]]:
    runs: dict[str, list[dict[str, float]]] = {v: [] for v in variants}
    for number in range(sizes.delivery_rounds):
        for variant in variants:
            runs[variant].append(_one(variant, manager, work / f"round{number}", sizes, verdicts))
    return {variant: {
        "turns_per_s": round(statistics.median(r["turns_per_s"] for r in results), 1),
        "client_cpu_us_per_turn": round(statistics.median(r["client_cpu_us_per_turn"] for r in results)),
        "server_cpu_us_per_turn": round(statistics.median(r["server_cpu_us_per_turn"] for r in results)),
        "rounds_turns_per_s": [round(r["turns_per_s"], 1) for r in results],
        "rounds_cpu_us_per_turn": [round(r["client_cpu_us_per_turn"]) for r in results],
        "rounds_total_cpu_us_per_turn": [round(r["client_cpu_us_per_turn"] + r["server_cpu_us_per_turn"])
                                         for r in results],
    } for variant, results in runs.items()}


def _paired(variants: dict[str, dict[str, Any]], a: str, b: str, key: str) -> dict[str, Any]:
    """a/b per round (the two ran back to back, so a load change between rounds hits both), and their median.

    On a shared machine the load moves between rounds far more than within one; the median of
    paired ratios is steadier than the ratio of two medians taken from different rounds.
    """
    rounds = [ratio(x, y) for x, y in zip(variants[a][key], variants[b][key], strict=True)]
    return {"median": round(statistics.median(rounds), 2), "rounds": rounds}


def _cpu_bound(variants: dict[str, dict[str, Any]], voicelog: str, ceiling: str, target: float) -> dict[str, Any]:
    """What the machine's CPU allows voicelog, when client, Manager and MariaDB share its cores.

    With the cores the limit, turns/s follow 1 / (CPU of the whole system per turn), so the
    ratio voicelog can reach is the ceiling's total CPU per turn over voicelog's (paired per
    round); ``client_budget_us`` is the client CPU per turn at which voicelog would reach
    ``target`` given the server CPU it was measured to cause.
    """
    paired = _paired(variants, ceiling, voicelog, "rounds_total_cpu_us_per_turn")
    ceiling_total = statistics.median(variants[ceiling]["rounds_total_cpu_us_per_turn"])
    budget = ceiling_total / target - variants[voicelog]["server_cpu_us_per_turn"]
    return {"reachable": paired["median"], "reachable_rounds": paired["rounds"],
            "client_budget_us": round(budget)}


def _order(verdicts: list[dict[str, int]]) -> dict[str, Any]:
    total = {key: sum(v[key] for v in verdicts) for key in verdicts[0]}
    total["order_kept"] = not (total["lost"] or total["duplicated"] or total["sessions_out_of_order"])
    return total


def run(sizes: Any, work: Path) -> dict[str, Any]:
    """Report mode (ceiling, voicelog, naive) then session mode, against one Manager process."""
    verdicts: dict[str, list[dict[str, int]]] = {"voicelog": [], "voicelog_session": []}
    macs = [mac_for(i) for i in range(sizes.delivery_sessions)]
    with running_manager(work, macs) as manager:
        report = _rounds(REPORT_VARIANTS, manager, work / "report", sizes, verdicts)
        session = _rounds(SESSION_VARIANTS, manager, work / "session", sizes, verdicts)
    load = {"sessions": sizes.delivery_sessions, "turns_per_session": sizes.delivery_turns,
            "concurrency": sizes.concurrency, "rounds": sizes.delivery_rounds}
    voicelog = report["voicelog"]["turns_per_s"]
    session_rate = session["voicelog_session"]["turns_per_s"]
    rate, cpu = "rounds_turns_per_s", "rounds_cpu_us_per_turn"
    vs_ceiling = _paired(report, "voicelog", "ceiling", rate)
    session_vs_ceiling = _paired(session, "voicelog_session", "ceiling_session", rate)
    return {
        "report": {"load": load, "variants": report, "order": _order(verdicts["voicelog"]),
                   "voicelog_vs_ceiling": vs_ceiling["median"],
                   "voicelog_vs_ceiling_rounds": vs_ceiling["rounds"],
                   "cpu_vs_ceiling": _paired(report, "voicelog", "ceiling", cpu)["median"],
                   "voicelog_vs_naive": _paired(report, "voicelog", "naive", rate)["median"],
                   "cpu_bound": _cpu_bound(report, "voicelog", "ceiling", REPORT_TARGET)},
        "session": {"load": load, "variants": session, "order": _order(verdicts["voicelog_session"]),
                    "voicelog_vs_ceiling": session_vs_ceiling["median"],
                    "voicelog_vs_ceiling_rounds": session_vs_ceiling["rounds"],
                    "cpu_vs_ceiling": _paired(session, "voicelog_session", "ceiling_session", cpu)["median"],
                    "session_vs_report": ratio(session_rate, voicelog, 1),
                    "cpu_bound": _cpu_bound(session, "voicelog_session", "ceiling_session", SESSION_TARGET)},
    }
