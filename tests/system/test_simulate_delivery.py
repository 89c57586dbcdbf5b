"""`voicelog simulate` with delivery, as its own process: honest summaries, prompt stops, no stray tasks."""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

from tests.kits import REPO
from tests.kits.settings import config_file

RUNS_WITH_50_SESSIONS = 3
# A low threshold makes the garbage collector run often, so a task nobody owns is collected
# (and reported) within the run that leaked it, rather than in roughly 1 run in 13.
EAGER_GC = "import gc, sys; gc.set_threshold(50, 1, 1); from voicelog.cli.app import main; sys.exit(main())"


async def simulate(config: Path, *args: str, env: dict[str, str] | None = None,
                   eager_gc: bool = False) -> tuple[int, str, float]:
    """Run `voicelog simulate` as its own process; exit code, all it printed, seconds taken."""
    started = time.monotonic()
    head = ["-c", EAGER_GC] if eager_gc else ["main.py"]
    process = await asyncio.create_subprocess_exec(
        sys.executable, *head, "--config", str(config), "simulate", *args, cwd=REPO,
        env={"PATH": "/usr/bin:/bin", **(env or {})}, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT)
    out, _ = await asyncio.wait_for(process.communicate(), 300)
    return process.returncode, out.decode(), time.monotonic() - started


def macs(count: int) -> list[str]:
    """The MACs `simulate` gives its generated devices."""
    return [f"02:00:00:00:{i >> 8 & 255:02x}:{i & 255:02x}" for i in range(count)]


async def test_a_refused_secret_stops_delivery_at_once_and_the_summary_says_so(tmp_path, reference_manager):
    """With a wrong secret simulate does not wait out its 20 s drain, and its summary names the refusal."""
    config = config_file(tmp_path, manager=reference_manager, shipper={"drain_timeout": 20})
    code, out, seconds = await simulate(config, "--sessions", "2", "--turns", "2",
                                        env={"MANAGER_API_SECRET": "not-the-managers-secret"})
    assert code == 0, out
    assert seconds < 15, f"took {seconds:.1f} s: the drain should end at the refusal"
    assert "delivery stopped: the Manager refuses our secret (server secret refused (code 401)" in out
    assert "delivered this run's 0 turns" in out and "not delivered: 8 pending" in out


async def test_older_backlog_delivered_by_the_run_is_counted_apart(tmp_path, reference_manager):
    """Turns captured before the run and delivered during it are named as older backlog, not as the run's."""
    for mac in macs(2):
        await reference_manager.bind_device(mac)
    config = config_file(tmp_path, manager=reference_manager)
    code, out, _ = await simulate(config, "--sessions", "2", "--turns", "3", "--no-deliver")
    assert code == 0 and "delivery: off" in out, out
    code, out, _ = await simulate(config, "--sessions", "1", "--turns", "2")
    assert code == 0, out
    assert f"delivered this run's 4 turns to {reference_manager.url}" in out
    assert "also delivered 12 turns captured before this run (older backlog in the spool)" in out
    assert len(await reference_manager.rows()) == 16


async def test_fifty_sessions_with_delivery_leave_no_task_pending(tmp_path, reference_manager):
    """Several runs of 50 concurrent sessions with delivery: every turn arrives, no task is destroyed pending."""
    for mac in macs(50):
        await reference_manager.bind_device(mac)
    config = config_file(tmp_path, manager=reference_manager, logging={"level": "WARNING", "format": "json"})
    for run in range(RUNS_WITH_50_SESSIONS):
        code, out, _ = await simulate(config, "--sessions", "50", "--turns", "2", eager_gc=True)
        assert code == 0, out[-3000:]
        assert "Task was destroyed but it is pending" not in out, f"run {run + 1}:\n{out[-5000:]}"
        assert "delivered this run's 200 turns" in out, out[-2000:]
    assert len(await reference_manager.rows()) == RUNS_WITH_50_SESSIONS * 200
