"""Hostile and odd text through the real capture handlers: each case has a stated outcome.

Outcomes (services/text.py): stored exactly; stored with lone surrogates and NUL as U+FFFD;
trimmed; skipped and counted when nothing is left; cut at MAX_TURN_CHARS with a marker.
Nothing raises into LiveKit's emitter, and the event loop keeps running.
"""

from __future__ import annotations

import asyncio
import uuid

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.kits.faults import Heartbeat, exchange
from tests.kits.inputs import CASES
from voicelog.handlers.chat_capture import ChatCapture
from voicelog.services.backup import BackupWriter, read_document
from voicelog.services.capture import ChatHistoryService
from voicelog.services.config import ChatHistorySettings
from voicelog.services.domain import MAX_TURN_CHARS, ChatType, TurnStatus, clean_transcript, resolve_identity
from voicelog.services.spool import Spool, open_spool

# Any code point, with the troublesome ones (surrogates, NUL, controls, marks, bidi, joiners,
# odd spaces) drawn far more often than their share of Unicode.
SPICY = st.sampled_from(["\ud800", "\udbff", "\udc00", "\udfff", "\x00", "\x07", "\x1b", "\x7f", "\x85",
                         "\u0301", "\u200d", "\u200f", "\u202e", "\u2028", "\u3000", "\ufeff", "\uffff",
                         "🐉", "\U0001f3fd", "\U0001f1ef", " ", "\t", "\n", "'", '"', "\\", "%", "{"])
ANY_CHAR = st.one_of(st.characters(exclude_categories=()), SPICY)


@pytest.fixture(scope="module")
def spool(tmp_path_factory):
    """One real spool shared by every case (each case is its own session)."""
    spool = open_spool(tmp_path_factory.mktemp("adversarial") / "spool.db")
    yield spool
    spool.close()


def new_capture(spool: Spool, backups=None) -> ChatCapture:
    identity = resolve_identity(f"{uuid.uuid4()}_6825ddba3978")
    return ChatCapture(ChatHistoryService(spool, identity, ChatHistorySettings(), backups=backups))


def stored(spool: Spool, capture: ChatCapture) -> list[tuple[ChatType, str]]:
    return [(t.chat_type, t.content) for t in spool.turns(capture.service.session_id)
            if t.status is not TurnStatus.SKIPPED]


@pytest.mark.parametrize(("name", "said", "kept"), CASES, ids=[c[0] for c in CASES])
async def test_each_hostile_text_has_its_stated_outcome(spool, tmp_path, name, said, kept):
    """Said by the child and by the toy: stored as stated, or skipped and counted; never raised."""
    heartbeat = Heartbeat().start()
    capture = new_capture(spool, BackupWriter(tmp_path))
    exchange(capture, said, said)
    await asyncio.sleep(0)
    await capture.close()
    await heartbeat.stop()
    expected = [] if kept is None else [(ChatType.USER, kept), (ChatType.AGENT, kept)]
    assert stored(spool, capture) == expected
    assert capture.service.stats.skipped_empty == (2 if kept is None else 0)
    assert capture.errors == 0 and capture.service.stats.lost == 0
    document = read_document(next(tmp_path.rglob("*.json")))
    assert [t["content"] for t in document["turns"] if t["status"] != "skipped"] == [k for _, k in expected]


async def test_turn_over_the_cap_is_cut_with_a_marker_and_counted(spool):
    """A runaway turn beyond MAX_TURN_CHARS keeps its first MAX_TURN_CHARS, marked, counted."""
    capture = new_capture(spool)
    exchange(capture, "z" * (MAX_TURN_CHARS + 7), "y" * (MAX_TURN_CHARS + 10))
    await capture.close()
    assert stored(spool, capture) == [
        (ChatType.USER, "z" * MAX_TURN_CHARS + " [cut: 7 more characters not stored]"),
        (ChatType.AGENT, "y" * MAX_TURN_CHARS + " [cut: 10 more characters not stored]")]
    assert capture.service.stats.cut_turns == 2


@settings(max_examples=600, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(user=st.text(ANY_CHAR, max_size=300), agent=st.text(ANY_CHAR, max_size=300),
       interrupted=st.booleans())
def test_any_text_is_stored_cleaned_or_skipped_never_raised(spool, user, agent, interrupted):
    """Arbitrary code points (surrogates, controls, marks) through the handlers, 600 cases."""
    capture = new_capture(spool)
    exchange(capture, user, agent, interrupted=interrupted)
    asyncio.run(capture.close())
    expected = [(kind, clean_transcript(text)) for kind, text in ((ChatType.USER, user), (ChatType.AGENT, agent))
                if clean_transcript(text)]
    assert stored(spool, capture) == expected
    assert capture.errors == 0
    for _, content in expected:
        content.encode("utf-8")  # storable anywhere: no lone surrogate survives
        assert "\x00" not in content
