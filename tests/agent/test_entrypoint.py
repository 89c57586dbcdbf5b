"""The production entrypoint, run through livekit-agents' own job machinery (a fake job, no server)."""

from __future__ import annotations

import json

from tests.kits.agents import MAC, SCRIPTED, TOY_FACTORY, module, remembering, write_module
from tests.kits.delivery import contents
from tests.kits.settings import delivery_settings, make_settings
from voicelog.agent.console import ConsoleServer, on_job_loop
from voicelog.agent.daemon import ship_once
from voicelog.agent.talk import reply_to
from voicelog.agent.wiring import host_spool
from voicelog.services.backup import BackupWriter
from voicelog.services.domain import ChatType, TurnStatus

ROOM = "d3746a02-cfeb-417d-ad05-0c6d3095632d_6825ddba3978"


async def test_factory_agent_serves_the_session_with_memory_and_leaves_it_sealed_and_deliverable(
        tmp_path, reference_manager):
    """start's entrypoint calls the factory with identity and memory, its tool runs, every turn is stored once and delivered."""
    name = write_module(tmp_path, TOY_FACTORY)
    settings = delivery_settings(tmp_path, reference_manager,
                                 agent={**SCRIPTED, "factory": f"{name}:make_agent"})
    memory = remembering(("user", "My name is Mia."), ("assistant", "Hello Mia!"))
    async with ConsoleServer(settings, memory=memory) as server:
        served = await server.open_session(ROOM, MAC)
        replies = [await on_job_loop(served, reply_to(served.session, line))
                   for line in ("Roll the dice please", "What is my name?")]
        await server.close_session(served, "test finished")

    assert replies == ["Here you go: 4", "Your name is Mia."]
    factory = module(name)
    assert factory.CALLS == [{"mac": MAC, "session_id": ROOM, "remembered_turns": 2,
                              "memory": [("user", "My name is Mia."), ("assistant", "Hello Mia!")]}]
    assert factory.ROLLS == [6]
    spool = host_spool(settings)
    try:
        session = spool.session(ROOM)
        turns = spool.turns(ROOM)
    finally:
        spool.close()
    assert session is not None and session.ended_ms is not None and session.mac_source == "attribute"
    # Remembered turns are context, not conversation: only the four live turns, each once.
    assert [(t.chat_type, t.content) for t in turns] == [
        (ChatType.USER, "Roll the dice please"), (ChatType.AGENT, "Here you go: 4"),
        (ChatType.USER, "What is my name?"), (ChatType.AGENT, "Your name is Mia.")]
    assert all(t.status is TurnStatus.PENDING for t in turns)
    backup = json.loads(BackupWriter(settings.chat_history.backup_dir).path_for(session).read_text())
    assert [t["content"] for t in backup["turns"]] == [t.content for t in turns]

    await reference_manager.bind_device(MAC)
    summary = await ship_once(settings, 3)
    assert summary.delivered == 4 and not summary.remaining
    assert contents(await reference_manager.rows(ROOM)) == [t.content for t in turns]


async def test_each_turn_keeps_what_livekit_measured_and_the_language(tmp_path):
    """User turns keep their speech times and STT language, replies how long the child waited."""
    settings = make_settings(tmp_path, agent=SCRIPTED)
    async with ConsoleServer(settings) as server:
        served = await server.open_session(ROOM, MAC)
        for line in ("hello there", "do fish sleep"):
            await on_job_loop(served, reply_to(served.session, line))
        await server.close_session(served, "test finished")
    spool = host_spool(settings)
    try:
        turns = spool.turns(ROOM)
    finally:
        spool.close()
    users = [t for t in turns if t.chat_type == ChatType.USER]
    replies = [t for t in turns if t.chat_type == ChatType.AGENT]
    assert len(users) == len(replies) == 2
    for user, reply in zip(users, replies, strict=True):
        assert user.meta.language == "en"
        assert user.meta.metrics["stopped_speaking_at_ms"] >= user.meta.metrics["started_speaking_at_ms"]
        assert "end_of_turn_delay_ms" in user.meta.metrics
        waited = reply.meta.metrics["e2e_latency_ms"]
        # The wait is the gap between the child's last word and the reply's first audio.
        gap = reply.meta.metrics["started_speaking_at_ms"] - user.meta.metrics["stopped_speaking_at_ms"]
        assert 0 < waited < 5000 and abs(waited - gap) <= 2
        assert {"llm_node_ttft_ms", "tts_node_ttfb_ms"} <= set(reply.meta.metrics)
