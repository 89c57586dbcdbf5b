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

from tests.fault_kit import Heartbeat, exchange
from voicelog.handlers.chat_capture import ChatCapture
from voicelog.services.backup import BackupWriter, read_document
from voicelog.services.capture import ChatHistoryService
from voicelog.services.config import ChatHistorySettings
from voicelog.services.domain import MAX_TURN_CHARS, ChatType, TurnStatus, clean_transcript, resolve_identity
from voicelog.services.spool import Spool, open_spool

MB = 1024 * 1024
# (name, what the child/toy said, what is stored; None = skipped and counted)
CASES = [
    ("empty", "", None), ("spaces", "    ", None), ("tabs_newlines", "\t\n\r\n", None),
    ("ideographic_space", "\u3000\u3000", None), ("nbsp", "\u00a0", None),
    ("file_separators", "\x1c\x1d\x1e\x1f", None), ("next_line", "\x85", None),
    ("zero_width_space", "\u200b", "\u200b"), ("nul", "a\x00b", "a\ufffdb"),
    ("only_nul", "\x00", "\ufffd"), ("bell_escape", "\x07\x1b[31mred\x1b[0m", "\x07\x1b[31mred\x1b[0m"),
    ("delete", "\x7f", "\x7f"), ("lone_high_surrogate", "x\ud800y", "x\ufffdy"),
    ("lone_low_surrogate", "\udfffz", "\ufffdz"), ("split_pair", "\ud83d\ude00", "😀"),
    ("emoji_zwj", "👨‍👩‍👧‍👦 family", "👨‍👩‍👧‍👦 family"), ("flags", "🇯🇵🇺🇸", "🇯🇵🇺🇸"),
    ("skin_tone", "👍🏽", "👍🏽"), ("arabic", "مرحبا كيف حالك", "مرحبا كيف حالك"),
    ("hebrew_niqqud", "שָׁלוֹם", "שָׁלוֹם"), ("rtl_override", "\u202eevil\u202c", "\u202eevil\u202c"),
    ("zalgo", "z\u0301\u0302\u0303\u0304\u0305", "z\u0301\u0302\u0303\u0304\u0305"),
    ("lone_combining", "\u0301", "\u0301"), ("bom", "\ufeffhello", "\ufeffhello"),
    ("noncharacters", "\uffff\ufffe", "\uffff\ufffe"), ("private_use", "\ue000\U000f0000", "\ue000\U000f0000"),
    ("math_alphabet", "𝔘𝔫𝔦𝔠𝔬𝔡𝔢", "𝔘𝔫𝔦𝔠𝔬𝔡𝔢"), ("cjk", "我喜欢熊猫。", "我喜欢熊猫。"),
    ("line_separators", "a\u2028b\u2029c", "a\u2028b\u2029c"),
    ("json", '{"code": 0, "msg": "ok", "data": true}', '{"code": 0, "msg": "ok", "data": true}'),
    ("json_breakout", '"}, "macAddress": "00:00:00:00:00:00', '"}, "macAddress": "00:00:00:00:00:00'),
    ("sql", "'; DROP TABLE turns; --", "'; DROP TABLE turns; --"),
    ("sql_unicode_quote", "‘ OR 1=1 --", "‘ OR 1=1 --"), ("html", "<script>alert(1)</script>", "<script>alert(1)</script>"),
    ("format_strings", "%s %n {0} ${HOME} {{x}}", "%s %n {0} ${HOME} {{x}}"),
    ("escapes", "\\u0000 \\n \\\\", "\\u0000 \\n \\\\"), ("padded", "  hello  ", "hello"),
    ("long_word", "a" * 5000, "a" * 5000), ("one_megabyte", "x" * MB, "x" * MB),
    ("one_megabyte_emoji", "🐉" * (MB // 4), "🐉" * (MB // 4)),
]


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
