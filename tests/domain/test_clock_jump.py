"""A wall clock that jumps back (NTP correction, RTC reset) never reorders or stalls a session.

Capture hands out strictly increasing report times whatever the clock says; the shipper
sends strictly increasing wire times; a retry or parked time recorded before the jump is
re-based on the new "now" instead of waiting out the jump.
"""

from __future__ import annotations

from itertools import pairwise

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.kits.delivery import eventually, running_shipper
from tests.kits.faults import JumpingClock, exchange, room
from tests.kits.settings import delivery_settings
from voicelog.handlers.chat_capture import ChatCapture
from voicelog.services.capture import ChatHistoryService
from voicelog.services.domain import ReportClock, resolve_identity
from voicelog.services.spool import open_spool

MAC = "68:25:dd:ba:39:78"
HOUR = 3_600_000


@settings(max_examples=300, deadline=None, derandomize=True)
@given(readings=st.lists(st.one_of(st.integers(0, 2 ** 45), st.just(0)), min_size=1, max_size=40),
       restart_at=st.integers(0, 40))
def test_report_clock_is_strictly_increasing_for_any_clock_readings(readings, restart_at):
    """Whatever the wall clock reads (backwards, repeated, zero), report times only go up."""
    clock, handed = ReportClock(0, now=lambda: 0), []
    for index, reading in enumerate(readings):
        if index == restart_at:  # a new job process continues from the last stored time
            clock = ReportClock(handed[-1] if handed else 0, now=lambda: 0)
        handed.append(clock.next(reading))
    assert all(b > a for a, b in pairwise(handed))


@pytest.mark.parametrize("unit", ["ms", "s"])
async def test_clock_jumping_back_keeps_capture_and_manager_order_and_does_not_stall(
        tmp_path, reference_manager, unit):
    """Jumps back of an hour and a day, a restart, a parked retry: rows still arrive in order, promptly."""
    reference_manager.report_time_unit = unit
    clock = JumpingClock(step=3)
    settings = delivery_settings(tmp_path, reference_manager, manager_api={"report_time_unit": unit},
                                 chat_history={"batch_size": 1, "send_interval": 0.1})
    spool = open_spool(settings.chat_history.spool_file, now=clock)
    identity = resolve_identity(room(7), {"device_mac": MAC}, MAC)
    capture = ChatCapture(ChatHistoryService(spool, identity, settings.chat_history, now=clock))
    said = []
    for i in range(12):
        if i in (4, 8):
            clock.jump(-HOUR if i == 4 else -24 * HOUR)
        if i == 8:  # the job process restarts after the second jump
            await capture.close("restart")
            capture = ChatCapture(ChatHistoryService(spool, identity, settings.chat_history, now=clock))
        exchange(capture, f"question {i}", f"answer {i}")
        said += [f"question {i}", f"answer {i}"]
    await capture.close()
    reports = [t.report_ms for t in spool.turns(identity.session_id)]
    assert all(b > a for a, b in pairwise(reports)), "report times went backwards"
    async with running_shipper(settings, spool, now=clock):
        await eventually(lambda: spool.status_counts(identity.session_id).get("parked") == len(said),
                         what="turns parked (device not bound yet)")
        clock.jump(-HOUR)  # the parked retry time now lies an hour in the future
        await reference_manager.bind_device(MAC)
        await eventually(lambda: spool.status_counts(identity.session_id) == {"delivered": len(said)},
                         timeout=10, what="delivery without waiting out the jump")
    rows = await reference_manager.rows(identity.session_id)
    assert [r["content"] for r in rows] == said
    created = [r["created_at"] for r in rows]
    assert all(b > a for a, b in pairwise(created)), "created_at must strictly increase"
    spool.close()
