"""Clips are children's voices: encrypted with the text, erased with it, never kept for an opted-out toy."""

from __future__ import annotations

import pytest

from tests.audio.test_audio_delivery import AUDIO_ON, MAC, SCRIPT, TIME_SCALE, files_with
from tests.kits.settings import make_settings
from voicelog.agent.simulation.run import SimulatedDevice, simulate
from voicelog.agent.wiring import host_spool
from voicelog.services.backup import BackupWriter
from voicelog.services.privacy import prune, purge
from voicelog.services.sealing import generate_key
from voicelog.services.spool import ClipStore, ClipUnreadable, Spool, open_spool

DAY_MS = 86_400_000


async def captured(tmp_path, **sections) -> tuple[object, str]:
    """Settings with audio on, and one voiced two-turn session captured (not delivered)."""
    settings = make_settings(tmp_path, audio=AUDIO_ON, **sections)
    summary = await simulate(settings, [SimulatedDevice(MAC, SCRIPT[:2])], time_scale=TIME_SCALE, deliver=False)
    return settings, summary.session_ids[0]


def clips(settings) -> tuple[int, int]:
    spool = host_spool(settings)
    try:
        return ClipStore(spool).totals()
    finally:
        spool.close()


async def test_with_encryption_on_no_clip_is_readable_without_the_key(tmp_path, monkeypatch):
    """No Ogg page is on disk in the clear; without the key a clip cannot be opened, with it it plays."""
    monkeypatch.setenv("VOICELOG_CONTENT_KEYS", generate_key())
    settings, session_id = await captured(tmp_path, chat_history={"encrypt_content": True})
    assert clips(settings)[0] == 2
    assert files_with(tmp_path, b"OggS") == []
    keyless: Spool = open_spool(settings.chat_history.spool_file, backup_dir=tmp_path / "backups")
    try:
        store = ClipStore(keyless)
        for seq in store.of_session(session_id):
            with pytest.raises(ClipUnreadable, match="encrypted"):
                store.opened(store.stored(session_id, seq))
    finally:
        keyless.close()
    spool = host_spool(settings)
    try:
        store = ClipStore(spool)
        assert all(store.opened(store.stored(session_id, seq)).startswith(b"OggS")
                   for seq in store.of_session(session_id))
    finally:
        spool.close()


async def test_an_opted_out_device_has_no_clip(tmp_path):
    """A MAC in opt_out_macs: no audio teed or stored, whatever audio.enabled says."""
    settings, _ = await captured(tmp_path, chat_history={"opt_out_macs": [MAC]})
    assert clips(settings) == (0, 0)
    assert files_with(tmp_path, b"OggS") == []


async def test_purge_removes_the_devices_clips_from_every_file(tmp_path):
    """`purge` of the device: its clips go with its turns, and no Ogg page is left in the spool or WAL."""
    settings, _ = await captured(tmp_path)
    assert clips(settings)[0] == 2 and files_with(tmp_path, b"OggS")
    spool = host_spool(settings)
    try:
        report = purge(spool, settings.chat_history.backup_dir, mac=MAC)
    finally:
        spool.close()
    assert report.turns == 4
    assert clips(settings) == (0, 0)
    assert files_with(tmp_path, b"OggS") == []


async def test_retention_removes_expired_sessions_clips(tmp_path):
    """Retention deletes an expired session's clips with its turns (secure_delete zeroes their pages)."""
    settings, session_id = await captured(tmp_path)
    spool = host_spool(settings)
    try:
        assert ClipStore(spool).totals()[0] == 2
        later = spool.session(session_id).ended_ms + 400 * DAY_MS
        report = prune(spool, BackupWriter(settings.chat_history.backup_dir), settings.chat_history,
                       now_ms=later, include_undelivered=True)
        assert [s.session_id for s in report.removed] == [session_id]
        assert ClipStore(spool).totals() == (0, 0)
        assert not ClipStore(spool).is_full(1)  # the running total the cap is checked against followed
        spool.checkpoint()
    finally:
        spool.close()
    assert files_with(tmp_path, b"OggS") == []
