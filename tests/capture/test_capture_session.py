"""A real AgentSession's turns land in the spool and backup exactly once, in order, as heard."""

import json

import pytest

from tests.kits.settings import make_settings
from voicelog.agent.simulation.scripted import run_conversation
from voicelog.agent.wiring import attach_capture, host_spool
from voicelog.services.backup import BackupWriter
from voicelog.services.domain import ChatType, TurnStatus, resolve_identity

ROOM = "d3746a02-cfeb-417d-ad05-0c6d3095632d_6825ddba3978"
SCRIPT = [
    {"user": "Hello there friend 👋 how are you today", "agent": "I am great 😀 thanks for asking!"},
    {"user": "我喜欢 熊猫 和 竹子", "agent": "Pandas eat bamboo all day long, which is a very long time indeed.",
     "barge_in_after_chars": 10},
    {"user": "مرحبا كيف حالك يا صديقي", "agent": "שלום! I'm fine, thank you."},
]


DEVICE = {"device_mac": "68:25:dd:ba:39:78"}


async def capture_script(settings, script, room=ROOM, attributes=DEVICE, participant="68:25:dd:ba:39:78"):
    spool = host_spool(settings)
    identity = resolve_identity(room, attributes, participant)
    captures = []
    history = await run_conversation(script, time_scale=0.02,
                                     on_session=lambda s: captures.append(attach_capture(s, identity, settings, spool)))
    await captures[0].close()
    return spool, identity, captures[0], history


async def test_each_turn_and_reply_is_stored_once_in_conversation_order(tmp_path):
    """Several STT finals per turn still give one user row; each reply gives one agent row."""
    settings = make_settings(tmp_path)
    spool, identity, capture, _ = await capture_script(settings, SCRIPT)
    turns = [t for t in spool.turns(identity.session_id) if t.status is not TurnStatus.SKIPPED]
    assert [t.chat_type for t in turns] == [ChatType.USER, ChatType.AGENT] * 3
    assert [t.content for t in turns if t.chat_type is ChatType.USER] == [s["user"] for s in SCRIPT]
    assert turns[1].content == SCRIPT[0]["agent"]
    assert turns[5].content == SCRIPT[2]["agent"]
    assert [t.seq for t in turns] == sorted(t.seq for t in turns)
    assert all(t.status is TurnStatus.PENDING for t in turns)
    assert capture.errors == 0


async def test_interrupted_reply_is_stored_with_heard_text_and_flag(tmp_path):
    """A barged-in reply keeps only what the child heard and is marked interrupted."""
    settings = make_settings(tmp_path)
    spool, identity, _, history = await capture_script(settings, SCRIPT)
    replies = [t for t in spool.turns(identity.session_id) if t.chat_type is ChatType.AGENT
               and t.status is not TurnStatus.SKIPPED]
    cut = replies[1]
    assert cut.interrupted is True
    assert cut.content and SCRIPT[1]["agent"].startswith(cut.content)
    assert len(cut.content) < len(SCRIPT[1]["agent"])
    heard = [h for h in history if h.role == "assistant"][1]
    assert heard.text == cut.content
    assert [r.interrupted for r in (replies[0], replies[2])] == [False, False]


async def test_report_times_strictly_increase_within_the_session(tmp_path):
    """The console orders by created_at with no tiebreak, so no two turns share a time."""
    settings = make_settings(tmp_path)
    spool, identity, _, _ = await capture_script(settings, SCRIPT)
    times = [t.report_ms for t in spool.turns(identity.session_id)]
    assert all(b > a for a, b in zip(times, times[1:]))


async def test_backup_file_holds_the_same_turns_with_session_identity(tmp_path):
    """The session's JSON backup lists every turn, its MAC, session id, times and status."""
    settings = make_settings(tmp_path)
    spool, identity, _, _ = await capture_script(settings, SCRIPT)
    path = BackupWriter(settings.chat_history.backup_dir).path_for(spool.session(identity.session_id))
    document = json.loads(path.read_text(encoding="utf-8"))
    assert document["mac"] == "68:25:dd:ba:39:78"
    assert document["session_id"] == ROOM
    assert document["ended_at"] is not None
    kept = [t for t in document["turns"] if t["status"] != "skipped"]
    assert [t["content"] for t in kept] == [t.content for t in spool.turns(identity.session_id)
                                             if t.status is not TurnStatus.SKIPPED]
    assert [t["interrupted"] for t in kept] == [False, False, False, True, False, False]
    assert all(t["id"] == f"{ROOM}#{t['seq']}" for t in kept)


async def test_session_without_a_valid_mac_is_captured_and_marked(tmp_path):
    """No MAC anywhere still stores every turn, marked as unroutable."""
    settings = make_settings(tmp_path)
    spool, identity, _, _ = await capture_script(settings, SCRIPT[:1], room="console", attributes={},
                                            participant="toy")
    session = spool.session("console")
    assert session is not None and session.mac_valid is False
    assert [t.chat_type for t in spool.turns("console")] == [ChatType.USER, ChatType.AGENT]


@pytest.mark.parametrize("text", ["", "   ", "\n\t "])
async def test_empty_turns_are_skipped_and_counted(tmp_path, text):
    """Whitespace-only text is not stored but is counted on the session."""
    from voicelog.services.capture import ChatHistoryService

    settings = make_settings(tmp_path)
    spool = host_spool(settings)
    service = ChatHistoryService(spool, resolve_identity(ROOM), settings.chat_history)
    assert service.add_message(ChatType.USER, text) is None
    assert service.stats.skipped_empty == 1
    assert spool.turns(ROOM) == []
    assert spool.session(ROOM).skipped == 1
