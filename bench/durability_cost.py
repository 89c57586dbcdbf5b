"""What durability costs: ChatHistoryService.add_message latency at each durability level.

``process`` is SQLite synchronous=NORMAL (a committed turn survives any process dying);
``power`` is synchronous=FULL (it also survives power loss: the WAL is fsynced per commit).
Each level gets a fresh spool on the same filesystem, a warm-up, then ``--turns`` timed
add_message calls (each one a durable commit), interleaved in rounds so machine noise hits
both levels alike. Prints p50/p90/p99/max per level, in microseconds.

Run: .venv/bin/python -m bench.durability_cost [--turns 4000] [--rounds 4] [--dir PATH]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from voicelog.services.capture import ChatHistoryService
from voicelog.services.config import ChatHistorySettings, Durability, LoggingSettings
from voicelog.services.domain import ChatType, resolve_identity
from voicelog.services.ops import configure_logging
from voicelog.services.sealing import ContentCipher, generate_key
from voicelog.services.spool import open_spool

# "process+enc" is the default durability with content encryption on (chat_history.encrypt_content).
LEVELS = ("process", "process+enc", "power")
TEXT = "Can you tell me a story about a dragon 🐉 who learned to breathe bubbles?"


def timed_turns(directory: Path, level: str, turns: int, round_index: int) -> list[float]:
    """Microseconds per add_message for ``turns`` turns into a fresh spool at ``level``."""
    spelled, _, encrypted = level.partition("+")
    durability = Durability(spelled)
    cipher = ContentCipher([generate_key()]) if encrypted else None
    spool = open_spool(directory / f"{durability}{encrypted}-{round_index}.db", durability=durability, cipher=cipher)
    service = ChatHistoryService(spool, resolve_identity(f"bench-{level}-{round_index}_6825ddba3978"),
                                 ChatHistorySettings())
    for _ in range(50):  # warm-up: page cache, statement cache, WAL file grown
        service.add_message(ChatType.USER, TEXT)
    samples = []
    for i in range(turns):
        started = time.perf_counter_ns()
        service.add_message(ChatType.USER if i % 2 else ChatType.AGENT, TEXT)
        samples.append((time.perf_counter_ns() - started) / 1000)
    assert service.unstored == 0, "a write was held: the measurement is not of durable commits"
    spool.close()
    return samples


def percentile(ordered: list[float], p: float) -> float:
    """The p-th percentile (nearest rank) of sorted samples."""
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered)) - 1))]


def describe(directory: Path) -> str:
    """The filesystem and device the spool was measured on."""
    done = subprocess.run(["df", "-T", str(directory)], capture_output=True, text=True, check=False)
    return done.stdout.strip().splitlines()[-1] if done.returncode == 0 else str(directory)


def main(argv: list[str] | None = None) -> int:
    """Measure both levels and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=4000, help="timed turns per level per round")
    parser.add_argument("--rounds", type=int, default=4, help="rounds, alternating the levels")
    parser.add_argument("--dir", type=Path, default=None, help="where to put the spools (default: a temp dir)")
    args = parser.parse_args(argv)
    configure_logging(LoggingSettings(level="WARNING"))
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        directory = Path(tmp)
        samples: dict[str, list[float]] = {level: [] for level in LEVELS}
        for round_index in range(args.rounds):
            for level in LEVELS if round_index % 2 == 0 else reversed(LEVELS):
                samples[level] += timed_turns(directory, level, args.turns, round_index)
        print(f"add_message latency, {args.rounds} x {args.turns} turns per level, "
              f"{os.cpu_count()} CPUs, on: {describe(directory)}")
        print(f"{'durability':<12} {'p50 us':>8} {'p90 us':>8} {'p99 us':>8} {'max us':>9} {'mean us':>8}")
        for level, values in samples.items():
            ordered = sorted(values)
            print(f"{level:<12} {percentile(ordered, 50):>8.1f} {percentile(ordered, 90):>8.1f} "
                  f"{percentile(ordered, 99):>8.1f} {ordered[-1]:>9.1f} {statistics.fmean(values):>8.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
