"""Purging a session that is still being captured, and turns an older voicelog left without a session.

A turn never exists without its session row: a purge of a live session leaves a tombstone, the
session's capture stops quietly, and its later turns are refused and counted. Turns an older
voicelog already stranded are shown by every command and given a session row and delivered.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import sys

import pytest

from tests.kits import REPO
from tests.kits.box import MAC, OTHER_MAC, capture, cli, make_box
from tests.kits.delivery import room_for
from voicelog.agent.wiring import host_spool
from voicelog.services.backup import BackupWriter
from voicelog.services.capture import ChatHistoryService
from voicelog.services.domain import ChatType, FileLock, resolve_identity

WORDS = "the secret password is tiger"


def every_file(root):
    return [p for p in root.rglob("*") if p.is_file()]


def holding(root, needle: str):
    return [p for p in every_file(root) if needle.encode() in p.read_bytes()]


@pytest.fixture(autouse=True)
def wide_terminal(monkeypatch):
    """Rich lays tables out for 200 columns, so long ids stay on one line."""
    monkeypatch.setenv("COLUMNS", "200")


async def test_purging_a_live_session_refuses_its_later_turns_and_counts_them(tmp_path, reference_manager,
                                                                              capsys):
    """71 turns captured after a purge are refused and counted; nothing of the device stays on disk."""
    box = make_box(tmp_path, reference_manager)
    await capture(box, ["the other device stays"], mac=OTHER_MAC, n=1)
    identity = resolve_identity(room_for(MAC), {"device_mac": MAC}, MAC)
    service = ChatHistoryService(host_spool(box.settings), identity, box.settings.chat_history,
                                 backups=BackupWriter(box.backup_dir))
    for i in range(5):
        service.add_message(ChatType.USER if i % 2 == 0 else ChatType.AGENT, f"{WORDS} {i}")
    service.write_backup()
    capsys.readouterr()

    assert cli(box, "purge", "--mac", MAC) == 0
    assert "1 still live" in capsys.readouterr().out
    for i in range(71):
        assert service.add_message(ChatType.USER, f"{WORDS} after {i}") is not None
    await service.cleanup("participant_disconnected")

    assert service.stats.erased_refused == 71 and service.stats.lost == 0
    assert box.spool.losses() == {"erased_session_turn": 71}
    assert box.spool.turns(identity.session_id) == [] and box.spool.orphans() == []
    assert cli(box, "list", "--json") == 0
    assert [s["mac"] for s in json.loads(capsys.readouterr().out)] == [OTHER_MAC]
    assert cli(box, "purge", "--mac", MAC, "--dry-run") == 0
    assert "would erase 0 sessions, 0 turns, 0 backup files" in capsys.readouterr().out
    service.spool.close()
    box.spool.close()
    assert holding(box.backup_dir, WORDS) == []
    assert holding(box.backup_dir, MAC) == [] and holding(box.backup_dir, MAC.replace(":", "")) == []
    assert holding(box.backup_dir, "the other device stays"), "the other device's chats stay"


def strand_turns_as_an_older_voicelog_did(spool_path, session_id: str) -> None:
    """Make the spool an older voicelog's (schema 1) and erase a session's row but not its turns."""
    db = sqlite3.connect(spool_path)
    db.execute("DROP TRIGGER IF EXISTS turns_need_their_session")
    db.execute("DROP TABLE IF EXISTS erased_sessions")
    if "wire_limit" in {row[1] for row in db.execute("PRAGMA table_info(turns)")}:
        db.execute("ALTER TABLE turns DROP COLUMN wire_limit")
    db.execute("UPDATE meta SET value='1' WHERE key='schema_version'")
    db.execute("DELETE FROM sessions WHERE session_id=?", (session_id,))
    db.commit()
    db.close()


async def test_turns_an_older_version_left_without_a_session_are_shown_repaired_and_delivered(
        tmp_path, reference_manager, capsys):
    """list, show, verify and purge --dry-run show stranded turns; ship --once repairs and delivers them."""
    await reference_manager.bind_device(MAC)
    box = make_box(tmp_path, reference_manager)
    stranded = await capture(box, ["one", "two", "three"], end=False)
    box.spool.close()
    strand_turns_as_an_older_voicelog_did(box.settings.chat_history.spool_file, stranded)
    for path in box.backup_dir.glob("*/*.json"):
        path.unlink()  # the older purge removed the backup too
    capsys.readouterr()

    daemon_using_the_spool = FileLock(f"{box.settings.chat_history.spool_file}.users.lock")
    daemon_using_the_spool.shared()  # so the commands below are not alone and repair nothing
    try:
        assert cli(box, "list", "--json") == 0
        listed = json.loads(capsys.readouterr().out)
        assert [(s["session_id"], s["mac"], s["turns"]["pending"], s["source"]) for s in listed] == [
            (stranded, MAC, 3, "orphan")]
        assert cli(box, "show", stranded) == 0
        assert "three" in capsys.readouterr().out
        assert cli(box, "verify") == 1
        assert "3 turn(s) have no session row" in capsys.readouterr().out
        assert cli(box, "purge", "--mac", MAC, "--dry-run") == 0
        assert "would erase 1 session, 3 turns" in capsys.readouterr().out
    finally:
        daemon_using_the_spool.release()

    process = await asyncio.create_subprocess_exec(
        sys.executable, "main.py", "--config", str(box.config), "ship", "--once", cwd=REPO,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    output = (await process.communicate())[0].decode()
    assert process.returncode == 0, output
    assert "3 turns of 1 session had no session row" in output
    assert [r["content"] for r in await reference_manager.rows(stranded)] == ["one", "two", "three"]
    spool = host_spool(box.settings)
    assert spool.orphans() == [] and spool.status_counts() == {"delivered": 3}
    spool.close()
