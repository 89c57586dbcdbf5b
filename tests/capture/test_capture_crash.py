"""Captured turns survive SIGKILL of the capturing process, and processes share the spool."""

import random
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.kits import REPO
from voicelog.services.spool import open_spool


def start_worker(spool: Path, session: str, start: int, count: int, durability: str = "process"):
    return subprocess.Popen([sys.executable, "-m", "tests.kits.capture_worker", str(spool), session,
                             str(start), str(count), durability],
                            cwd=REPO, stdout=subprocess.PIPE, text=True)


def read_acks(process, stop_after: int | None) -> list[int]:
    """Every ack the worker printed, including those still in the pipe when it was killed."""
    acks = []
    for line in process.stdout:
        match = re.match(r"ack (\d+)", line)
        assert match, f"worker reported {line!r}"
        acks.append(int(match.group(1)))
        if stop_after is not None and len(acks) == stop_after:
            process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    return acks


def stored_numbers(spool_path: Path, session: str) -> list[int]:
    spool = open_spool(spool_path)
    try:
        return [int(re.match(r"turn (\d+)", t.content).group(1)) for t in spool.turns(session)]
    finally:
        spool.close()


@pytest.mark.parametrize("durability", ["process", "power"])
def test_sigkill_loses_no_acknowledged_turn(tmp_path, durability):
    """Every turn add_message returned for is in the spool after kill -9, in order, once."""
    spool = tmp_path / "spool.db"
    rng = random.Random(20261122)
    next_number, acked = 1, []
    for cycle in range(8):
        session = f"room-{cycle}_6825ddba3978"
        worker = start_worker(spool, session, next_number, 10_000, durability)
        acks = read_acks(worker, stop_after=rng.randint(1, 300))
        assert worker.returncode == -signal.SIGKILL
        stored = stored_numbers(spool, session)
        assert stored[: len(acks)] == acks, "an acknowledged turn is missing or out of order"
        assert len(stored) <= len(acks) + 1, "more than the one in-flight turn appeared"
        acked += acks
        next_number += 10_000


def test_two_job_processes_capture_concurrently_without_damage(tmp_path):
    """Two processes writing different sessions into one spool both keep every turn in order."""
    spool = tmp_path / "spool.db"
    workers = [start_worker(spool, f"room-{i}_6825ddba397{i}", i * 100_000, 1500) for i in (1, 2)]
    acks = [read_acks(w, stop_after=None) for w in workers]
    assert [w.returncode for w in workers] == [0, 0]
    for i, worker_acks in zip((1, 2), acks):
        assert stored_numbers(spool, f"room-{i}_6825ddba397{i}") == list(range(i * 100_000, i * 100_000 + 1500))
        assert worker_acks == list(range(i * 100_000, i * 100_000 + 1500))
