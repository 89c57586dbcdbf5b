"""A spool written by the previous voicelog (schema 1) is brought up to date in place, losing nothing."""

from __future__ import annotations

import sqlite3

from tests.kits.settings import make_settings
from voicelog.agent.wiring import host_spool
from voicelog.services.capture import ChatHistoryService
from voicelog.services.domain import ChatType, TurnMeta, TurnStatus, resolve_identity

ROOM = "0b5e0e5e-0000-4000-8000-000000000001_6825ddba3978"
# The turns table as schema 1 made it: no "meta" column.
V1_TURNS = """CREATE TABLE turns (session_id TEXT NOT NULL, seq INTEGER NOT NULL, chat_type INTEGER NOT NULL,
    content TEXT NOT NULL, report_ms INTEGER NOT NULL, captured_ms INTEGER NOT NULL,
    interrupted INTEGER NOT NULL DEFAULT 0, status TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT, next_attempt_ms INTEGER NOT NULL DEFAULT 0, wire_time INTEGER,
    parts_sent INTEGER NOT NULL DEFAULT 0, delivered_ms INTEGER, updated_ms INTEGER NOT NULL,
    UNIQUE (session_id, seq))"""


def test_a_schema_1_spool_gains_the_meta_column_and_keeps_its_turns(tmp_path):
    """Opening an old spool adds turns.meta in place; old turns read as unmeasured, new ones keep metrics."""
    settings = make_settings(tmp_path)
    path = settings.chat_history.spool_file
    path.parent.mkdir(parents=True)
    old = sqlite3.connect(path)
    old.execute(V1_TURNS)
    old.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
    old.execute("INSERT INTO meta VALUES ('schema_version', '1')")
    old.execute("INSERT INTO turns (session_id, seq, chat_type, content, report_ms, captured_ms, status,"
                " updated_ms) VALUES (?, 1, 1, 'said before the upgrade', 1000, 1000, 'pending', 1000)", (ROOM,))
    old.commit()
    old.close()
    spool = host_spool(settings)  # creates the other tables, migrates turns
    identity = resolve_identity(ROOM, {"device_mac": "68:25:dd:ba:39:78"})
    service = ChatHistoryService(spool, identity, settings.chat_history)
    measured = TurnMeta({"e2e_latency_ms": 812.5}, "de")
    service.add_message(ChatType.AGENT, "measured reply", meta=measured)
    turns = spool.turns(ROOM)
    spool.close()
    with sqlite3.connect(path) as check:
        assert check.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone() == ("2",)
        assert "meta" in {row[1] for row in check.execute("PRAGMA table_info(turns)")}
    assert [(t.content, t.status, t.meta) for t in turns] == [
        ("said before the upgrade", TurnStatus.PENDING, None), ("measured reply", TurnStatus.PENDING, measured)]
    assert turns[1].meta.metrics == {"e2e_latency_ms": 812.5} and turns[1].meta.language == "de"
