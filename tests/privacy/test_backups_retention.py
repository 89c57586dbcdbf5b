"""Retention forgets old delivered sessions and never, unasked, what the Manager does not have yet."""

from __future__ import annotations

import asyncio
import json
import shutil

from tests.kits.box import MAC, OTHER_MAC, capture, make_box, ship
from tests.kits.delivery import eventually, running_shipper
from voicelog.services.backup import BackupWriter
from voicelog.services.domain import wall_ms
from voicelog.services.privacy import DAY_MS, prune
from voicelog.services.spool import open_spool


async def test_undelivered_sessions_go_only_when_asked_and_past_max_undelivered_days(tmp_path, reference_manager):
    """8 days on the delivered session goes; the undelivered one stays until 31 days and the explicit flag."""
    await reference_manager.bind_device(MAC)
    box = make_box(tmp_path, reference_manager, chat_history={"retention_days": 7, "max_undelivered_days": 30})
    delivered = await capture(box, ["sent"], n=0)
    await ship(box)
    waiting = await capture(box, ["not sent"], mac=OTHER_MAC, n=1)
    history, now = box.settings.chat_history, wall_ms()

    report = prune(box.spool, box.backup_dir, history, now_ms=now + 8 * DAY_MS, include_undelivered=True)
    assert [s.session_id for s in report.removed] == [delivered]
    assert [s.session_id for s in report.kept_undelivered] == [waiting]
    assert prune(box.spool, box.backup_dir, history, now_ms=now + 31 * DAY_MS).removed == []
    assert box.spool.turns(waiting)

    report = prune(box.spool, box.backup_dir, history, now_ms=now + 31 * DAY_MS, include_undelivered=True)
    assert [(s.session_id, s.undelivered) for s in report.removed] == [(waiting, 1)]
    assert box.spool.session(waiting) is None and not list(box.backup_dir.glob("*/*.json"))


async def test_dry_run_reports_the_same_sessions_and_deletes_nothing(tmp_path, reference_manager):
    """A dry run names what a real prune removes, and both the spool and the files stay as they were."""
    await reference_manager.bind_device(MAC)
    box = make_box(tmp_path, reference_manager)
    sessions = [await capture(box, [f"s{n}"], n=n) for n in range(3)]
    await ship(box)
    later = wall_ms() + 8 * DAY_MS

    planned = prune(box.spool, BackupWriter(box.backup_dir), box.settings.chat_history, now_ms=later, dry_run=True)
    assert sorted(s.session_id for s in planned.removed) == sorted(sessions)
    assert all(box.spool.session(s) and box.backup_of(s).exists() for s in sessions)
    done = prune(box.spool, BackupWriter(box.backup_dir), box.settings.chat_history, now_ms=later)
    assert [s.session_id for s in done.removed] == [s.session_id for s in planned.removed]
    assert not any(box.spool.session(s) for s in sessions)


async def test_backup_only_files_follow_the_same_rules_and_corrupt_ones_are_left_for_verify(
        tmp_path, reference_manager):
    """An old delivered backup-only file goes; an undelivered one and an unreadable one stay."""
    await reference_manager.bind_device(MAC)
    other = make_box(tmp_path / "a", reference_manager)
    delivered = await capture(other, ["sent"], n=0)
    await ship(other)
    waiting = await capture(other, ["not sent"], mac=OTHER_MAC, n=1)
    here = make_box(tmp_path / "b", reference_manager)
    for session_id in (delivered, waiting):
        target = here.backup_dir / other.backup_of(session_id).relative_to(other.backup_dir)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(other.backup_of(session_id), target)
    corrupt = target.parent / "broken.json"
    corrupt.write_text(json.dumps({"format": "voicelog.session-backup"})[:20])

    report = prune(here.spool, here.backup_dir, here.settings.chat_history, now_ms=wall_ms() + 8 * DAY_MS)
    assert [s.session_id for s in report.removed] == [delivered]
    assert sorted(p.name for p in target.parent.iterdir()) == sorted(
        [corrupt.name, other.backup_of(waiting).name])


async def test_prune_beside_a_delivering_shipper_neither_fails_nor_stalls_delivery(tmp_path, reference_manager):
    """Pruning 60 old sessions while a live session is being delivered: both finish, nothing lost."""
    await reference_manager.bind_device(MAC)
    box = make_box(tmp_path, reference_manager)
    old = [await capture(box, [f"old {n}a", f"old {n}b"], n=n) for n in range(60)]
    await ship(box)
    live = await capture(box, [f"live {i}" for i in range(1, 201)], n=100, end=False)
    later = wall_ms() + 8 * DAY_MS
    async with running_shipper(box.settings):
        own = open_spool(box.spool.path)  # the prune has its own connection, as in the daemon or the CLI
        report = await asyncio.to_thread(prune, own, box.backup_dir, box.settings.chat_history, now_ms=later)
        await eventually(lambda: box.statuses(live).get("delivered") == 200, what="live session delivered")
    assert sorted(s.session_id for s in report.removed) == sorted(old)
    assert report.errors == []
    assert len(await reference_manager.rows(live)) == 200
