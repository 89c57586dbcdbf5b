"""Distinct rooms never share a session id or a backup file, and every rewritten name is counted.

A room name is the session id as it is when it is already a safe id (every gateway name is);
any other is rewritten with a ``~`` and a digest of the exact original, which no room name used
as it is can contain; a blank name gets a unique id. Each rewrite is recorded in ``losses``.
"""

from __future__ import annotations

import hashlib
import json

import pytest

from tests.kits.box import MAC, cli, make_box
from voicelog.services.backup import BackupWriter
from voicelog.services.capture import ChatHistoryService
from voicelog.services.domain import ChatType, resolve_identity

SLASHED = "a/b"
# The file name an older voicelog gave "a/b", used here literally as another room's name.
OLD_FILE_STEM_OF_SLASHED = "a_b-" + hashlib.sha256(b"a/b").hexdigest()[:10]
SIXTY = "r" * 48 + "_6825ddba3978"
# What an older voicelog cut SIXTY to, used here literally as another room's name.
OLD_CUT_OF_SIXTY = SIXTY[:37] + "~" + hashlib.sha256(SIXTY.encode()).hexdigest()[:12]
ROOMS = [SLASHED, OLD_FILE_STEM_OF_SLASHED, " kids-room ", "kids-room", "", "   ", SIXTY, OLD_CUT_OF_SIXTY]


@pytest.fixture(autouse=True)
def wide_terminal(monkeypatch):
    """Rich lays tables out for 200 columns, so long ids stay on one line."""
    monkeypatch.setenv("COLUMNS", "200")


async def test_distinct_rooms_never_share_a_session_or_a_backup_file(tmp_path, reference_manager, capsys):
    """Eight rooms that older voicelogs merged pairwise become eight sessions, eight files; verify is OK."""
    box = make_box(tmp_path, reference_manager)
    writer = BackupWriter(box.backup_dir)
    sessions = {}
    for index, room in enumerate(ROOMS):
        identity = resolve_identity(room, {"device_mac": MAC}, MAC)
        service = ChatHistoryService(box.spool, identity, box.settings.chat_history, backups=writer)
        service.add_message(ChatType.USER, f"words of room {index}")
        await service.cleanup("participant_disconnected")
        sessions[identity.session_id] = index
    assert len(sessions) == len(ROOMS)
    files = {writer.path_for(box.spool.session(s)): s for s in sessions}
    assert len(files) == len(ROOMS)
    for path, session_id in files.items():
        assert json.loads(path.read_text())["turns"][0]["content"] == f"words of room {sessions[session_id]}"
    assert all(1 <= len(s) <= 50 for s in sessions)
    assert "kids-room" in sessions and OLD_FILE_STEM_OF_SLASHED in sessions, "safe names are kept as they are"
    # Rewritten: a/b, " kids-room ", two blanks, the long one, and the old cut (its "~" is not safe).
    assert box.spool.losses() == {"room_name_rewritten": 6}
    capsys.readouterr()
    assert cli(box, "verify") == 0
    assert f"checked {len(ROOMS)} backup files and {len(ROOMS)} sessions: OK" in capsys.readouterr().out


def test_a_rewritten_id_can_never_be_a_room_name_used_as_it_is():
    """Any room whose name looks like a rewritten id is itself rewritten, so the two stay apart."""
    for room in (SLASHED, SIXTY, " x ", "é", ".hidden"):
        rewritten = resolve_identity(room).session_id
        assert "~" in rewritten and resolve_identity(rewritten).session_id != rewritten
    assert resolve_identity("").session_id != resolve_identity("").session_id
