"""`voicelog ship --once` ends in bounded time whatever the Manager does, and says why in words.

Each test runs the real command as its own process against the reference Manager over
MariaDB, as an operator would, and reads what it printed and its exit code.
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

from tests.kits import REPO
from tests.kits.delivery import capture_numbered
from tests.kits.settings import config_file
from voicelog.agent.wiring import host_spool
from voicelog.services.config import load_settings

MAC = "68:25:dd:ba:39:78"


async def ship_once(config: Path, *extra: str, env: dict[str, str] | None = None,
                    timeout: float = 120) -> tuple[int, str, float]:
    """Run `voicelog ship --once`; its exit code, everything it printed, and how long it took."""
    started = time.monotonic()
    process = await asyncio.create_subprocess_exec(
        sys.executable, "main.py", "--config", str(config), "ship", "--once", *extra, cwd=REPO,
        env={"PATH": "/usr/bin:/bin", **(env or {})}, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT)
    out, _ = await asyncio.wait_for(process.communicate(), timeout)
    return process.returncode, out.decode(), time.monotonic() - started


def box_with_turns(tmp_path: Path, manager, count: int = 4, **sections) -> tuple[Path, str]:
    """A config pointing at ``manager`` and one ended session of ``count`` captured turns."""
    config = config_file(tmp_path, manager=manager, **sections)
    settings = load_settings(config, environ={})
    spool = host_spool(settings)
    try:
        session_id = capture_numbered(settings, spool, MAC, count)
    finally:
        spool.close()
    return config, session_id


def statuses(config: Path, session_id: str) -> dict[str, int]:
    spool = host_spool(load_settings(config, environ={}))
    try:
        return spool.status_counts(session_id)
    finally:
        spool.close()


async def test_a_refused_secret_ends_the_run_at_once_with_exit_4_and_keeps_every_turn(tmp_path, reference_manager):
    """MANAGER_API_SECRET wrong: exit 4 within seconds, saying the secret is refused; turns stay pending."""
    await reference_manager.bind_device(MAC)
    config, session_id = box_with_turns(tmp_path, reference_manager)
    code, out, seconds = await ship_once(config, env={"MANAGER_API_SECRET": "not-the-managers-secret"})
    assert code == 4, out
    assert seconds < 20, f"took {seconds:.1f} s"
    assert "stopped early: the Manager refuses our secret (server secret refused (code 401)" in out
    assert "set MANAGER_API_SECRET" in out and "left undelivered: 4 pending" in out
    assert "not-the-managers-secret" not in out
    assert statuses(config, session_id) == {"pending": 4}
    assert await reference_manager.rows() == []


async def test_a_manager_that_is_down_ends_the_run_with_exit_5_within_the_deadline(tmp_path, reference_manager):
    """No Manager listening: exit 5 well before the deadline, naming the transport error."""
    config, session_id = box_with_turns(tmp_path, reference_manager)
    await reference_manager.go_down()
    code, out, seconds = await ship_once(config, "--deadline", "30")
    assert code == 5, out
    assert seconds < 30, f"took {seconds:.1f} s"
    assert "stopped early: the Manager is unreachable (transport error" in out
    assert statuses(config, session_id) == {"pending": 4}


async def test_a_wrong_context_path_ends_the_run_with_exit_5_naming_the_url_once(tmp_path, reference_manager):
    """manager_api.url with /toy against a /xiaozhi Manager: exit 5, one sentence naming the URL and the 404."""
    await reference_manager.bind_device(MAC)
    wrong = reference_manager.url.replace("/xiaozhi", "/toy")
    config, session_id = box_with_turns(tmp_path, reference_manager, manager_api={"url": wrong})
    code, out, _ = await ship_once(config)
    assert code == 5, out
    assert f"stopped early: the endpoint does not answer as the Manager ({wrong}: HTTP 404" in out
    assert out.count("does not answer as the Manager") == 1, out
    assert "check manager_api.url (the context path)" in out and "nothing was lost" in out
    assert statuses(config, session_id) == {"pending": 4}
    assert await reference_manager.rows() == []


async def test_a_manager_slower_than_the_timeout_ends_the_run_by_the_deadline(tmp_path, reference_manager):
    """Answers slower than manager_api.timeout: the run stops at --deadline (+ one request), exit 5."""
    await reference_manager.bind_device(MAC)
    config, _ = box_with_turns(tmp_path, reference_manager, manager_api={"timeout": 1})
    reference_manager.delay_seconds = 5
    code, out, seconds = await ship_once(config, "--deadline", "3", "--max-attempts", "100")
    assert code == 5, out
    # Process start (about 2 s here), the deadline, one request in flight (1 s), closing.
    assert seconds < 3 + 1 + 6, f"took {seconds:.1f} s"
    assert "stopped early: the time ran out (3 s passed)" in out and "left undelivered: 4 pending" in out


async def test_the_summary_counts_turns_and_rows_in_words_and_says_where_the_data_is(tmp_path, reference_manager):
    """A turn split into rows is counted once as a turn: "delivered 4 turns as 5 rows", no Python dict."""
    await reference_manager.bind_device(MAC)
    config = config_file(tmp_path, manager=reference_manager, manager_api={"max_content_chars": 100})
    settings = load_settings(config, environ={})
    spool = host_spool(settings)
    try:
        capture_numbered(settings, spool, MAC, 4, content=lambda i: "word " * 30 if i == 2 else f"turn {i}")
    finally:
        spool.close()
    code, out, _ = await ship_once(config)
    assert code == 0, out
    assert f"delivered 4 turns as 5 rows to {reference_manager.url}" in out
    assert "nothing undelivered is left in the spool" in out
    assert f"data: spool {tmp_path / 'backups' / 'spool.db'}, backups {tmp_path / 'backups'}/" in out
    assert "{" not in out.replace("(config:", ""), "words, not a dict"
    assert len(await reference_manager.rows()) == 5


async def test_parked_turns_left_exit_1_and_are_named_with_what_to_do(tmp_path, reference_manager):
    """An unbound device: its turns are parked, the run exits 1 and says why and where to look."""
    config, session_id = box_with_turns(tmp_path, reference_manager, count=2)
    code, out, _ = await ship_once(config)
    assert code == 1, out
    assert "this run parked 2 and dead-lettered 0" in out
    assert "left undelivered: 2 parked" in out and "device not bound to an agent" in out
    assert statuses(config, session_id) == {"parked": 2}
