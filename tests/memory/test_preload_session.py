"""A device's next session starts with its earlier turns in the LLM's context, and nothing is stored twice."""

import json
from pathlib import Path
from typing import Any

import pytest
from livekit.agents import llm

from tests.kits.settings import delivery_settings
from voicelog.agent.daemon import ship_once
from voicelog.agent.preload import preload_memory
from voicelog.agent.simulation.run import SimulatedDevice, simulate
from voicelog.agent.simulation.scripted import INSTRUCTIONS, ScriptedLLM, ScriptTurn, run_conversation
from voicelog.agent.wiring import attach_capture, host_spool
from voicelog.services.backup import backup_files
from voicelog.services.domain import resolve_identity
from voicelog.services.memory import MEMORY_ITEM_PREFIX, open_memory_reader

MAC = "68:25:dd:ba:39:78"
TIME_SCALE = 0.1  # a barge-in needs slack: the cut reply plays ~0.3 s at this scale
FIRST: list[ScriptTurn] = [
    {"user": "My name is Lily and I love dragons 🐉",
     "agent": "Hello Lily! Dragons are wonderful, they fly high above the misty mountains all day long.",
     "barge_in_after_chars": 12},
    {"user": "我最喜欢熊猫", "agent": "熊猫很可爱！"},
]
SECOND: list[ScriptTurn] = [
    {"user": "Do you remember my name", "agent": "Of course, you are Lily!"},
    {"user": "And what do I like", "agent": "Dragons and pandas."},
]


class RecordingLLM(ScriptedLLM):
    """The scripted LLM, keeping the messages of every chat context it was asked with."""

    def __init__(self, replies: list[str]) -> None:
        super().__init__(replies)
        self.asked: list[list[llm.ChatMessage]] = []

    def chat(self, *, chat_ctx: llm.ChatContext, **kwargs: Any) -> llm.LLMStream:
        self.asked.append([i.model_copy() for i in chat_ctx.items if isinstance(i, llm.ChatMessage)])
        return super().chat(chat_ctx=chat_ctx, **kwargs)


async def second_session(settings, turns: list[ScriptTurn], room: str) -> tuple[RecordingLLM, Any, str]:
    """Run a session the way production does: preload, attach capture, start; return what the LLM saw."""
    spool = host_spool(settings)
    reader = open_memory_reader(settings, spool)
    identity = resolve_identity(room, {"device_mac": MAC}, MAC)
    recorder = RecordingLLM([t["agent"] for t in turns])
    captures = []
    try:
        preloaded = await preload_memory(reader, identity, settings, {"device_mac": MAC})
        await run_conversation(turns, time_scale=TIME_SCALE, chat_ctx=preloaded.chat_ctx, llm_model=recorder,
                               on_session=lambda s: captures.append(attach_capture(s, identity, settings, spool)))
        await captures[0].close("test_end")
    finally:
        await reader.aclose()
        spool.close()
    return recorder, preloaded, identity.session_id


@pytest.mark.parametrize("backend", ["local", "redis"])
async def test_second_session_starts_with_the_first_sessions_turns_and_stores_nothing_twice(
        tmp_path: Path, reference_manager, redis_space, backend):
    """Session 2's LLM context holds session 1's turns in order (heard text, interrupted), and every
    turn reaches the spool, the backups and the Manager exactly once."""
    memory = redis_space.memory() if backend == "redis" else {}
    settings = delivery_settings(tmp_path, reference_manager, memory=memory)
    await reference_manager.bind_device(MAC)
    first = await simulate(settings, [SimulatedDevice(MAC, tuple(FIRST))], time_scale=TIME_SCALE, deliver=False)
    assert first.interrupted == 1 and first.sessions_failed == 0

    recorder, preloaded, second_id = await second_session(
        settings, SECOND, f"00000000-0000-4000-8000-000000000002_{MAC.replace(':', '')}")

    assert preloaded.preload.store == backend and not preloaded.preload.fell_back
    asked = recorder.asked[0]
    assert asked[0].role == "system" and asked[0].text_content == INSTRUCTIONS
    remembered = [(m.role, m.text_content, m.interrupted) for m in asked[1:-1]]
    heard = remembered[1][1]
    assert remembered == [("user", FIRST[0]["user"], False), ("assistant", heard, True),
                          ("user", FIRST[1]["user"], False), ("assistant", FIRST[1]["agent"], False)]
    assert FIRST[0]["agent"].startswith(heard) and len(heard) < len(FIRST[0]["agent"])
    assert all(m.id.startswith(MEMORY_ITEM_PREFIX) for m in asked[1:-1])
    assert (asked[-1].role, asked[-1].text_content) == ("user", SECOND[0]["user"])
    # The second question comes after the first live answer, itself scripted (not shifted by memory).
    assert [m.text_content for m in recorder.asked[1][-3:]] == [SECOND[0]["user"], SECOND[0]["agent"],
                                                                SECOND[1]["user"]]

    spool = host_spool(settings)
    try:
        second_rows = [t.content for t in spool.turns(second_id)]
        assert second_rows == [SECOND[0]["user"], SECOND[0]["agent"], SECOND[1]["user"], SECOND[1]["agent"]]
        assert sum(len(spool.turns(s)) for s in spool.session_ids()) == 8
    finally:
        spool.close()
    backed_up = [t["content"] for path in backup_files(settings.chat_history.backup_dir)
                 for t in json.loads(path.read_text())["turns"]]
    assert sorted(backed_up) == sorted([FIRST[0]["user"], heard, FIRST[1]["user"], FIRST[1]["agent"],
                                        *second_rows])
    summary = await ship_once(settings, max_attempts=3)
    assert summary.delivered == 8
    assert sorted(r["content"] for r in await reference_manager.rows()) == sorted(backed_up)
