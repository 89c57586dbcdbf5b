"""Hostile content and a misbehaving Manager, through the real shipper into MariaDB.

Stated outcomes: text arrives exactly as stored, one row per turn, or split into in-order
rows of at most 1,024 characters (later ones marked "(cont. i/n)"); a Manager answering
non-JSON, a huge JSON body or a wrong envelope is never taken as delivery (retried, nothing
stored twice); a session with no valid MAC is parked with its reason and never sent.
"""

from __future__ import annotations

import pytest

from tests.kits.delivery import capture_numbered, contents, eventually, running_shipper
from tests.kits.inputs import CASES
from tests.kits.settings import delivery_settings
from voicelog.agent.wiring import host_spool
from voicelog.services.capture import ChatHistoryService
from voicelog.services.domain import TurnStatus, clean_transcript, resolve_identity
from voicelog.services.shipping import NO_MAC_REASON, wire_parts

MAC = "68:25:dd:ba:39:78"


async def test_hostile_texts_arrive_exactly_or_split_in_order(tmp_path, reference_manager):
    """Every non-empty case (and a 200,000-character turn) becomes exactly the expected rows."""
    await reference_manager.bind_device(MAC)
    settings = delivery_settings(tmp_path, reference_manager, chat_history={"batch_size": 1})
    spool = host_spool(settings)
    texts = [said for _, said, kept in CASES if kept is not None and len(said) < 100_000]
    texts.append(" ".join(f"word{i}" for i in range(25_000))[:200_000])
    session_id = capture_numbered(settings, spool, MAC, len(texts), content=lambda i: texts[i - 1])
    stored = [t.content for t in spool.turns(session_id)]
    assert stored == [clean_transcript(t) for t in texts]
    async with running_shipper(settings, spool):
        await eventually(lambda: spool.status_counts(session_id) == {"delivered": len(texts)},
                         timeout=60, what="delivery")
    rows = contents(await reference_manager.rows(session_id))
    assert rows == [part for content in stored for part in wire_parts(content, 1024)]
    assert max(len(row) for row in rows) <= 1024 and len(rows) > len(texts) + 150


@pytest.mark.parametrize("count", [1, 4])
@pytest.mark.parametrize("kind", ["non_json", "huge_json", "wrong_envelope"])
async def test_garbage_answers_are_retried_and_never_taken_as_delivery(tmp_path, reference_manager,
                                                                       kind, count):
    """HTTP 200 with an unusable body: the turn is retried; MariaDB gets each turn once, in order."""
    await reference_manager.bind_device(MAC)
    settings = delivery_settings(tmp_path, reference_manager)
    spool = host_spool(settings)
    session_id = capture_numbered(settings, spool, MAC, 5)
    reference_manager.garbage(count, kind)
    async with running_shipper(settings, spool):
        await eventually(lambda: spool.status_counts(session_id) == {"delivered": 5}, what="delivery")
    assert contents(await reference_manager.rows(session_id)) == [f"turn {i}" for i in range(1, 6)]
    assert reference_manager.requests["garbage"] == count
    assert max(t.attempts for t in spool.turns(session_id)) == count + 1


async def test_sessions_without_a_routable_mac_are_parked_with_a_reason(tmp_path, reference_manager):
    """An invalid MAC is parked unsent with why; a valid but unbound one is parked by the Manager."""
    settings = delivery_settings(tmp_path, reference_manager)
    spool = host_spool(settings)
    sessions = {}
    for label, mac in (("invalid", "zz:zz:zz:zz:zz:zz"), ("unbound", "00:00:00:00:00:01")):
        identity = resolve_identity(f"room-{label}", {"device_mac": mac}, None)
        service = ChatHistoryService(spool, identity, settings.chat_history)
        service.add_message(1, f"hello from {label}")
        await service.cleanup()
        sessions[label] = identity.session_id
    async with running_shipper(settings, spool):
        await eventually(lambda: all(spool.status_counts(s) == {"parked": 1} for s in sessions.values()),
                         what="both parked")
    [invalid] = spool.turns(sessions["invalid"], [TurnStatus.PARKED])
    [unbound] = spool.turns(sessions["unbound"], [TurnStatus.PARKED])
    assert invalid.last_error == NO_MAC_REASON and "not bound" in unbound.last_error
    assert reference_manager.requests["unknown_mac"] >= 1 and await reference_manager.rows() == []


async def test_manager_slower_than_the_timeout_duplicates_only_the_turn_in_flight(tmp_path, reference_manager):
    """A Manager that stores, then answers after our timeout: that turn is resent, nothing else."""
    await reference_manager.bind_device(MAC)
    settings = delivery_settings(tmp_path, reference_manager, manager_api={"timeout": 0.3})
    spool = host_spool(settings)
    session_id = capture_numbered(settings, spool, MAC, 4)
    reference_manager.delay_seconds = 0.6  # stored at once, answered after the client gave up
    async with running_shipper(settings, spool):
        await eventually(lambda: reference_manager.requests["stored"] >= 1, what="a slow commit")
        reference_manager.delay_seconds = 0
        await eventually(lambda: spool.status_counts(session_id) == {"delivered": 4}, what="delivery")
    rows = contents(await reference_manager.rows(session_id))
    assert list(dict.fromkeys(rows)) == [f"turn {i}" for i in range(1, 5)] and rows == sorted(rows)
    assert set(rows[: len(rows) - 3]) == {"turn 1"}, "only the turn in flight may repeat"
    assert len(rows) > 4, "the turn whose answer came too late was sent again"
