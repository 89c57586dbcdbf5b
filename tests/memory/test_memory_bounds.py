"""What a session starts with holds to max_turns, max_chars, the TTL, forget cut-offs and agents."""

import time
from pathlib import Path

import pytest

from tests.kits.delivery import eventually, room_for
from tests.kits.redis import keys_and_values
from tests.kits.settings import make_settings
from voicelog.agent.memory_writer import flush_memory
from voicelog.agent.wiring import host_spool
from voicelog.services.backup import BackupWriter
from voicelog.services.capture import ChatHistoryService
from voicelog.services.domain import ChatType, resolve_identity, wall_ms
from voicelog.services.memory import MemoryEraser, open_memory_reader
from voicelog.services.privacy import purge
from voicelog.services.spool import DeliveryState

MAC = "02:00:00:00:00:42"


def capture(settings, spool, texts: list[str], *, n: int = 0, at: float | None = None,
            mac: str = MAC, open_last: bool = False) -> str:
    """Store alternating child/toy turns in session ``n`` (captured ``at`` a given time); its id."""
    identity = resolve_identity(room_for(mac, n), {"device_mac": mac}, mac)
    service = ChatHistoryService(spool, identity, settings.chat_history,
                                 backups=BackupWriter(settings.chat_history.backup_dir))
    for i, text in enumerate(texts):
        kind = ChatType.USER if i % 2 == 0 else ChatType.AGENT
        if open_last and i == len(texts) - 1:
            service.open_turn(kind, text, timestamp=at)
        else:
            service.add_message(kind, text, None if at is None else at + i / 1000)
    return identity.session_id


async def read(settings, spool, **kwargs):
    reader = open_memory_reader(settings, spool)
    try:
        return await reader.read(MAC, **kwargs)
    finally:
        await reader.aclose()


def backend_settings(tmp_path: Path, backend: str, redis_space, **memory):
    extra = redis_space.memory(**memory) if backend == "redis" else memory
    return make_settings(tmp_path, memory=extra)


async def settle(settings, spool) -> None:
    """With Redis: what was captured is pushed, as the daemon does within 1 s."""
    if settings.memory.uses_redis:
        assert await flush_memory(settings, spool) is True


@pytest.mark.parametrize("backend", ["local", "redis"])
async def test_max_turns_and_max_chars_keep_the_newest_whole_turns(tmp_path, redis_space, backend):
    """Of 30 turns only the newest max_turns are kept, then whole turns go, oldest first, to fit max_chars."""
    settings = backend_settings(tmp_path, backend, redis_space, max_turns=6, max_chars=100)
    spool = host_spool(settings)
    try:
        texts = [f"turn {i:02d} " + "x" * (10 if i < 28 else 30) for i in range(30)]
        capture(settings, spool, texts[:15], n=1)
        capture(settings, spool, texts[15:], n=2)
        await settle(settings, spool)
        preload = await read(settings, spool)
    finally:
        spool.close()
    assert preload.store == backend and not preload.fell_back
    got = [r.text for r in preload.turns]
    # newest 6 = turns 24..29: 4 x 18 chars + 2 x 38 = 148 > 100, so 24 and 25 go: 18 + 18 + 38 + 38 = 112
    # still > 100, so 26 goes too: 94.
    assert got == texts[27:]
    assert [r.role for r in preload.turns] == ["user", "assistant", "user"]


@pytest.mark.parametrize("backend", ["local", "redis"])
async def test_an_expired_turn_is_never_preloaded(tmp_path, redis_space, backend):
    """A turn older than ttl_hours is left out; the ones inside the window stay."""
    settings = backend_settings(tmp_path, backend, redis_space, ttl_hours=1)
    spool = host_spool(settings)
    try:
        capture(settings, spool, ["from two hours ago", "old reply"], n=1, at=time.time() - 7200)
        capture(settings, spool, ["from a minute ago", "new reply"], n=2, at=time.time() - 60)
        await settle(settings, spool)
        preload = await read(settings, spool)
        later = await read(settings, spool, now_ms=wall_ms() + 3_600_000)  # an hour on: all expired
    finally:
        spool.close()
    assert [r.text for r in preload.turns] == ["from a minute ago", "new reply"]
    assert later.turns == ()


async def test_redis_itself_drops_each_turn_when_its_ttl_ends(tmp_path, redis_space):
    """Turn keys expire on their own TTL: after it nothing of the turn is left in Redis."""
    settings = make_settings(tmp_path, memory=redis_space.memory(ttl_hours=0.0005))  # 1.8 s
    spool = host_spool(settings)
    try:
        capture(settings, spool, ["ephemeral words", "gone soon"])
        await settle(settings, spool)
        found = keys_and_values(redis_space.url, redis_space.prefix)
        assert any(b"ephemeral words" in v for v in found.values())
        await eventually(lambda: not any(b"ephemeral" in v or b"gone soon" in v for v in
                                         keys_and_values(redis_space.url, redis_space.prefix).values()),
                         timeout=10, what="the turns to expire in Redis")
        leftover = [k for k in keys_and_values(redis_space.url, redis_space.prefix) if b":t:" in k]
        assert leftover == []
    finally:
        spool.close()


async def test_a_device_moved_to_another_agent_starts_fresh_once_the_move_is_recorded(tmp_path):
    """Turns spoken with the device's earlier agent are left out once a later session names a new agent."""
    settings = make_settings(tmp_path)
    spool = host_spool(settings)
    try:
        old = capture(settings, spool, ["hi old agent", "hello from A"], n=1, at=time.time() - 120)
        DeliveryState(spool).set_agent_id(old, "agentA")
        assert [r.text for r in (await read(settings, spool)).turns] == ["hi old agent", "hello from A"]
        new = capture(settings, spool, ["hi new agent", "hello from B"], n=2, at=time.time() - 60)
        DeliveryState(spool).set_agent_id(new, "agentB")
        assert [r.text for r in (await read(settings, spool)).turns] == ["hi new agent", "hello from B"]
        # The gateway may name the agent at session start: that wins.
        named = await read(settings, spool, agent_id="agentA")
        assert [r.text for r in named.turns] == ["hi old agent", "hello from A"]
    finally:
        spool.close()


async def test_writer_pushes_turns_sealed_late_and_turns_stored_after_a_purge(tmp_path, redis_space):
    """A turn still open when first seen reaches Redis once sealed; after a purge of the newest session
    (SQLite hands its rowids out again) new turns still reach Redis."""
    settings = make_settings(tmp_path, memory=redis_space.memory())
    spool = host_spool(settings)
    try:
        kept = capture(settings, spool, ["kept one", "kept two"], n=1)
        gone = capture(settings, spool, ["purged one", "purged two", "purged three"], n=2)
        await settle(settings, spool)
        purge(spool, settings.chat_history.backup_dir, session_id=gone,
              memory=MemoryEraser(settings.memory, spool))
        late = capture(settings, spool, ["after purge", "reply after", "still talking"], n=3, open_last=True)
        await settle(settings, spool)
        assert [r.text for r in (await read(settings, spool)).turns][-2:] == ["after purge", "reply after"]
        service = ChatHistoryService(spool, resolve_identity(room_for(MAC, 3), {"device_mac": MAC}, MAC),
                                     settings.chat_history)
        turn = spool.turns(late)[-1]
        service.update_turn(turn, "still talking, now done", seal=True)
        await settle(settings, spool)
        (tmp_path / "other").mkdir()
        settings_local_only = make_settings(tmp_path / "other", memory=redis_space.memory())
        other_spool = host_spool(settings_local_only)  # an empty host: everything comes from Redis
        try:
            texts = [r.text for r in (await read(settings_local_only, other_spool)).turns]
        finally:
            other_spool.close()
        assert texts == ["kept one", "kept two", "after purge", "reply after", "still talking, now done"]
        assert kept
    finally:
        spool.close()
