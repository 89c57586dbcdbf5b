"""With encryption on, no word a child said is on disk in plaintext, yet delivery and support work."""

import json

import pytest

from tests.kits.delivery import eventually, running_shipper
from tests.kits.settings import delivery_settings
from voicelog.agent.simulation.run import SimulatedDevice, simulate
from voicelog.agent.wiring import host_spool
from voicelog.cli.app import main
from voicelog.services.domain import TurnStatus
from voicelog.services.sealing import generate_key

MAC = "68:25:dd:ba:39:78"
WORDS = "the treasure map is under my pillow"


@pytest.fixture
def key(monkeypatch):
    value = generate_key()
    monkeypatch.setenv("VOICELOG_CONTENT_KEYS", value)
    return value


def files_holding(root, text):
    return [p for p in root.rglob("*") if p.is_file() and text.encode() in p.read_bytes()]


async def test_encrypted_spool_and_backups_hold_no_plaintext_and_deliver_exactly(tmp_path, key,
                                                                                reference_manager):
    """Spool, WAL and backup files never contain the words; the Manager still receives them exactly."""
    await reference_manager.bind_device(MAC)
    settings = delivery_settings(tmp_path, reference_manager, chat_history={"encrypt_content": True})
    device = SimulatedDevice(MAC, ({"user": WORDS, "agent": "I won't tell anyone 🤐"},))
    summary = await simulate(settings, [device], time_scale=0.02)
    assert summary.delivery.get("delivered") == 2
    assert files_holding(tmp_path / "backups", WORDS) == []
    assert files_holding(tmp_path / "backups", "anyone") == []
    rows = await reference_manager.rows(summary.session_ids[0])
    assert [r["content"] for r in rows] == [WORDS, "I won't tell anyone 🤐"]


async def test_an_encrypted_backup_replays_correctly_with_the_key(tmp_path, key, reference_manager, capsys):
    """A backup copied from an encrypting box replays with the key and shows readable text."""
    await reference_manager.bind_device(MAC)
    source = tmp_path / "box-a"
    source.mkdir()
    settings = delivery_settings(source, reference_manager, chat_history={"encrypt_content": True})
    device = SimulatedDevice(MAC, ({"user": WORDS, "agent": "Secret kept."},))
    summary = await simulate(settings, [device], time_scale=0.02, deliver=False)
    backup = next((source / "backups").glob("*/*.json"))
    assert WORDS not in backup.read_text()
    target = tmp_path / "box-b"
    target.mkdir()
    config = target / "config.yaml"
    config.write_text(json.dumps({
        "manager_api": {"url": reference_manager.url, "secret": reference_manager.secret},
        "chat_history": {"backup_dir": str(target / "backups"), "encrypt_content": True},
        "shipper": {"retry_initial": 0.02, "retry_max": 0.1}, "http": {"listen": ""}}))
    assert main(["--config", str(config), "backups", "show", str(backup)]) == 0
    assert WORDS in capsys.readouterr().out
    import asyncio

    assert await asyncio.to_thread(main, ["--config", str(config), "backups", "replay", str(backup)]) == 0
    rows = await reference_manager.rows(summary.session_ids[0])
    assert [r["content"] for r in rows] == [WORDS, "Secret kept."]


async def test_without_the_key_turns_are_parked_not_sent_as_ciphertext(tmp_path, key, reference_manager,
                                                                      monkeypatch):
    """A box lacking the key never sends sealed text to the Manager; the turns wait, parked."""
    await reference_manager.bind_device(MAC)
    settings = delivery_settings(tmp_path, reference_manager, chat_history={"encrypt_content": True})
    await simulate(settings, [SimulatedDevice(MAC, ({"user": WORDS, "agent": "ok"},))],
                   time_scale=0.02, deliver=False)
    plain = delivery_settings(tmp_path, reference_manager)  # encryption off, no key to open
    spool = host_spool(plain)
    async with running_shipper(plain, spool):
        await eventually(lambda: spool.status_counts().get(TurnStatus.PARKED.value) == 2, what="parked")
    assert await reference_manager.rows() == []
