"""What reaches the Manager when the answer is not a verdict on the turn, and when a split turn resumes.

Against the reference Manager over MariaDB (VARCHAR(1024) content, as older schemas have it).
Only a refusal of the turn's own content dead-letters it; redirects, 404/405 and the like pause
all delivery with every turn kept in its place; a dead-lettered turn replayed later shows in its
original place, because its report time was pinned before its first send.
"""

from __future__ import annotations

import asyncio
import re

from structlog.testing import capture_logs

from tests.kits.box import MAC, Box, capture, cli, make_box, ship
from tests.kits.delivery import eventually, running_shipper
from tests.kits.settings import delivery_settings

MARKER = re.compile(r"^\(cont\. \d+/\d+\) ")


def long_turn(chars: int) -> str:
    words = " ".join(f"word{i}" for i in range(chars))
    return words[:chars - 1] + "."


async def test_a_split_turn_resumed_after_the_limit_changed_sends_exactly_its_remaining_parts(
        tmp_path, reference_manager):
    """3,599 characters split at 1,024, one part delivered, the limit raised to 100,000: every character arrives once."""
    await reference_manager.bind_device(MAC)
    text = long_turn(3599)
    box = make_box(tmp_path, reference_manager, manager_api={"max_content_chars": 1024})
    session_id = await capture(box, [text])
    reference_manager.fail_http(503, 100, after=1)  # the first part goes through, then an outage
    await ship(box, max_attempts=1)
    assert len(await reference_manager.rows(session_id)) == 1
    assert box.statuses(session_id) == {"pending": 1}

    reference_manager.clear_faults()
    wider = delivery_settings(tmp_path, reference_manager, manager_api={"max_content_chars": 100_000})
    await ship(Box(wider, box.spool, box.config))
    rows = [r["content"] for r in await reference_manager.rows(session_id)]
    assert len(rows) == 4 and all(len(r) <= 1024 for r in rows)
    assert "".join(MARKER.sub("", r) for r in rows) == text
    assert box.statuses(session_id) == {"delivered": 1}


async def test_a_redeploy_404_or_a_login_redirect_pauses_delivery_and_keeps_every_turn_in_place(
        tmp_path, reference_manager):
    """404 while the Manager redeploys, then a 302 to a login page: nothing dead-lettered, order intact."""
    await reference_manager.bind_device(MAC)
    box = make_box(tmp_path, reference_manager)
    session_id = await capture(box, [f"turn {i}" for i in range(1, 9)])
    reference_manager.fail_http(404, 3, after=2)
    with capture_logs() as logs:
        async with running_shipper(box.settings, box.spool) as shipper:
            await eventually(lambda: not shipper.gate.is_open, what="delivery paused on the 404")
            assert box.statuses(session_id) == {"delivered": 2, "pending": 6}
            await eventually(lambda: box.statuses(session_id) == {"delivered": 8}, what="delivery resumed")
    paused = [e for e in logs if e["event"] == "manager_endpoint_not_answering_delivery_paused"]
    assert len(paused) == 1 and reference_manager.url in paused[0]["url"] and "HTTP 404" in paused[0]["reason"]

    later = await capture(box, [f"later {i}" for i in range(1, 5)], n=1)
    reference_manager.fail_http(302, 2, after=1, location="/login?next=/xiaozhi")
    async with running_shipper(box.settings, box.spool):
        await eventually(lambda: box.statuses(later) == {"delivered": 4}, what="delivered after the redirect")
    for session, prefix, count in ((session_id, "turn", 8), (later, "later", 4)):
        rows = [r["content"] for r in await reference_manager.rows(session)]
        assert rows == [f"{prefix} {i}" for i in range(1, count + 1)]


async def test_a_dead_lettered_turn_replayed_later_shows_in_its_original_place(tmp_path, reference_manager,
                                                                              capsys):
    """Only the Manager's verdict on a turn dead-letters it; replayed, the console shows capture order."""
    await reference_manager.bind_device(MAC)
    box = make_box(tmp_path, reference_manager)
    session_id = await capture(box, [f"turn {i}" for i in range(1, 7)])
    reference_manager.reject(1, code=10034, after=2)  # the Manager refuses turn 3's content
    await ship(box)
    assert box.statuses(session_id) == {"delivered": 5, "dead_letter": 1}
    assert await asyncio.to_thread(cli, box, "replay", "--status", "dead-letter") == 0
    rows = [r["content"] for r in await reference_manager.rows(session_id)]  # ordered by created_at
    assert rows == [f"turn {i}" for i in range(1, 7)]
