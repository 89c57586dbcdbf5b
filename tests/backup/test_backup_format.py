"""Backup files follow the documented JSON Schema and are replaced atomically."""

import json
import os
import stat
from importlib import resources

import jsonschema

from tests.kits.settings import make_settings
from voicelog.agent.wiring import host_spool
from voicelog.services.backup import BackupWriter, backup_file_name
from voicelog.services.capture import ChatHistoryService
from voicelog.services.domain import ChatType, resolve_identity

SCHEMA = json.loads((resources.files("voicelog.services.backup") / "schemas" / "backup.schema.json").read_text(encoding="utf-8"))


def captured_session(tmp_path, room="d3746a02-cfeb-417d-ad05-0c6d3095632d_6825ddba3978"):
    settings = make_settings(tmp_path)
    spool = host_spool(settings)
    writer = BackupWriter(settings.chat_history.backup_dir)
    service = ChatHistoryService(spool, resolve_identity(room), settings.chat_history, backups=writer)
    service.add_message(ChatType.USER, "¿Qué es eso? 🦄 \u202eRTL\u202c e\u0301")
    service.add_message(ChatType.AGENT, 'He said "{}" and \'; DROP TABLE x; --')
    return spool, writer, service


async def test_backup_validates_against_the_published_schema(tmp_path):
    """The file a session leaves behind is valid against services/schemas/backup.schema.json."""
    spool, writer, service = captured_session(tmp_path)
    await service.cleanup()
    path = writer.path_for(spool.session(service.session_id))
    document = json.loads(path.read_text(encoding="utf-8"))
    jsonschema.validate(document, SCHEMA)
    assert [t["content"] for t in document["turns"]] == [
        "¿Qué es eso? 🦄 \u202eRTL\u202c e\u0301", 'He said "{}" and \'; DROP TABLE x; --']


async def test_backup_files_are_private_and_leave_no_temp_files(tmp_path):
    """Backups are 0600 in 0700 folders, and only the final file remains after a write."""
    spool, writer, service = captured_session(tmp_path)
    await service.cleanup()
    path = writer.path_for(spool.session(service.session_id))
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(path.parent).st_mode) == 0o700
    assert [p.name for p in path.parent.iterdir()] == [path.name]


def test_hostile_session_ids_become_safe_distinct_file_names():
    """Path separators and dots in a room name cannot escape the backup folder."""
    names = {backup_file_name(x) for x in ("../../etc/passwd", "..", "a/b", "a_b", "a\x00b")}
    assert len(names) == 5
    assert all("/" not in n and not n.startswith(".") for n in names)
