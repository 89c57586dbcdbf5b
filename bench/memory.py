"""Conversation memory: preload latency at session start, and what memory costs the capture path.

1. Preload: a spool holding 1,000 devices (2 sessions a day x 10 turns, over ``memory_days``), and
   the same devices' last 24 h in Redis (pushed by the host's writer, timed). Then
   ``MemoryReader.read`` of random devices, local and Redis reads interleaved, each timed around the
   awaited call (query, merge with the spool, selection, decoding): what a session start waits.
   Also the first read of a fresh Redis client (connect + handshake), as a new job process pays
   it when the warm-up has not finished.
2. Capture cost, memory on vs off, side by side: ``add_message`` timed in this process while the
   host's Redis writer runs in its own process (as in the daemon) or is stopped (SIGSTOP), in
   alternating rounds over one spool so noise hits both alike, at 200 turns/s. Reported: the
   pooled p99 of each mode, the median of the rounds' p99s (steadier on a shared machine), and
   the writer's own CPU use. Then one more round with the writer on, in which every 50th turn is
   watched until it is in Redis: the capture-to-Redis lag.

Run alone: .venv/bin/python -m bench.memory [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import redis

from bench.common import bench_settings, mac_for, production_logging, ratio, summary, text_for
from bench.manager_process import cpu_seconds
from tests.kits.redis import drop_prefix, ensure_redis_running, unique_prefix
from voicelog.agent.wiring import host_spool
from voicelog.services.capture import ChatHistoryService
from voicelog.services.config import Settings, load_settings
from voicelog.services.domain import ChatType, resolve_identity
from voicelog.services.memory import (
    Keys,
    MemoryReader,
    RedisMemory,
    async_client,
    open_memory_reader,
    open_memory_writer,
    session_ref,
)
from voicelog.services.spool import Spool, SpoolMemory

DAY_MS = 86_400_000
SESSIONS_PER_DAY, TURNS_PER_SESSION = 2, 10
LAG_EVERY = 50  # every n-th captured turn is watched until it is in Redis
# 200 turns/s: 2-4x a host at its measured agent ceiling (200-400 sessions, a turn every few seconds each)
PACE = 0.005


def fill(settings: Settings, spool: Spool, devices: int, days: int) -> int:
    """Capture ``days`` of sessions for ``devices`` devices, at their real times; returns turns stored."""
    now = time.time_ns() // 1_000_000
    stored = 0
    for device in range(devices):
        mac = mac_for(device)
        for number in range(days * SESSIONS_PER_DAY):
            started = now - (2 * number + 1) * DAY_MS // (2 * SESSIONS_PER_DAY) - random.randrange(3_600_000)
            clock = iter(range(started, started + 10_000_000, 3_000))
            identity = resolve_identity(f"{device:08d}-{number:04d}_{mac.replace(':', '')}", {"device_mac": mac}, mac)
            service = ChatHistoryService(spool, identity, settings.chat_history, now=lambda c=clock: next(c))
            for seq in range(1, TURNS_PER_SESSION + 1):
                service.add_message(ChatType.USER if seq % 2 else ChatType.AGENT, text_for(seq))
            spool.end_session(identity.session_id, ended_ms=next(clock), reason="bench")
            stored += TURNS_PER_SESSION
    return stored


async def _timed_reads(readers: dict[str, MemoryReader], devices: int, reads: int) -> dict[str, list[float]]:
    timings: dict[str, list[float]] = {name: [] for name in readers}
    picks = [mac_for(random.randrange(devices)) for _ in range(reads)]
    for name, reader in readers.items():  # warm: statement cache, connection pool, script cache
        await reader.read(picks[0])
    for mac in picks:
        for name, reader in readers.items():  # interleaved: machine noise hits both alike
            started = time.perf_counter()
            preload = await reader.read(mac)
            timings[name].append((time.perf_counter() - started) * 1000)
            assert preload.store == name and preload.turns, (name, preload.reason)
    return timings


async def _cold_reads(settings: Settings, spool: Spool, devices: int, times: int) -> list[float]:
    timings = []
    for _ in range(times):
        reader = MemoryReader(settings.memory, SpoolMemory(spool), cipher=None,
                              redis=RedisMemory(async_client(settings.memory), settings.memory))
        started = time.perf_counter()
        await reader.read(mac_for(random.randrange(devices)))
        timings.append((time.perf_counter() - started) * 1000)
        await reader.redis.aclose()
    return timings


async def preload_latency(sizes: Any, work: Path, redis_url: str, prefix: str) -> dict[str, Any]:
    """Section 1: fill both stores, then time reads."""
    local = bench_settings(work)
    remote = bench_settings(work, memory={"backend": "redis", "redis_url": redis_url, "key_prefix": prefix})
    spool = host_spool(local)
    try:
        started = time.perf_counter()
        turns = fill(local, spool, sizes.memory_devices, sizes.memory_days)
        fill_s = time.perf_counter() - started
        writer = open_memory_writer(remote, spool)
        started = time.perf_counter()
        assert await writer.flush(timeout=600), writer.stats.last_error
        push_s = time.perf_counter() - started
        pushed = writer.stats.pushed
        await writer.redis.aclose()
        writer.feed.spool.close()
        readers = {"local": open_memory_reader(local, spool), "redis": open_memory_reader(remote, spool)}
        timings = await _timed_reads(readers, sizes.memory_devices, sizes.memory_reads)
        cold = await _cold_reads(remote, spool, sizes.memory_devices, sizes.memory_cold_reads)
        for reader in readers.values():
            await reader.aclose()
        size_mb = round(spool.size_bytes() / 1e6, 1)
    finally:
        spool.close()
    return {"devices": sizes.memory_devices, "days": sizes.memory_days, "spool_turns": turns,
            "spool_mb": size_mb, "fill_s": round(fill_s, 1), "redis_turns": pushed,
            "writer_turns_per_s": round(pushed / push_s) if push_s else None,
            "local_ms": summary(timings["local"], digits=2), "redis_ms": summary(timings["redis"], digits=2),
            "redis_cold_ms": summary(cold, digits=2)}


def _start_writer(config: Path, log: Path) -> subprocess.Popen:
    process = subprocess.Popen([sys.executable, "-m", "bench.memory", "--writer", str(config)],
                               cwd=Path(__file__).resolve().parent.parent, stdout=log.open("ab"),
                               stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    return process


async def _watch_lag(client: redis.Redis, key: str, captured: float, lags: list[float]) -> None:
    deadline = captured + 10
    while time.perf_counter() < deadline:
        if await asyncio.to_thread(client.exists, key):
            lags.append((time.perf_counter() - captured) * 1000)
            return
        await asyncio.sleep(0.01)
    lags.append(float("inf"))


async def _capture_round(settings: Settings, spool: Spool, turns: int, sessions: int, round_no: int,
                         watch: tuple[redis.Redis, str] | None, lags: list[float]) -> list[float]:
    services = []
    for s in range(sessions):
        mac = mac_for(900_000 + s)
        identity = resolve_identity(f"capture-{round_no:03d}-{s:04d}_{mac.replace(':', '')}", {"device_mac": mac}, mac)
        services.append(ChatHistoryService(spool, identity, settings.chat_history))
    stalls, watchers = [], []
    for n in range(turns):
        service = services[n % sessions]
        seq = n // sessions + 1
        started = time.perf_counter_ns()
        service.add_message(ChatType.USER if seq % 2 else ChatType.AGENT, text_for(seq))
        stalls.append((time.perf_counter_ns() - started) / 1000)
        if watch is not None and n % LAG_EVERY == 0:
            client, prefix = watch
            key = Keys(prefix).device(service.identity.mac).turn_base + f"{session_ref(service.session_id)}#{seq}"
            watchers.append(asyncio.ensure_future(_watch_lag(client, key, time.perf_counter(), lags)))
        await asyncio.sleep(PACE)
    for service in services:
        await service.cleanup("bench")
    await asyncio.gather(*watchers)
    return stalls


async def capture_cost(sizes: Any, work: Path, redis_url: str, prefix: str) -> dict[str, Any]:
    """Section 2: add_message with the writer running vs stopped, alternating rounds; then the lag."""
    settings = bench_settings(work, memory={"backend": "redis", "redis_url": redis_url, "key_prefix": prefix})
    spool = host_spool(settings)
    writer = _start_writer(work / "voicelog-test.yaml", work / "writer.log")
    client = redis.Redis.from_url(redis_url)
    lags: list[float] = []
    try:
        await asyncio.sleep(1.0)  # the writer process is up and has caught up
        measured = await _alternating_rounds(settings, spool, writer.pid, sizes)
        # The lag is watched in a round of its own: polling Redis from this process would weigh
        # on the very add_message calls being timed.
        os.kill(writer.pid, signal.SIGCONT)
        await _capture_round(settings, spool, sizes.memory_capture_turns, 20, 999, (client, prefix), lags)
    finally:
        os.kill(writer.pid, signal.SIGCONT)
        writer.terminate()
        writer.wait(30)
        client.close()
        spool.close()
    return {**measured, "redis_lag_ms": summary(lags, digits=1)}


async def _alternating_rounds(settings: Settings, spool: Spool, writer_pid: int, sizes: Any) -> dict[str, Any]:
    samples: dict[str, list[float]] = {"off": [], "on": []}
    round_p99: dict[str, list[float]] = {"off": [], "on": []}
    writer_cpu_s = on_s = 0.0
    for round_no in range(sizes.memory_rounds * 2):
        mode = "on" if round_no % 2 else "off"
        os.kill(writer_pid, signal.SIGCONT if mode == "on" else signal.SIGSTOP)
        cpu, started = cpu_seconds(writer_pid), time.perf_counter()
        stalls = await _capture_round(settings, spool, sizes.memory_capture_turns, 20, round_no, None, [])
        if mode == "on":
            writer_cpu_s += cpu_seconds(writer_pid) - cpu
            on_s += time.perf_counter() - started
        samples[mode] += stalls
        round_p99[mode].append(summary(stalls)["p99"])
    off, on = summary(samples["off"], digits=1), summary(samples["on"], digits=1)
    return {"turns_per_mode": len(samples["on"]), "rounds_per_mode": sizes.memory_rounds, "off_us": off,
            "on_us": on, "p99_on_vs_off": ratio(on["p99"], off["p99"]), "p50_on_vs_off": ratio(on["p50"], off["p50"]),
            "round_p99_us": round_p99,
            # The median round's p99, each mode: rounds alternate, so a busy spell on the shared
            # machine lands in one round of one mode instead of deciding the pooled p99.
            "median_round_p99_on_vs_off": ratio(statistics.median(round_p99["on"]),
                                                statistics.median(round_p99["off"])),
            "writer_cpu_share": round(writer_cpu_s / on_s, 4) if on_s else None}


def run(sizes: Any, work: Path) -> dict[str, Any]:
    """Both parts, against the machine's Redis under a prefix of the run's own (removed afterwards)."""
    url, prefix = ensure_redis_running(), unique_prefix()
    try:
        preload = asyncio.run(preload_latency(sizes, work / "preload", url, prefix))
        drop_prefix(url, prefix)
        capture = asyncio.run(capture_cost(sizes, work / "capture", url, prefix))
    finally:
        drop_prefix(url, prefix)
    return {"preload": preload, "capture": capture}


async def _writer_process(config: Path) -> None:
    """The host's writer as the daemon runs it, until SIGTERM."""
    settings = load_settings(config, environ={})
    production_logging(config.with_suffix(".log"))
    spool = host_spool(settings)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    writer = open_memory_writer(settings, spool)
    await writer.run(stop)
    print(json.dumps({"pushed": writer.stats.pushed, "failures": writer.stats.failures}), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.memory", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--writer", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.writer:
        asyncio.run(_writer_process(args.writer))
        return
    import tempfile

    from bench.sizes import FULL, QUICK

    with tempfile.TemporaryDirectory(prefix="voicelog-bench-memory-") as work:
        production_logging(Path(work) / "voicelog.log")
        print(json.dumps(run(QUICK if args.quick else FULL, Path(work)), indent=1))


if __name__ == "__main__":
    main()
