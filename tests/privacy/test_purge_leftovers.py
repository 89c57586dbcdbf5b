"""Nothing of a purged device stays behind: temporary files of killed writers, files only on disk.

A backup writer killed mid-write leaves ``.tmp-*.json`` holding a whole session's words; the
open-time check, prune and purge remove such files (a fresh one, possibly being written, is
spared by the first two). ``purge --session`` finds a backup file the spool does not know.
"""

from __future__ import annotations

import os
import tempfile
import time

from tests.kits.box import MAC, OTHER_MAC, capture, cli, make_box
from tests.kits.settings import make_settings
from voicelog.agent.wiring import host_spool
from voicelog.services.backup import BackupWriter, read_backup
from voicelog.services.capture import ChatHistoryService
from voicelog.services.domain import ChatType, resolve_identity
from voicelog.services.privacy import prune

WORDS = "my teddy is called captain biscuit"


def holding(root, needle: str):
    return [p for p in root.rglob("*") if p.is_file() and needle.encode() in p.read_bytes()]


def killed_writers_temp_file(day_folder, document: bytes, age_seconds: float = 3600):
    """A temporary file exactly as a writer SIGKILLed mid-write leaves it: half a document."""
    fd, name = tempfile.mkstemp(dir=day_folder, prefix=".tmp-", suffix=".json")
    with os.fdopen(fd, "wb") as handle:
        handle.write(document[: len(document) // 2] + b" " * 1_000_000)
    when = time.time() - age_seconds
    os.utime(name, (when, when))
    return name


async def test_purge_removes_a_killed_writers_temp_file_and_a_backup_only_on_disk(tmp_path, reference_manager,
                                                                                  capsys):
    """purge --mac leaves no word of the device; purge --session erases a file the spool never had."""
    box = make_box(tmp_path, reference_manager)
    session_id = await capture(box, [WORDS, "what a fine name"])
    backup = box.backup_of(session_id)
    temp = killed_writers_temp_file(backup.parent, backup.read_bytes())
    copied = await capture(make_box(tmp_path / "other-box", reference_manager), ["from another box"],
                           mac=OTHER_MAC, n=7)
    only_on_disk = box.backup_dir / backup.parent.name / f"{copied}.json"
    (tmp_path / "other-box" / "backups" / backup.parent.name / f"{copied}.json").rename(only_on_disk)
    capsys.readouterr()

    assert cli(box, "purge", "--mac", MAC) == 0
    assert temp in capsys.readouterr().out and not os.path.exists(temp)
    assert cli(box, "purge", "--session", copied) == 0
    out = capsys.readouterr().out
    assert "erased 1 session" in out and str(only_on_disk) in out and not only_on_disk.exists()
    box.spool.close()
    assert holding(box.backup_dir, WORDS) == [] and holding(box.backup_dir, "from another box") == []
    assert holding(box.backup_dir, MAC) == [] and holding(box.backup_dir, MAC.replace(":", "")) == []


async def test_open_and_prune_remove_stale_temp_files_and_spare_a_fresh_one(tmp_path):
    """The open-time check and prune delete temp files older than five minutes, never a younger one."""
    settings = make_settings(tmp_path)
    spool = host_spool(settings)
    writer = BackupWriter(settings.chat_history.backup_dir)
    service = ChatHistoryService(spool, resolve_identity("room-1_6825ddba3978"), settings.chat_history,
                                 backups=writer)
    service.add_message(ChatType.USER, WORDS)
    await service.cleanup()
    path = writer.path_for(spool.session(service.session_id))
    spool.close()
    stale = killed_writers_temp_file(path.parent, path.read_bytes())
    fresh = killed_writers_temp_file(path.parent, path.read_bytes(), age_seconds=10)
    spool = host_spool(settings)  # alone: the open-time check runs
    assert not os.path.exists(stale) and os.path.exists(fresh)
    os.utime(fresh, (time.time() - 600, time.time() - 600))
    report = prune(spool, settings.chat_history.backup_dir, settings.chat_history, now_ms=int(time.time() * 1000))
    spool.close()
    assert report.temp_files_removed == [fresh] and not os.path.exists(fresh)
    assert read_backup(path).turns[0].content == WORDS, "the real backup stays"
