"""A full disk and the spool cap: the voice session runs on, nothing stored is lost, what
cannot be stored is counted, and capture catches up by itself when space returns.

The full disk is real: a small tmpfs mounted by the test (we run as root), filled until the
kernel answers ENOSPC. Capture goes through the real handlers with LiveKit-shaped events.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from tests.kits.delivery import eventually
from tests.kits.faults import Heartbeat, exchange, fill_disk, room, small_filesystem
from voicelog.handlers.chat_capture import ChatCapture
from voicelog.services.backup import BackupWriter, backup_files, read_document
from voicelog.services.capture import ChatHistoryService
from voicelog.services.config import ChatHistorySettings
from voicelog.services.domain import ChatType, TurnStatus, resolve_identity
from voicelog.services.spool import Spool, open_spool


@pytest.fixture
def full_disk_dir(tmp_path):
    """A 1 MiB real filesystem (tmpfs) for the spool and backups: the WAL alone can fill it."""
    with small_filesystem(tmp_path / "mnt", 1024) as mount:
        yield mount


def service_for(spool: Spool, backups: Path, n: int = 0, **kwargs) -> ChatHistoryService:
    return ChatHistoryService(spool, resolve_identity(room(n)), ChatHistorySettings(),
                              backups=BackupWriter(backups), retry_interval=0.05, **kwargs)


def expected_pairs(count: int, start: int = 0) -> list[tuple[ChatType, str]]:
    pairs = []
    for i in range(start, start + count):
        pairs += [(ChatType.USER, f"question {i} 🙂"), (ChatType.AGENT, f"answer {i} " + "z" * 200)]
    return pairs


async def talk(capture: ChatCapture, start: int, count: int) -> None:
    """Exchanges through the real handlers, yielding to the loop between them as LiveKit would."""
    for i in range(start, start + count):
        exchange(capture, f"question {i} 🙂", f"answer {i} " + "z" * 200)
        await asyncio.sleep(0)


async def test_full_disk_keeps_the_session_running_and_catches_up_when_space_returns(full_disk_dir):
    """ENOSPC mid-session: handlers never fail, the loop keeps ticking, every turn lands later."""
    backups = full_disk_dir / "backups"
    spool = open_spool(backups / "spool.db")
    service = service_for(spool, backups)
    capture = ChatCapture(service)
    heartbeat = Heartbeat().start()
    await talk(capture, 0, 5)
    before = [(t.chat_type, t.content) for t in spool.turns(service.session_id)]
    filler = fill_disk(full_disk_dir)
    with capture_logs() as logs:
        said = 5
        while service.unstored == 0 and said < 400:  # until the disk really refuses a write
            await talk(capture, said, 1)
            said += 1
        await talk(capture, said, 10)
        said += 10
        assert service.unstored > 0 and service.stats.storage_error is not None
        assert [(t.chat_type, t.content) for t in spool.turns(service.session_id)][:10] == before
        filler.unlink()
        await eventually(lambda: service.unstored == 0, timeout=10, what="held writes stored")
    await capture.close()
    await heartbeat.stop()
    events = [entry["event"] for entry in logs]
    assert "spool_write_failed_holding_in_memory" in events and "spool_writes_recovered" in events
    stored = [(t.chat_type, t.content) for t in spool.turns(service.session_id)]
    assert stored == expected_pairs(said)
    assert service.stats.lost == 0 and capture.errors == 0
    assert heartbeat.ticks > 0 and heartbeat.longest_gap < 1.0, "the event loop was blocked"
    [backup] = backup_files(backups)
    assert len(read_document(backup)["turns"]) == 2 * said
    spool.close()


async def test_session_starting_on_a_full_disk_is_registered_once_space_returns(full_disk_dir):
    """A session that begins while the disk is full still starts, and is stored in full later."""
    backups = full_disk_dir / "backups"
    spool = open_spool(backups / "spool.db")
    service_for(spool, backups, n=1).add_message(ChatType.USER, "earlier session")
    filler = fill_disk(full_disk_dir)
    service = service_for(spool, backups, n=2)
    capture = ChatCapture(service)
    await talk(capture, 0, 30)
    assert service.unstored > 0, "the disk really refused the session"
    filler.unlink()
    await eventually(lambda: service.unstored == 0, timeout=10, what="held writes stored")
    await capture.close()
    assert spool.session(service.session_id) is not None
    assert [(t.chat_type, t.content) for t in spool.turns(service.session_id)] == expected_pairs(30)
    assert capture.errors == 0 and service.stats.lost == 0
    spool.close()


async def test_spool_cap_refuses_new_turns_keeps_stored_ones_and_counts_the_dropped(tmp_path):
    """At the cap: stored turns stay, a bounded few wait in memory, the rest are counted and recorded."""
    spool = open_spool(tmp_path / "spool.db", max_bytes=96 * 1024)
    service = service_for(spool, tmp_path, max_backlog=5)
    sent = 0
    while service.unstored == 0 and sent < 2000:
        sent += 1
        service.add_message(ChatType.USER, f"turn {sent} " + "y" * 300)
    stored_at_cap = [t.content for t in spool.turns(service.session_id)]
    for _ in range(20):
        sent += 1
        service.add_message(ChatType.USER, f"turn {sent} " + "y" * 300)
    assert "cap" in service.stats.storage_error and service.unstored == 5
    assert service.stats.lost == 20 - 4, "beyond the bounded backlog, turns are counted as lost"
    assert [t.content for t in spool.turns(service.session_id)] == stored_at_cap
    with spool.connection.write() as conn:  # what retention pruning does to delivered turns
        conn.execute("DELETE FROM turns WHERE session_id=? AND seq <= ?",
                     (service.session_id, len(stored_at_cap) // 2))
    await eventually(lambda: service.unstored == 0, timeout=10, what="held turns stored")
    contents = [t.content for t in spool.turns(service.session_id)]
    assert contents[-5:] == [f"turn {n} " + "y" * 300 for n in range(len(stored_at_cap) + 1,
                                                                    len(stored_at_cap) + 6)]
    assert spool.losses(service.session_id) == {"capture_dropped": 16}
    assert all(t.status is TurnStatus.PENDING for t in spool.turns(service.session_id))
    spool.close()


async def test_shipper_on_a_full_disk_delivers_everything_once_when_space_returns(
        full_disk_dir, reference_manager):
    """The shipper cannot record progress on a full disk; it retries and nothing is lost."""
    from tests.kits.delivery import running_shipper
    from tests.kits.settings import delivery_settings

    await reference_manager.bind_device("68:25:dd:ba:39:78")
    settings = delivery_settings(full_disk_dir, reference_manager,
                                 chat_history={"batch_size": 1, "send_interval": 0.1})
    spool = open_spool(settings.chat_history.spool_file)
    service = service_for(spool, full_disk_dir / "backups")
    for i in range(12):
        service.add_message(ChatType.USER if i % 2 == 0 else ChatType.AGENT, f"turn {i}")
    spool.end_session(service.session_id, ended_ms=1, reason="test")
    filler = fill_disk(full_disk_dir)
    with capture_logs() as logs:
        async with running_shipper(settings, spool):
            await eventually(lambda: any(e["event"] == "delivery_round_failed" for e in logs),
                             what="a delivery round failing on the full disk")
            assert spool.status_counts(service.session_id) == {"pending": 12}
            filler.unlink()
            await eventually(lambda: spool.status_counts(service.session_id) == {"delivered": 12},
                             what="delivery after space returned")
    rows = [r["content"] for r in await reference_manager.rows(service.session_id)]
    assert sorted(set(rows), key=rows.index) == [f"turn {i}" for i in range(12)]
    assert len(rows) - len(set(rows)) <= 1, "at most the one turn in flight is sent twice"
    spool.close()
