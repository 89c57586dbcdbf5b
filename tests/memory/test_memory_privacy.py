"""Memory is part of privacy: opt-out, forget, purge, retention and encryption reach both stores."""

import os
import signal
from pathlib import Path

from tests.kits.redis import keys_and_values, private_redis
from tests.kits.settings import make_settings
from voicelog.agent.memory_writer import flush_memory
from voicelog.agent.preload import preload_memory
from voicelog.agent.simulation.run import SimulatedDevice, simulate
from voicelog.agent.wiring import host_spool
from voicelog.cli.app import main
from voicelog.services.domain import DONE, resolve_identity, wall_ms
from voicelog.services.memory import device_ref, open_memory_reader
from voicelog.services.sealing import generate_key
from voicelog.services.spool import DeliveryState

MAC, OTHER = "68:25:dd:ba:39:78", "68:25:dd:00:00:01"
WORDS = "my secret hiding place is under the red slide"
OTHER_WORDS = "pizza day is on friday"


def script(words: str) -> tuple[dict, ...]:
    return ({"user": words, "agent": "I will keep that secret 🤫"},)


def redis_mentions(redis_space, *needles: str) -> list[bytes]:
    """Keys of the test's Redis space whose name or value holds any of ``needles``."""
    found = keys_and_values(redis_space.url, redis_space.prefix)
    return [key for key, value in found.items()
            if any(n.encode() in key or n.encode() in value for n in needles)]


def device_keys(redis_space, mac: str) -> list[bytes]:
    return sorted(k for k in keys_and_values(redis_space.url, redis_space.prefix)
                  if f"{{{device_ref(mac)}}}".encode() in k)


def files_holding(root: Path, *needles: str) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and any(n.encode() in p.read_bytes() for n in needles)]


async def remembered(settings, mac: str) -> list[str]:
    spool = host_spool(settings)
    reader = open_memory_reader(settings, spool)
    try:
        return [r.text for r in (await reader.read(mac)).turns]
    finally:
        await reader.aclose()
        spool.close()


async def capture_both(settings) -> None:
    summary = await simulate(settings, [SimulatedDevice(MAC, script(WORDS)),
                                        SimulatedDevice(OTHER, script(OTHER_WORDS))],
                             time_scale=0.02, deliver=False)
    assert summary.sessions_failed == 0 and summary.memory_flushed in (True, None)


async def test_an_opted_out_device_is_neither_read_nor_written(tmp_path, redis_space):
    """An opted-out device's sessions push nothing to Redis and start without the memory it had before."""
    (tmp_path / "before").mkdir()
    before = make_settings(tmp_path / "before", memory=redis_space.memory())
    await simulate(before, [SimulatedDevice(MAC, script("words from before the opt-out"))], time_scale=0.02,
                   deliver=False)
    settings = make_settings(tmp_path, memory=redis_space.memory(), chat_history={"opt_out_macs": [MAC]})
    summary = await simulate(settings, [SimulatedDevice(MAC, script(WORDS)), SimulatedDevice(MAC, script(WORDS))],
                             time_scale=0.02, deliver=False)
    assert [p["memory"] for p in summary.per_session] == [None, None]
    assert summary.preloaded_turns == 0
    assert redis_mentions(redis_space, WORDS, "hiding place") == []
    assert files_holding(tmp_path / "backups", WORDS, MAC.replace(":", "")) == []
    spool = host_spool(settings)
    reader = open_memory_reader(settings, spool)
    identity = resolve_identity(f"room_{MAC.replace(':', '')}", {"device_mac": OTHER}, OTHER)
    try:  # the gateway's attribute opts a device out too
        flagged = await preload_memory(reader, identity, settings, {"voicelog_history": "off"})
        assert flagged.preload is None and flagged.chat_ctx is None
    finally:
        await reader.aclose()
        spool.close()


async def test_memory_forget_empties_both_stores_and_keeps_the_turns_for_delivery(tmp_path, redis_space, capsys):
    """`memory forget` leaves no turn of the device in Redis or in what a session starts with; its turns
    stay in the spool for delivery; what it says afterwards is remembered again."""
    settings = make_settings(tmp_path, memory=redis_space.memory())
    await capture_both(settings)
    assert await remembered(settings, MAC) == [WORDS, "I will keep that secret 🤫"]
    config = str(tmp_path / "voicelog-test.yaml")
    assert main(["--config", config, "memory", "forget", "--mac", MAC]) == 0
    assert "Redis: erased (2 turn(s))" in capsys.readouterr().out
    assert redis_mentions(redis_space, WORDS) == []
    assert [k for k in device_keys(redis_space, MAC) if not k.endswith(b":forget")] == []
    assert await remembered(settings, MAC) == []
    assert await remembered(settings, OTHER) == [OTHER_WORDS, "I will keep that secret 🤫"]
    spool = host_spool(settings)
    try:
        assert any(t.content == WORDS for s in spool.sessions_of(mac=MAC) for t in spool.turns(s))
    finally:
        spool.close()
    await simulate(settings, [SimulatedDevice(MAC, script("a new start"))], time_scale=0.02, deliver=False)
    assert await remembered(settings, MAC) == ["a new start", "I will keep that secret 🤫"]


async def test_a_forget_while_redis_hangs_is_applied_by_the_writer_once_redis_answers(tmp_path, capsys):
    """With Redis unresponsive, forget exits 1 and says it is queued; the next push applies it in Redis."""
    with private_redis(tmp_path) as server:
        settings = make_settings(tmp_path, memory={"backend": "redis", "redis_url": server.url})
        await capture_both(settings)
        os.kill(server.process.pid, signal.SIGSTOP)
        try:
            code = main(["--config", str(tmp_path / "voicelog-test.yaml"), "memory", "forget", "--mac", MAC])
            assert code == 1 and "Redis: unreachable" in capsys.readouterr().out
            assert await remembered(settings, MAC) == []  # this host's fallback honours it at once
        finally:
            os.kill(server.process.pid, signal.SIGCONT)
        assert any(WORDS.encode() in v for v in keys_and_values(server.url, "voicelog:mem").values())
        spool = host_spool(settings)
        try:
            assert await flush_memory(settings, spool) is True  # the daemon's writer does this every 0.5 s
        finally:
            spool.close()
        assert not any(WORDS.encode() in v for v in keys_and_values(server.url, "voicelog:mem").values())
        assert any(OTHER_WORDS.encode() in v for v in keys_and_values(server.url, "voicelog:mem").values())


async def test_backups_purge_leaves_nothing_of_the_device_in_redis_or_the_data_directory(tmp_path, redis_space):
    """After `backups purge --mac` no Redis key or value and no file under the data directory holds the
    device's MAC or words; the other device keeps its memory."""
    settings = make_settings(tmp_path, memory=redis_space.memory())
    await capture_both(settings)
    config = str(tmp_path / "voicelog-test.yaml")
    assert main(["--config", config, "memory", "forget", "--mac", MAC]) == 0  # leaves a cut-off row
    assert main(["--config", config, "backups", "purge", "--mac", MAC]) == 0
    needles = (MAC, MAC.replace(":", ""), WORDS)
    assert redis_mentions(redis_space, *needles) == []
    assert [k for k in device_keys(redis_space, MAC) if not k.endswith(b":forget")] == []
    assert files_holding(tmp_path / "backups", *needles) == []
    assert await remembered(settings, OTHER) == [OTHER_WORDS, "I will keep that secret 🤫"]


async def test_retention_takes_pruned_sessions_out_of_redis_too(tmp_path, redis_space):
    """Sessions pruned by retention leave Redis at once, even before their TTL."""
    settings = make_settings(tmp_path, memory=redis_space.memory(), chat_history={"retention_days": 0})
    await capture_both(settings)
    spool = host_spool(settings)
    try:
        delivery = DeliveryState(spool)
        for session_id in spool.sessions_of(mac=MAC):
            delivery.mark_delivered(session_id, [t.seq for t in spool.turns(session_id)
                                                 if t.status not in DONE], wall_ms())
    finally:
        spool.close()
    assert main(["--config", str(tmp_path / "voicelog-test.yaml"), "backups", "prune"]) == 0
    assert redis_mentions(redis_space, WORDS) == []
    assert await remembered(settings, MAC) == []
    assert redis_mentions(redis_space, OTHER_WORDS), "undelivered sessions are kept, and so is their memory"


async def test_content_in_redis_is_sealed_with_the_spools_keys(tmp_path, redis_space, monkeypatch):
    """With encrypt_content on, Redis holds only sealed text; a box with the key preloads the words,
    a box without it preloads nothing rather than ciphertext."""
    monkeypatch.setenv("VOICELOG_CONTENT_KEYS", generate_key())
    settings = make_settings(tmp_path, memory=redis_space.memory(), chat_history={"encrypt_content": True})
    await capture_both(settings)
    values = keys_and_values(redis_space.url, redis_space.prefix).values()
    assert not any(WORDS.encode() in v for v in values)
    assert sum(b"enc:v1:" in v for v in values) == 4
    assert await remembered(settings, MAC) == [WORDS, "I will keep that secret 🤫"]
    (tmp_path / "keyless").mkdir()
    keyless = make_settings(tmp_path / "keyless", memory=redis_space.memory())
    assert await remembered(keyless, MAC) == []
