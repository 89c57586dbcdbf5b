"""`backups replay` sends what is missing to the reference Manager, once, in order, from any box."""

from __future__ import annotations

import asyncio
import shutil
import signal
import sys

import pytest

from tests.kits import REPO
from tests.kits.box import MAC, OTHER_MAC, capture, cli, make_box, mixed_session, ship
from tests.kits.delivery import contents, eventually, running_shipper
from voicelog.services.domain import ShipperLock


async def replay(box, *args: str) -> int:
    """Run `backups replay ARGS` in-process, on a worker thread so the Manager keeps serving."""
    return await asyncio.to_thread(cli, box, "replay", *args)


async def test_dead_letters_replayed_after_fixing_the_cause_arrive_in_conversation_order(
        tmp_path, reference_manager, capsys):
    """Once the device is bound again, `--status dead-letter` delivers every waiting turn, in order."""
    box = make_box(tmp_path, reference_manager)
    session_id = await mixed_session(box, reference_manager)
    await reference_manager.bind_device(MAC)  # the cause is fixed
    capsys.readouterr()

    assert await replay(box, "--status", "dead-letter") == 0
    out = capsys.readouterr().out
    assert "delivered 1 of 1" in out
    rows = await reference_manager.rows(session_id)
    # The session's parked and pending turns went too: order within a session is never broken.
    assert contents(rows) == [f"turn {i}" for i in range(1, 8)]
    assert box.statuses(session_id) == {"delivered": 7}
    assert '"status": "delivered"' in box.backup_of(session_id).read_text()


async def test_dry_run_shows_the_turns_and_sends_nothing(tmp_path, reference_manager, capsys):
    """`--dry-run` names every turn it would send; the Manager gets no request and the spool is unchanged."""
    box = make_box(tmp_path, reference_manager)
    session_id = await mixed_session(box, reference_manager)
    await reference_manager.bind_device(MAC)
    before, received = box.statuses(session_id), reference_manager.requests["received"]
    capsys.readouterr()

    assert await replay(box, "--session", session_id, "--dry-run") == 0
    out = capsys.readouterr().out
    assert "would send 5 turn(s) of 1 session(s); nothing sent" in out
    assert all(f"#{seq} " in out for seq in (1, 4, 5, 6, 7)) and "#2 " not in out
    assert reference_manager.requests["received"] == received
    assert box.statuses(session_id) == before


async def test_replay_interrupted_half_way_and_run_again_leaves_no_duplicate_rows(tmp_path, reference_manager):
    """Ctrl-C finishes the turn in flight and exits 1; the re-run sends only the rest."""
    await reference_manager.bind_device(MAC)
    box = make_box(tmp_path, reference_manager)
    session_id = await capture(box, [f"turn {i}" for i in range(1, 41)])
    reference_manager.delay_seconds = 0.05  # slow enough to interrupt half-way, well within the timeout
    process = await asyncio.create_subprocess_exec(
        sys.executable, "main.py", "--config", str(box.config), "backups", "replay", "--session", session_id,
        cwd=REPO, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)

    async def some_rows() -> bool:
        return len(await reference_manager.rows(session_id)) >= 8

    await eventually(some_rows, what="replay under way")
    process.send_signal(signal.SIGINT)
    stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=20)
    assert process.returncode == 1, stderr.decode()[-2000:]
    assert "stopped early: interrupted" in stdout.decode()
    sent_before = len(await reference_manager.rows(session_id))
    assert sent_before < 40

    reference_manager.delay_seconds = 0
    assert await replay(box, "--session", session_id) == 0
    assert contents(await reference_manager.rows(session_id)) == [f"turn {i}" for i in range(1, 41)]
    assert reference_manager.requests["stored"] == 40


async def test_backup_copied_from_another_box_is_imported_and_delivered(tmp_path, reference_manager, capsys):
    """A backup file from another box lands in this spool with its ids and statuses, and reaches the Manager."""
    await reference_manager.bind_device(MAC)
    other = make_box(tmp_path / "box-a", reference_manager)
    session_id = await capture(other, ["hello from box a", "hi!", "bye"])
    copied = tmp_path / "usb-stick" / other.backup_of(session_id).name
    copied.parent.mkdir()
    shutil.copy(other.backup_of(session_id), copied)
    shutil.rmtree(tmp_path / "box-a")  # the other box is gone; only the copy is left
    here = make_box(tmp_path / "box-b", reference_manager)
    capsys.readouterr()

    assert await replay(here, str(copied)) == 0
    assert "imported 3 turn(s)" in capsys.readouterr().out
    assert contents(await reference_manager.rows(session_id)) == ["hello from box a", "hi!", "bye"]
    assert [(t.seq, t.status.value) for t in here.spool.turns(session_id)] == [
        (1, "delivered"), (2, "delivered"), (3, "delivered")]
    assert here.spool.session(session_id).mac == MAC
    assert await replay(here, str(copied)) == 0  # running it again sends nothing twice
    assert len(await reference_manager.rows(session_id)) == 3
    assert here.backup_of(session_id).exists()


async def test_session_captured_without_a_mac_is_delivered_with_the_mac_support_gives(
        tmp_path, reference_manager, capsys):
    """Turns parked for want of a MAC go out under `--mac`; the session records the MAC from replay."""
    await reference_manager.bind_device(MAC)
    box = make_box(tmp_path, reference_manager)
    session_id = await capture(box, ["who am I?", "a mystery toy"], mac=None, n=3)
    await ship(box)
    assert box.statuses(session_id) == {"parked": 2}
    capsys.readouterr()

    assert await replay(box, "--session", session_id, "--mac", MAC) == 0
    rows = await reference_manager.rows(session_id)
    assert contents(rows) == ["who am I?", "a mystery toy"]
    assert {r["mac_address"] for r in rows} == {MAC}
    session = box.spool.session(session_id)
    assert (session.mac, session.mac_valid, session.mac_source) == (MAC, True, "replay")


async def test_mac_of_a_session_with_a_known_device_is_not_overridden(tmp_path, reference_manager, capsys):
    """`--mac` never re-attributes a session that has a valid MAC: exit 2 and nothing changes."""
    box = make_box(tmp_path, reference_manager)
    session_id = await capture(box, ["mine"], mac=MAC)
    capsys.readouterr()

    assert await replay(box, "--session", session_id, "--mac", OTHER_MAC) == 2
    assert f"belongs to {MAC}" in capsys.readouterr().err
    assert box.spool.session(session_id).mac == MAC and box.statuses(session_id) == {"pending": 1}


@pytest.mark.parametrize("honour", [True, False])
async def test_forced_resend_uses_the_original_report_time_and_idempotency_key(tmp_path, reference_manager,
                                                                              honour):
    """`--force` re-sends delivered turns as the identical records: a key-honouring Manager stores nothing new."""
    await reference_manager.bind_device(MAC)
    reference_manager.honour_idempotency = honour
    box = make_box(tmp_path, reference_manager)
    session_id = await capture(box, ["one", "two", "three"])
    await ship(box)
    first = await reference_manager.rows(session_id)

    assert await replay(box, "--session", session_id) == 0  # nothing to do without --force
    assert await replay(box, "--session", session_id, "--force") == 0
    rows = await reference_manager.rows(session_id)
    if honour:
        assert rows == first and reference_manager.requests["replayed"] == 3
    else:
        assert [(r["content"], r["created_at"]) for r in rows] == \
            sorted([(r["content"], r["created_at"]) for r in first] * 2, key=lambda r: r[1])


async def test_replay_while_the_daemon_delivers_requeues_and_follows_its_progress(
        tmp_path, reference_manager, capsys):
    """With the shipper lock held by the daemon, replay hands the turns to it and reports them delivered."""
    await reference_manager.bind_device(MAC)
    box = make_box(tmp_path, reference_manager)
    session_id = await capture(box, ["turn 1", "turn 2", "turn 3"])
    reference_manager.fail_http(400, 3)
    await ship(box)
    assert box.statuses(session_id) == {"dead_letter": 3}
    lock = ShipperLock(box.spool.path)
    lock.acquire()  # what the daemon's build_shipper does, beside the shipper below
    try:
        async with running_shipper(box.settings):
            capsys.readouterr()
            assert await replay(box, "--status", "dead-letter", "--manager-url", reference_manager.url) == 2
            assert "stop it to replay to --manager-url" in capsys.readouterr().err
            assert box.statuses(session_id) == {"dead_letter": 3}

            assert await replay(box, "--status", "dead-letter") == 0
            out = capsys.readouterr().out
            assert "the running daemon delivers" in out and "delivered 3 of 3" in out
            assert await asyncio.to_thread(cli, box, "list") == 0  # reading beside the daemon is fine
    finally:
        lock.release()
    assert contents(await reference_manager.rows(session_id)) == ["turn 1", "turn 2", "turn 3"]


async def test_replay_reports_turns_the_manager_still_refuses_and_exits_1(tmp_path, reference_manager, capsys):
    """If the cause is not fixed, the turns go back to dead-letter with the Manager's reason, exit 1."""
    await reference_manager.bind_device(MAC)
    box = make_box(tmp_path, reference_manager)
    session_id = await capture(box, ["turn 1", "turn 2"])
    reference_manager.fail_http(400, 2)
    await ship(box)
    reference_manager.fail_http(400, 2)  # still broken
    capsys.readouterr()

    assert await replay(box, "--status", "dead-letter") == 1
    out = capsys.readouterr().out
    assert "delivered 0 of 2" in out and f"{session_id}#1: HTTP 400" in out
    assert box.statuses(session_id) == {"dead_letter": 2}


async def test_refused_secret_stops_the_replay_at_once_and_keeps_every_turn(tmp_path, reference_manager, capsys):
    """A wrong --secret ends the replay with the Manager's 401 reason and exit 1; the turns stay pending."""
    await reference_manager.bind_device(MAC)
    box = make_box(tmp_path, reference_manager)
    session_id = await capture(box, ["turn 1", "turn 2"])
    capsys.readouterr()

    assert await replay(box, "--session", session_id, "--secret", "not-the-secret", "--timeout", "30") == 1
    out = capsys.readouterr().out
    assert "stopped early: the Manager refused the secret" in out and "2 turn(s) are pending" in out
    assert box.statuses(session_id) == {"pending": 2}
    assert await replay(box, "--session", session_id) == 0
    assert contents(await reference_manager.rows(session_id)) == ["turn 1", "turn 2"]
