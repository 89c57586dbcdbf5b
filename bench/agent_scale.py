"""Agent scale: how many scripted AgentSessions one process sustains, and capture's share of CPU.

Each step runs N real AgentSessions (agent/scripted.run_conversation, the same script for all,
starts spread over a few seconds) with production capture attached (attach_capture). A step
is sustained when the median session takes at most SLOWDOWN_LIMIT times as long as one
session alone, and none fails. CPU: thread CPU inside voicelog's capture handlers and the
service/spool calls they make (counted once however they nest), against the whole process.
"""

from __future__ import annotations

import asyncio
import functools
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.common import bench_settings, identity_for, percentile, ratio
from voicelog.agent.simulation.run import generated_devices
from voicelog.agent.simulation.scripted import run_conversation
from voicelog.agent.wiring import attach_capture, host_spool
from voicelog.handlers.chat_capture import ChatCapture

SLOWDOWN_LIMIT = 1.10
LAG_TICK = 0.01
HANDLERS = {"user_input_transcribed": "on_user_input_transcribed", "speech_created": "on_speech_created",
            "conversation_item_added": "on_conversation_item_added", "close": "on_close"}
TURN_CALLS = ("add_message", "open_turn", "update_turn")


class CpuMeter:
    """Thread CPU spent inside wrapped calls; nested wrapped calls are counted once."""

    def __init__(self) -> None:
        self.ns = 0
        self._depth = 0

    def wrap(self, call: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(call)
        def timed(*args: Any, **kwargs: Any) -> Any:
            if self._depth:
                return call(*args, **kwargs)
            self._depth += 1
            started = time.thread_time_ns()
            try:
                return call(*args, **kwargs)
            finally:
                self.ns += time.thread_time_ns() - started
                self._depth -= 1

        return timed


def _instrument(capture: ChatCapture, session: Any, turns: CpuMeter, ending: CpuMeter) -> None:
    """Re-register capture's handlers through the meters; the reply-done path goes via the service."""
    for event, name in HANDLERS.items():
        handler = getattr(capture, name)
        session.off(event, handler)
        session.on(event, turns.wrap(handler))
    for name in TURN_CALLS:
        setattr(capture.service, name, turns.wrap(getattr(capture.service, name)))
    # The session's end runs from an async close: its backup rewrite is metered on its own.
    capture.service.write_backup = ending.wrap(capture.service.write_backup)


async def _lag_monitor(lags: list[float]) -> None:
    """How late a 10 ms timer fires: the event loop's responsiveness under the load."""
    loop = asyncio.get_running_loop()
    while True:
        due = loop.time() + LAG_TICK
        await asyncio.sleep(LAG_TICK)
        lags.append(loop.time() - due)


async def _step(n: int, sizes: Any, work: Path, script: list[Any]) -> dict[str, Any]:
    settings = bench_settings(work / f"n{n}")
    spool = host_spool(settings)
    meter, ending = CpuMeter(), CpuMeter()
    spool.end_session = ending.wrap(spool.end_session)
    lags: list[float] = []
    failures: list[str] = []

    async def one(index: int) -> float:
        await asyncio.sleep(index * sizes.agent_stagger / n)
        captures: list[ChatCapture] = []

        def attach(session: Any) -> None:
            captures.append(attach_capture(session, identity_for(index), settings, spool))
            _instrument(captures[0], session, meter, ending)

        started = time.perf_counter()
        try:
            await run_conversation(script, time_scale=sizes.agent_time_scale, on_session=attach)
        except Exception as error:  # noqa: BLE001 - a failed session is a result, not a crash
            failures.append(repr(error))
        took = time.perf_counter() - started
        if captures:
            await captures[0].close("bench_end")
        return took

    monitor = asyncio.create_task(_lag_monitor(lags))
    wall, cpu = time.perf_counter(), time.process_time()
    durations = await asyncio.gather(*(one(i) for i in range(n)))
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    monitor.cancel()
    counts = spool.status_counts()
    spool.close()
    turns = sum(v for k, v in counts.items() if k != "skipped")
    return {"sessions": n, "failed": len(failures), "turns": turns,
            "median_session_s": round(statistics.median(durations), 2),
            "p95_session_s": round(percentile(durations, 95), 2),
            "loop_lag_p99_ms": round(percentile(lags, 99) * 1e3, 1),
            "cpu_busy": round(cpu / wall, 2),
            "cpu_us_per_turn": round(cpu / max(turns, 1) * 1e6),
            "capture_cpu_us_per_turn": round((meter.ns + ending.ns) / 1e3 / max(turns, 1)),
            "capture_turn_path_us_per_turn": round(meter.ns / 1e3 / max(turns, 1)),
            "capture_session_end_us_per_turn": round(ending.ns / 1e3 / max(turns, 1)),
            "capture_share": round((meter.ns + ending.ns) / 1e9 / cpu, 3) if cpu else 0.0}


def run(sizes: Any, work: Path) -> dict[str, Any]:
    """Step up the concurrency until a step is not sustained; the last sustained one is the answer."""
    script = list(generated_devices(1, sizes.agent_turns)[0].turns)
    steps: list[dict[str, Any]] = []
    for n in sizes.agent_steps:
        step = asyncio.run(_step(n, sizes, work / "agent", script))
        base = steps[0]["median_session_s"] if steps else step["median_session_s"]
        step["slowdown"] = ratio(step["median_session_s"], base)
        step["sustained"] = step["failed"] == 0 and step["slowdown"] <= SLOWDOWN_LIMIT
        steps.append(step)
        if not step["sustained"]:
            break
    sustained = [s for s in steps if s["sustained"]]
    best = sustained[-1] if sustained else steps[0]
    return {"time_scale": sizes.agent_time_scale, "script_turns": sizes.agent_turns,
            "slowdown_limit": SLOWDOWN_LIMIT, "steps": steps,
            "max_sustained_sessions": best["sessions"] if sustained else 0,
            "ceiling_reached": not steps[-1]["sustained"],
            "capture_cpu_us_per_turn": best["capture_cpu_us_per_turn"],
            "capture_turn_path_us_per_turn": best["capture_turn_path_us_per_turn"],
            "capture_session_end_us_per_turn": best["capture_session_end_us_per_turn"],
            "cpu_us_per_turn": best["cpu_us_per_turn"], "capture_share": best["capture_share"]}
