"""The shipper's backup renderer writes exactly what the document renderer writes.

``render_session`` skips the per-turn dicts for speed (issue 16); a backup written by either must
be the same bytes, whatever the words, times and optional fields of the turns.
"""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime

import pytest

from voicelog.services.backup._format import iso_ms, render, render_session, session_document
from voicelog.services.domain import ChatType, SessionRecord, Turn, TurnStatus, checked_turn_meta

TEXTS = ["hello", "", "你好，小熊", 'quote " backslash \\ tab \t newline \n', "\x00\x1f control",
         "lone \ud800 surrogate", "emoji 🐻 and é", "x" * 3000, "</script>", "\u2028 line sep"]


def _session(rng: random.Random, ended: bool) -> SessionRecord:
    started = rng.randint(0, 4_102_444_800_000)
    return SessionRecord(f"room-{rng.randint(0, 99)}_aabbccddeeff", "aa:bb:cc:dd:ee:ff", rng.random() < 0.8,
                         rng.choice(["attribute", "identity", "room_name"]), started,
                         started + 5000 if ended else None, "user_initiated" if ended else None, None,
                         rng.choice([None, "agent-7", "代理"]), rng.randint(0, 3), 0)


def _turn(rng: random.Random, session_id: str, seq: int) -> Turn:
    meta = None
    if rng.random() < 0.4:
        metrics = {"e2e_latency_ms": rng.choice([812, 812.5, 0.1]), "started_speaking_at_ms": 1_764_339_684_123}
        meta = checked_turn_meta(rng.choice([metrics, {}]), rng.choice([None, "en", "cmn-Hans-CN"])) or None
    return Turn(session_id, seq, rng.choice([ChatType.USER, ChatType.AGENT]), rng.choice(TEXTS),
                rng.randint(0, 2**53), rng.randint(-1000, 4_102_444_800_000), rng.random() < 0.5,
                rng.choice(list(TurnStatus)), rng.randint(0, 9),
                rng.choice([None, "HTTP 503: busy", "Manager rejected (code 10034): content不能为空"]),
                0, None, rng.choice([None, rng.randint(0, 4_102_444_800_000)]), meta)


@pytest.mark.parametrize("seed", range(40))
def test_render_session_is_the_document_rendered(seed: int) -> None:
    rng = random.Random(seed)
    session = _session(rng, ended=seed % 2 == 0)
    turns = [_turn(rng, session.session_id, seq) for seq in range(1, rng.randint(0, 40) + 1)]
    written = rng.randint(0, 4_102_444_800_000)

    fast = render_session(session, turns, written)

    assert fast == render(session_document(session, turns, written))
    assert json.loads(fast)["turns"] == json.loads(render(session_document(session, turns, written)))["turns"]


def test_times_before_1970_and_at_second_edges_read_as_the_clock_would() -> None:
    for ms in (0, 1, 999, 1000, -1, -500, -1000, -1001, 1_764_339_684_000, 1_764_339_684_999):
        assert iso_ms(ms) == datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat(timespec="milliseconds")
    assert iso_ms(1_764_339_684_123.0) == "2025-11-28T14:21:24.123+00:00"  # a float still reads
