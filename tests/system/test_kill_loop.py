"""kill -9 at random points, many times: no captured turn is lost, none is reordered.

A numbered turn generator (a capture process) and the shipper (``main.py ship``) are both
SIGKILLed at random moments every cycle while the reference Manager injects 5xx, code-500
envelopes, 429s, resets after commit and slowness. After a final clean ``ship --once`` every
number is in MariaDB, in order per session; duplicates only where a request was in flight
(at most one per session per shipper kill, plus one per reset) and none at all when the
Manager honours Idempotency-Key. VOICELOG_KILL_CYCLES and VOICELOG_KILL_SEED change the run.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.kits import REPO
from tests.kits.faults import room, ship_config
from voicelog.cli.app import main
from voicelog.services.spool import open_spool

CYCLES = int(os.environ.get("VOICELOG_KILL_CYCLES", "100"))
SEED = int(os.environ.get("VOICELOG_KILL_SEED", "20261122"))
MACS = ("68:25:dd:ba:39:71", "68:25:dd:ba:39:72", "68:25:dd:ba:39:73")


@dataclass
class LoopStats:
    """What the loop did, printed at the end for the record."""

    cycles: int = 0
    shipper_kills: int = 0
    generator_kills: int = 0
    acks: dict[int, list[int]] = field(default_factory=dict)
    faults: dict[str, int] = field(default_factory=dict)


def arm_faults(manager, rng: random.Random, stats: LoopStats) -> None:
    """Arm a random mix of Manager faults for the next cycle."""
    manager.clear_faults()
    choices = {"http_503": lambda: manager.fail_http(503, rng.randint(1, 3)),
               "code500": lambda: manager.fail_code500(rng.randint(1, 3)),
               "reset_after_commit": lambda: manager.reset_after_commit(rng.randint(1, 2)),
               "rate_limit": lambda: manager.rate_limit(1, retry_after_seconds=0.1)}
    for name, arm in choices.items():
        if rng.random() < (0.1 if name == "rate_limit" else 0.4):
            arm()
            stats.faults[name] = stats.faults.get(name, 0) + 1
    manager.delay_seconds = rng.choice((0.0, 0.0, 0.005, 0.03))


async def kill_after(process: asyncio.subprocess.Process, seconds: float) -> bool:
    """SIGKILL the process after ``seconds``; False if it had already exited by itself."""
    try:
        await asyncio.wait_for(process.wait(), timeout=seconds)
        return False
    except TimeoutError:
        process.send_signal(signal.SIGKILL)
        await process.wait()
        return True


async def one_cycle(config: Path, spool: Path, sessions: list[str], rng: random.Random,
                    stats: LoopStats, log: Path) -> None:
    """Start a generator and a shipper, kill both at random points, record the acks."""
    errors = await asyncio.to_thread(open, log, "ab")
    with errors:
        generator = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "tests.kits.faults", "generate", str(spool), *sessions,
            cwd=REPO, stdout=asyncio.subprocess.PIPE, stderr=errors)
        shipper = await asyncio.create_subprocess_exec(
            sys.executable, "main.py", "--config", str(config), "ship",
            cwd=REPO, stdout=errors, stderr=errors)
        killed = await asyncio.gather(kill_after(generator, rng.uniform(0.05, 0.7)),
                                      kill_after(shipper, rng.uniform(0.05, 1.0)))
    output = (await generator.stdout.read()).decode()
    assert all(killed), f"a process exited by itself: {log.read_text()[-3000:]}"
    stats.generator_kills += 1
    stats.shipper_kills += 1
    for line in output.splitlines():
        _, index, number = line.split()
        stats.acks.setdefault(int(index), []).append(int(number))


def stored_numbers(spool_path: Path, session_id: str) -> list[int]:
    spool = open_spool(spool_path)
    try:
        turns = spool.turns(session_id)
        assert all(t.status.value == "delivered" for t in turns), {t.status.value for t in turns}
        return [int(t.content.split()[1]) for t in turns]
    finally:
        spool.close()


@pytest.mark.slow
@pytest.mark.parametrize("honour", [False, True], ids=["plain_manager", "idempotent_manager"])
async def test_kill_9_loop_loses_and_reorders_nothing(tmp_path, reference_manager, honour):
    """Random SIGKILLs of capture and shipper under Manager faults: every number once, in order."""
    cycles = CYCLES if not honour else max(20, CYCLES // 5)
    rng = random.Random(SEED + honour)
    print(f"\nkill loop: seed {SEED + honour}, {cycles} cycles, honour_idempotency={honour}")
    reference_manager.honour_idempotency = honour
    for mac in MACS:
        await reference_manager.bind_device(mac)
    config = ship_config(tmp_path, reference_manager)
    spool = tmp_path / "backups" / "spool.db"
    sessions = [room(n, mac.replace(":", "")) for n, mac in enumerate(MACS)]
    stats, started = LoopStats(), time.monotonic()
    for _ in range(cycles):
        arm_faults(reference_manager, rng, stats)
        await one_cycle(config, spool, sessions, rng, stats, tmp_path / "processes.log")
        stats.cycles += 1
    reference_manager.clear_faults()
    assert await asyncio.to_thread(main, ["--config", str(config), "ship", "--once"]) == 0
    resets = reference_manager.requests["reset"]
    duplicates = 0
    for index, session_id in enumerate(sessions):
        stored = stored_numbers(spool, session_id)
        assert stored == list(range(1, len(stored) + 1)), "the spool has a gap or a reorder"
        assert set(stats.acks.get(index, [])) <= set(stored), "an acknowledged turn is missing"
        rows = [int(r["content"].split()[1]) for r in await reference_manager.rows(session_id)]
        assert sorted(set(rows)) == stored, "a stored turn never reached MariaDB"
        assert rows == sorted(rows), "MariaDB's created_at order differs from capture order"
        duplicates += len(rows) - len(set(rows))
    took = time.monotonic() - started
    print(f"kill loop: {stats.cycles} cycles in {took:.1f}s, turns "
          f"{sum(len(stored_numbers(spool, s)) for s in sessions)}, duplicates {duplicates}, "
          f"resets after commit {resets}, faults armed {stats.faults}")
    if honour:
        assert duplicates == 0
    else:
        assert duplicates <= stats.shipper_kills * len(sessions) + resets
    assert stats.cycles == cycles >= 20
