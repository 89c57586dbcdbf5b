"""Captured turns reach the reference Manager's MariaDB table exactly as the console needs them."""

import sqlite3

import pytest

from tests.kits.delivery import capture_numbered, contents, eventually, running_shipper
from tests.kits.settings import delivery_settings
from voicelog.agent.simulation.run import generated_devices, simulate
from voicelog.agent.wiring import host_spool
from voicelog.services.backup import BackupWriter
from voicelog.services.domain import TurnStatus
from voicelog.services.shipping import Shipper
from voicelog.services.shipping._session_sender import MARK_DELIVERED_EVERY
from voicelog.services.shipping.manager import ManagerApiClient
from voicelog.services.spool import DeliveryState

MAC = "68:25:dd:ba:39:78"


@pytest.mark.parametrize(("api_mode", "unit"), [("report", "ms"), ("report", "s"),
                                                ("session", "s"), ("session", "ms")])
async def test_simulated_conversations_become_exactly_the_right_rows(tmp_path, reference_manager,
                                                                     api_mode, unit):
    """Right MAC, session, chatType and content; created_at order is conversation order; no duplicates."""
    reference_manager.report_time_unit = unit
    devices = generated_devices(3, 5)
    for device in devices:
        await reference_manager.bind_device(device.mac)
    settings = delivery_settings(tmp_path, reference_manager,
                                 manager_api={"api_mode": api_mode, "report_time_unit": unit})
    summary = await simulate(settings, devices, time_scale=0.02)
    assert summary.sessions_failed == 0
    assert summary.delivery.get("delivered") == summary.user_turns + summary.agent_turns
    spool = host_spool(settings)
    for session_id in summary.session_ids:
        expected = [t for t in spool.turns(session_id) if t.status is not TurnStatus.SKIPPED]
        rows = await reference_manager.rows(session_id)
        assert [(r["chat_type"], r["content"]) for r in rows] == \
            [(int(t.chat_type), t.content) for t in expected]
        assert {r["mac_address"] for r in rows} == {spool.session(session_id).mac}
        created = [r["created_at"] for r in rows]
        assert all(b > a for a, b in zip(created, created[1:])), "created_at must strictly increase"


async def test_unknown_mac_is_parked_then_delivered_once_the_device_is_bound(tmp_path, reference_manager):
    """data:false is not delivery: turns wait as parked and arrive after binding."""
    settings = delivery_settings(tmp_path, reference_manager)
    spool = host_spool(settings)
    session_id = capture_numbered(settings, spool, MAC, 4)
    async with running_shipper(settings, spool):
        await eventually(lambda: spool.status_counts(session_id).get("parked") == 4, what="parked")
        assert await reference_manager.rows(session_id) == []
        await reference_manager.bind_device(MAC)
        await eventually(lambda: spool.status_counts(session_id).get("delivered") == 4, what="delivery")
    assert contents(await reference_manager.rows(session_id)) == [f"turn {i}" for i in range(1, 5)]


async def test_wrong_secret_pauses_delivery_and_loses_nothing(tmp_path, reference_manager):
    """A 401 envelope pauses all delivery; once the secret matches everything arrives in order."""
    await reference_manager.bind_device(MAC)
    settings = delivery_settings(tmp_path, reference_manager, manager_api={"secret": "wrong-secret"})
    spool = host_spool(settings)
    session_id = capture_numbered(settings, spool, MAC, 6)
    async with running_shipper(settings, spool) as shipper:
        await eventually(lambda: not shipper.gate.is_open, what="delivery paused")
        assert spool.status_counts(session_id) == {"pending": 6}
        reference_manager.secret = "wrong-secret"  # the operator fixes the Manager side
        await eventually(lambda: spool.status_counts(session_id).get("delivered") == 6, what="delivery")
    assert contents(await reference_manager.rows(session_id)) == [f"turn {i}" for i in range(1, 7)]


async def test_outage_then_5xx_and_429_storms_deliver_everything_in_order(tmp_path, reference_manager):
    """Down, then 503s, code 500s and 429s with Retry-After: every turn arrives, in order."""
    await reference_manager.bind_device(MAC)
    settings = delivery_settings(tmp_path, reference_manager)
    spool = host_spool(settings)
    sessions = [capture_numbered(settings, spool, MAC, 7, n=n) for n in range(3)]
    await reference_manager.go_down()
    async with running_shipper(settings, spool):
        await eventually(lambda: sum(t.attempts for s in sessions for t in spool.turns(s)) >= 3,
                         what="failed attempts while down")
        reference_manager.fail_http(503, 6)
        reference_manager.fail_code500(4)
        reference_manager.rate_limit(3, retry_after_seconds=0.1)
        await reference_manager.come_up()
        await eventually(lambda: spool.status_counts().get("delivered") == 21, what="delivery")
    for session_id in sessions:
        assert contents(await reference_manager.rows(session_id)) == [f"turn {i}" for i in range(1, 8)]
    assert reference_manager.requests["rate_limited"] == 3


@pytest.mark.parametrize("honour", [False, True])
async def test_reset_after_commit_duplicates_only_turns_in_flight(tmp_path, reference_manager, honour):
    """A reset after commit re-sends just that turn; with Idempotency-Key honoured, nothing twice."""
    await reference_manager.bind_device(MAC)
    reference_manager.honour_idempotency = honour
    settings = delivery_settings(tmp_path, reference_manager)
    spool = host_spool(settings)
    session_id = capture_numbered(settings, spool, MAC, 5)
    reference_manager.reset_after_commit(2)
    async with running_shipper(settings, spool):
        await eventually(lambda: spool.status_counts(session_id).get("delivered") == 5, what="delivery")
    stored = contents(await reference_manager.rows(session_id))
    assert sorted(set(stored)) == sorted(f"turn {i}" for i in range(1, 6))
    duplicates = len(stored) - len(set(stored))
    assert duplicates == (0 if honour else 2)
    assert list(dict.fromkeys(stored)) == [f"turn {i}" for i in range(1, 6)], "order kept"


async def test_validation_rejection_is_dead_lettered_with_the_reason(tmp_path, reference_manager):
    """A 10034 answer (content over the session endpoint's limit) dead-letters with the reason."""
    await reference_manager.bind_device(MAC)
    settings = delivery_settings(tmp_path, reference_manager,
                                 manager_api={"api_mode": "session", "max_content_chars": 4000})
    spool = host_spool(settings)
    session_id = capture_numbered(settings, spool, MAC, 3,
                                  content=lambda i: "x" * 2500 if i == 2 else f"turn {i}")
    async with running_shipper(settings, spool):
        await eventually(lambda: spool.status_counts(session_id).get("dead_letter") == 3, what="dead letter")
    dead = spool.turns(session_id, [TurnStatus.DEAD_LETTER])
    assert all("10034" in t.last_error or "2000" in t.last_error for t in dead), dead[0].last_error
    assert await reference_manager.rows(session_id) == []


async def test_long_content_is_split_into_marked_rows_in_order(tmp_path, reference_manager):
    """A turn longer than the column becomes several rows, nothing truncated, in order."""
    await reference_manager.bind_device(MAC)
    settings = delivery_settings(tmp_path, reference_manager)
    spool = host_spool(settings)
    long_text = " ".join(f"word{i}" for i in range(600))  # ~5,000 characters
    session_id = capture_numbered(settings, spool, MAC, 3, content=lambda i: long_text if i == 2 else f"turn {i}")
    async with running_shipper(settings, spool):
        await eventually(lambda: spool.status_counts(session_id).get("delivered") == 3, what="delivery")
    rows = contents(await reference_manager.rows(session_id))
    assert rows[0] == "turn 1" and rows[-1] == "turn 3"
    parts = rows[1:-1]
    assert len(parts) >= 5 and all(len(p) <= 1024 for p in parts)
    assert parts[1].startswith("(cont. 2/")
    rebuilt = parts[0] + "".join(p.split(") ", 1)[1] for p in parts[1:])
    assert rebuilt.replace(" ", "") == long_text.replace(" ", "")


async def test_turns_accepted_before_a_retry_wait_are_marked_delivered_while_it_waits(tmp_path, reference_manager):
    """Marks are written in groups, but never held over a backoff: a crash while waiting re-sends nothing accepted."""
    await reference_manager.bind_device(MAC)
    settings = delivery_settings(tmp_path, reference_manager,
                                 shipper={"retry_initial": 30.0, "retry_max": 30.0})
    spool = host_spool(settings)
    session_id = capture_numbered(settings, spool, MAC, 6)
    reference_manager.fail_http(503, 1, after=3)  # turns 1-3 accepted (fewer than a group), 4 refused

    def turn_four_failed() -> bool:
        return spool.turns(session_id)[3].attempts >= 1

    async with running_shipper(settings, spool) as shipper:
        await eventually(turn_four_failed, what="turn 4 refused once")
        statuses = [t.status for t in spool.turns(session_id)]
        assert statuses[:3] == [TurnStatus.DELIVERED] * 3, "accepted turns left unmarked over a wait"
        assert statuses[3] is TurnStatus.PENDING
        shipper.stopping.set()  # cut the 30 s backoff short; the rest goes in the drain
    assert contents(await reference_manager.rows(session_id))[:3] == ["turn 1", "turn 2", "turn 3"]


async def test_sessions_delivered_side_by_side_share_their_delivered_marks(tmp_path, reference_manager):
    """Six sessions in flight: every turn arrives once, in order; the "delivered" marks of all of
    them go in shared commits, and no commit ever carries more than a group of one session (the
    most a kill at that moment could make the Manager see twice)."""
    await reference_manager.bind_device(MAC)
    settings = delivery_settings(tmp_path, reference_manager, shipper={"max_concurrent_sessions": 6})
    spool = host_spool(settings)
    sessions = [capture_numbered(settings, spool, MAC, 20, n=n) for n in range(6)]
    commits: list[dict[str, list[int]]] = []

    class CountingDelivery(DeliveryState):
        def mark_delivered_many(self, accepted, now_ms):
            commits.append({session: list(seqs) for session, seqs in accepted.items()})
            super().mark_delivered_many(accepted, now_ms)

    client = ManagerApiClient(settings.manager_api)
    shipper = Shipper(CountingDelivery(spool), client, settings,
                      backups=BackupWriter(settings.chat_history.backup_dir), max_attempts=5)
    try:
        await shipper.run_once(None)
    finally:
        await client.aclose()
    for session_id in sessions:
        assert contents(await reference_manager.rows(session_id)) == [f"turn {i}" for i in range(1, 21)]
        assert spool.status_counts(session_id) == {"delivered": 20}
        marked = [seq for commit in commits for seq in commit.get(session_id, [])]
        assert sorted(marked) == list(range(1, 21)), "every turn marked exactly once"
    assert max(len(seqs) for commit in commits for seqs in commit.values()) <= MARK_DELIVERED_EVERY
    # One commit per group per session would take 6 x ceil(20 / 8) = 18.
    assert len(commits) < 18, f"{len(commits)} commits: sessions in flight did not share them"
    assert any(len(commit) > 1 for commit in commits)


async def test_delivered_marks_refused_for_a_round_send_nothing_twice(tmp_path, reference_manager):
    """The spool refuses the "delivered" commits of a whole round (disk full): the round fails
    and is tried again, the accepted turns are marked before anything is sent, and the Manager
    holds every turn exactly once."""
    await reference_manager.bind_device(MAC)
    settings = delivery_settings(tmp_path, reference_manager,
                                 shipper={"retry_initial": 0.05, "retry_max": 0.1})
    spool = host_spool(settings)
    session_id = capture_numbered(settings, spool, MAC, 12)
    refusals = []

    class FullOnce(DeliveryState):
        def mark_delivered_many(self, accepted, now_ms):
            if len(refusals) < 2:  # the group's commit, then the one at the round's end
                refusals.append(dict(accepted))
                raise sqlite3.OperationalError("database or disk is full")
            super().mark_delivered_many(accepted, now_ms)

    async with running_shipper(settings, spool, delivery=FullOnce(spool)):
        await eventually(lambda: spool.status_counts(session_id).get("delivered") == 12, what="delivery")
    assert refusals and refusals[0][session_id], "the first mark was refused"
    assert contents(await reference_manager.rows(session_id)) == [f"turn {i}" for i in range(1, 13)]
