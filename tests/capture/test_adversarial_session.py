"""A subset of hostile text through a real livekit AgentSession (scripted STT/LLM/TTS).

The user side goes through real STT events (finals split at whitespace, joined by LiveKit
with single spaces), the toy side through real TTS playout and transcript sync; capture
stores what LiveKit committed and what was heard, cleaned as services/text.py states.
A lone surrogate is said only by the child: LiveKit's own sentence tokenizer (blingfire)
rejects one in the toy's reply before capture ever sees it.
"""

from __future__ import annotations

from tests.kits.settings import make_settings
from voicelog.agent.simulation.scripted import run_conversation
from voicelog.agent.wiring import attach_capture, host_spool
from voicelog.services.domain import ChatType, TurnStatus, clean_transcript, resolve_identity

HOSTILE = [
    "Hello 👨‍👩‍👧‍👦 family 🇯🇵 and 👍🏽", "مرحبا كيف حالك يا صديقي", "z\u0301\u0302\u0303 zalgo e\u0301",
    '{"code": 0, "data": true} "}, "x": "', "'; DROP TABLE turns; -- ‘ OR 1=1", "我喜欢熊猫。你好！",
    "bell\x07 and nul\x00 here", "lone \ud800 surrogate", "\u202eevil\u202c override",
]


def _speakable(text: str) -> str:
    return text.encode("utf-8", "replace").decode("utf-8")


async def test_hostile_script_through_a_real_agent_session_is_stored_as_stated(tmp_path):
    """Each hostile line, said by the child and by the toy, is stored as LiveKit delivered it."""
    settings = make_settings(tmp_path)
    spool = host_spool(settings)
    identity = resolve_identity("a1b2c3d4-0000-4000-8000-000000000001_6825ddba3978")
    captures = []
    script = [{"user": text, "agent": _speakable(text)} for text in HOSTILE]
    await run_conversation(script, time_scale=0.02,
                           on_session=lambda s: captures.append(attach_capture(s, identity, settings, spool)))
    await captures[0].close()
    turns = [t for t in spool.turns(identity.session_id) if t.status is not TurnStatus.SKIPPED]
    users = [t.content for t in turns if t.chat_type is ChatType.USER]
    agents = [t.content for t in turns if t.chat_type is ChatType.AGENT]
    assert users == [clean_transcript(" ".join(text.split())) for text in HOSTILE]
    assert agents == [clean_transcript(_speakable(text)) for text in HOSTILE]
    assert captures[0].errors == 0 and captures[0].service.stats.lost == 0
    spool.close()
