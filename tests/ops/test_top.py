"""`voicelog top`: the box at a glance, from the spool or from the running daemon, live in a real terminal."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import time

from tests.kits import REPO
from tests.kits.box import make_box, mixed_session
from tests.kits.ops import daemon_config, free_port, running_daemon, wait_until_serving
from tests.kits.settings import config_file
from tests.kits.terminal import terminal, voicelog_command
from voicelog.cli.app import main


def top_json(config) -> dict:
    done = subprocess.run(voicelog_command("--config", str(config), "top", "--json", "--interval", "0.3"),
                          cwd=REPO, capture_output=True, text=True, timeout=60, check=True)
    return json.loads(done.stdout)


async def test_top_once_shows_pending_parked_and_dead_letter_counts_of_the_box(tmp_path, reference_manager, capsys):
    """On a box with 2 pending, 2 parked (1 device) and 1 dead-letter turn, one frame shows exactly that."""
    box = make_box(tmp_path, reference_manager, http={"listen": f"127.0.0.1:{free_port()}"})
    await mixed_session(box, reference_manager)
    box.spool.close()
    code = await asyncio.to_thread(main, ["--config", str(box.config), "top", "--once", "--interval", "0.2"])
    out = capsys.readouterr().out
    assert code == 0
    assert "backlog         open 0  pending 2  parked 2 (1 device)  dead-letter 1" in out
    assert "captured        0.0 turns/s  (total 7)" in out and "delivered       0.0 turns/s  (total 2)" in out
    assert f"read from spool {tmp_path / 'backups' / 'spool.db'} (no daemon answered)" in out
    assert re.search(r"Manager\s+ok, \d+ ms per request", out), out
    assert re.search(r"spool\s+0\.\d MiB of 1024\.0 MiB cap", out) and "memory          local (this host's spool)" in out
    frame = await asyncio.to_thread(top_json, box.config)
    assert frame["backlog"] == {"open": 0, "pending": 2, "parked": 2, "dead_letter": 1}
    assert frame["parked_devices"] == 1 and frame["manager"] == "ok" and frame["source"] == "spool"


async def test_top_reads_the_running_daemons_figures_and_the_managers_state(tmp_path, reference_manager):
    """With `ship` running, top reads its /metrics and /readyz: same backlog, the Manager refusing our secret."""
    box = make_box(tmp_path, reference_manager)
    await mixed_session(box, reference_manager)
    box.spool.close()
    config = daemon_config(tmp_path, reference_manager)
    reference_manager.secret = "the-managers-rotated-secret"
    async with running_daemon(config) as daemon:
        await wait_until_serving(daemon)
        frame = await asyncio.to_thread(top_json, config)
        assert frame["source"] == "daemon" and frame["where"] == daemon.base_url
        assert frame["manager"] == "secret refused" and "code 401" in frame["manager_reason"]
        backlog = frame["backlog"]  # a parked turn retried into the 401 is pending again: same four
        assert backlog["dead_letter"] == 1 and backlog["pending"] + backlog["parked"] == 4
        assert frame["memory"].startswith("local (this host's spool)")
        assert await daemon.stop() == 0


async def test_the_live_view_updates_in_a_terminal_while_simulate_runs_beside_it(tmp_path, reference_manager):
    """In an 100x30 tmux pane, top's numbers grow as a simulation captures and delivers; Ctrl-C ends it with 0."""
    for i in range(4):
        await reference_manager.bind_device(f"02:00:00:00:00:{i:02x}")
    config = config_file(tmp_path, manager=reference_manager, http={"listen": f"127.0.0.1:{free_port()}"})
    with terminal(voicelog_command("--config", str(config), "top", "--interval", "0.5"), width=100, height=30) as pane:
        before = pane.wait_for("Ctrl-C quits")
        assert "captured        - turns/s  (total 0)" in before or "(total 0)" in before
        simulate = await asyncio.create_subprocess_exec(
            *voicelog_command("--config", str(config), "simulate", "--sessions", "4", "--turns", "30"),
            cwd=REPO, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
        seen_rates, seen_totals = set(), set()
        deadline = time.monotonic() + 120
        while simulate.returncode is None and time.monotonic() < deadline:
            screen = pane.text()
            seen_totals.add(re.search(r"captured .*\(total ([\d,]+)\)", screen).group(1))
            rate = re.search(r"captured\s+([\d.]+) turns/s", screen)
            if rate and float(rate.group(1)) > 0:
                seen_rates.add(rate.group(1))
            with_timeout = asyncio.wait_for(simulate.wait(), 0.4)
            try:
                await with_timeout
            except TimeoutError:
                pass
        out = (await simulate.communicate())[0].decode()
        assert simulate.returncode == 0, out
        # A Manager probe slowed by the load may log a warning: it prints above the view, which stays whole.
        final = pane.wait_for(lambda screen: re.search(r"delivered .*\(total 240\)", screen)
                              and "Manager         ok" in screen, timeout=30)
        assert len(seen_totals) >= 3, f"the view should have changed while turns were captured: {seen_totals}"
        assert seen_rates, "a capture rate above 0 turns/s while simulate ran"
        assert "(total 240)" in final and "pending 0" in final and "Ctrl-C quits" in final
        assert len(final.splitlines()) < 30, final
        pane.press("C-c")
        pane.wait_for("[exit 0]", timeout=20)


async def test_top_shows_the_memory_store_and_says_when_its_redis_is_down(tmp_path, reference_manager, capsys):
    """With memory kept in a Redis nobody answers at, top's memory line says DOWN and names the URL."""
    box = make_box(tmp_path, reference_manager,
                   memory={"backend": "redis", "redis_url": f"redis://127.0.0.1:{free_port()}/0"})
    box.spool.close()
    code = await asyncio.to_thread(main, ["--config", str(box.config), "top", "--once", "--interval", "0.2"])
    out = capsys.readouterr().out
    assert code == 0
    assert re.search(r"memory\s+redis redis://127\.0\.0\.1:\d+/0 DOWN \(", out), out


def test_a_warning_while_the_view_is_live_prints_above_it_and_the_view_stays_whole(tmp_path):
    """With a Manager nobody answers at, the probe's warning shows above the view; every line of the view stays."""
    config = config_file(tmp_path, manager_api={"url": f"http://127.0.0.1:{free_port()}/xiaozhi",
                                                "secret": "a-long-enough-secret", "timeout": 1})
    with terminal(voicelog_command("--config", str(config), "top", "--interval", "0.3"), width=100, height=30) as pane:
        # The first probe runs before the view starts; the second (5 s later) while it is live.
        screen = pane.wait_for(lambda text: text.count("[warning") >= 2 and "Ctrl-C quits" in text, timeout=30)
        assert screen.rindex("[warning") < screen.index("voicelog top"), screen
        for line in ("captured", "delivered", "backlog", "Manager         down", "spool"):
            assert line in screen, screen
        pane.press("C-c")
        pane.wait_for("[exit 0]", timeout=20)
