"""Audio per turn (issue 17), end to end: real AgentSessions hearing a child, the reference Manager on MariaDB.

The scripted mic (``VoicedAudioInput``) hears a 440 Hz tone exactly while the scripted STT speaks,
so each user turn's clip can be checked against the utterance it should hold.
"""

from __future__ import annotations

import asyncio
import io
import sqlite3
import wave

import numpy as np
import pytest

from tests.kits.settings import delivery_settings
from voicelog.agent.simulation.run import SimulatedDevice, simulate
from voicelog.agent.wiring import host_spool
from voicelog.services.spool import CLIPS_UNREADABLE, ClipStore

MAC = "68:25:dd:ba:39:78"
TIME_SCALE = 0.5  # utterances of about 1 s: long enough to measure, short enough to run quickly
SCRIPT = ({"user": "Hi there can you sing me a song please", "agent": "La la la, a song for you."},
          {"user": "Tell me about the moon", "agent": "The moon is made of rock."},
          {"user": "你好 小熊 给我 讲个 故事吧", "agent": "好的！从前有一只小熊。"})
AUDIO_ON = {"enabled": True}


def wav_of(audio: bytes) -> tuple[tuple[int, int, int], float, np.ndarray]:
    """(channels, sample width, rate), seconds and samples of a WAV file."""
    with wave.open(io.BytesIO(audio), "rb") as wav:
        facts = (wav.getnchannels(), wav.getsampwidth(), wav.getframerate())
        samples = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2")
        return facts, wav.getnframes() / wav.getframerate(), samples


def voiced_seconds(samples: np.ndarray, rate: int = 16_000) -> float:
    """How long the tone (the child's voice) sounds in a clip: 10 ms windows above the noise floor."""
    window = rate // 100
    frames = samples[: len(samples) // window * window].astype(float).reshape(-1, window)
    return float((np.sqrt((frames ** 2).mean(axis=1)) > 1000).sum() * window / rate)


def files_with(root, magic: bytes) -> list:
    return [p for p in root.rglob("*") if p.is_file() and magic in p.read_bytes()]


async def test_each_user_turn_report_carries_a_wav_of_its_utterance(tmp_path, reference_manager):
    """With audio on, every user row has audio: a 16 kHz mono 16-bit WAV within 0.5 s of what was said."""
    await reference_manager.bind_device(MAC, chat_history_conf=2)
    settings = delivery_settings(tmp_path, reference_manager, audio=AUDIO_ON)
    summary = await simulate(settings, [SimulatedDevice(MAC, SCRIPT)], time_scale=TIME_SCALE)
    assert summary.delivery == {"delivered": 6}, summary
    spoken = summary.per_session[0]["utterance_seconds"]
    assert len(spoken) == 3 and all(s > 0.5 for s in spoken), spoken
    rows = await reference_manager.rows(summary.session_ids[0])
    user_rows = [r for r in rows if r["chat_type"] == 1]
    assert [r["content"] for r in user_rows] == [t["user"] for t in SCRIPT]
    assert all(r["audio_id"] is None for r in rows if r["chat_type"] == 2), "replies carry no audio"
    for row, utterance in zip(user_rows, spoken, strict=True):
        assert row["audio_id"], row
        facts, seconds, samples = wav_of(await reference_manager.audio(row["audio_id"]))
        assert facts == (1, 2, 16_000)
        assert abs(seconds - utterance) <= 0.5, (seconds, utterance)
        # What the clip holds is the child's voice: the tone lasts as long as the utterance.
        assert abs(voiced_seconds(samples) - utterance) <= 0.15, (voiced_seconds(samples), utterance)


async def test_with_audio_off_nothing_is_teed_stored_or_sent(tmp_path, reference_manager):
    """audio.enabled false (the default): audio_id null on every row, no clip in the spool or any file."""
    await reference_manager.bind_device(MAC, chat_history_conf=2)
    settings = delivery_settings(tmp_path, reference_manager)
    assert settings.audio.enabled is False
    summary = await simulate(settings, [SimulatedDevice(MAC, SCRIPT)], time_scale=TIME_SCALE)
    assert summary.delivery == {"delivered": 6}
    rows = await reference_manager.rows(summary.session_ids[0])
    assert len(rows) == 6 and all(r["audio_id"] is None for r in rows)
    spool = host_spool(settings)
    try:
        assert ClipStore(spool).totals() == (0, 0)
    finally:
        spool.close()
    assert files_with(tmp_path, b"OggS") == [] and files_with(tmp_path, b"RIFF") == []


@pytest.mark.parametrize("encrypted", [False, True])
async def test_a_corrupt_clip_is_sent_without_audio_and_its_text_still_goes(tmp_path, reference_manager,
                                                                          monkeypatch, encrypted):
    """A damaged clip never blocks its turn: the text is delivered, audio null, the clip counted."""
    if encrypted:
        from voicelog.services.sealing import generate_key

        monkeypatch.setenv("VOICELOG_CONTENT_KEYS", generate_key())
    await reference_manager.bind_device(MAC, chat_history_conf=2)
    settings = delivery_settings(tmp_path, reference_manager, audio=AUDIO_ON,
                                 chat_history={"encrypt_content": encrypted})
    summary = await simulate(settings, [SimulatedDevice(MAC, SCRIPT[:2])], time_scale=TIME_SCALE,
                             deliver=False)
    session_id = summary.session_ids[0]
    with sqlite3.connect(settings.chat_history.spool_file) as db:  # a bit flipped on the disk
        db.execute("UPDATE clips SET data = CAST(substr(data, 1, 40) || x'00' || substr(data, 42) AS BLOB)"
                   " WHERE session_id = ? AND seq = 1", (session_id,))
    summary = await simulate(settings, [], time_scale=TIME_SCALE)  # the shipper alone delivers the backlog
    assert summary.backlog_delivered == 4
    rows = await reference_manager.rows(session_id)
    assert [r["content"] for r in rows if r["chat_type"] == 1] == [t["user"] for t in SCRIPT[:2]]
    assert [bool(r["audio_id"]) for r in rows if r["chat_type"] == 1] == [False, True]
    spool = host_spool(settings)
    try:
        assert ClipStore(spool).counter(CLIPS_UNREADABLE) == 1
    finally:
        spool.close()


async def test_session_mode_sends_no_audio_and_says_so(tmp_path, reference_manager, caplog):
    """The session upload has no audio field: turns go without it, and one log line says why."""
    await reference_manager.bind_device(MAC, chat_history_conf=2)
    settings = delivery_settings(tmp_path, reference_manager, audio=AUDIO_ON,
                                 manager_api={"api_mode": "session"}, logging={"level": "WARNING"})
    summary = await simulate(settings, [SimulatedDevice(MAC, SCRIPT[:1])], time_scale=TIME_SCALE)
    assert summary.delivery == {"delivered": 2}
    rows = await reference_manager.rows(summary.session_ids[0])
    assert len(rows) == 2 and all(r["audio_id"] is None for r in rows)
    assert caplog.text.count("audio_not_sent_in_session_mode") == 1


async def test_a_replayed_turn_carries_its_audio_again(tmp_path, reference_manager):
    """`backups replay --force` re-sends the identical record: the child's rows come with their audio."""
    from voicelog.cli.app import main

    await reference_manager.bind_device(MAC, chat_history_conf=2)
    settings = delivery_settings(tmp_path, reference_manager, audio=AUDIO_ON)
    summary = await simulate(settings, [SimulatedDevice(MAC, SCRIPT[:1])], time_scale=TIME_SCALE)
    assert summary.delivery == {"delivered": 2}
    session_id = summary.session_ids[0]
    code = await asyncio.to_thread(main, ["--config", str(tmp_path / "voicelog-test.yaml"), "backups", "replay",
                                          "--session", session_id, "--force"])
    assert code == 0
    rows = await reference_manager.rows(session_id)
    user_rows = [r for r in rows if r["chat_type"] == 1]
    assert len(rows) == 4 and len(user_rows) == 2 and all(r["audio_id"] for r in user_rows)
    first, again = [await reference_manager.audio(r["audio_id"]) for r in user_rows]
    assert first == again


async def test_with_replies_on_the_toys_audio_goes_too_cut_where_the_child_interrupted(tmp_path,
                                                                                     reference_manager):
    """audio.replies: each reply's row carries its audio as played; a barged-in reply's is shorter than its text's."""
    from voicelog.agent.simulation.scripted import SECONDS_PER_CHAR

    await reference_manager.bind_device(MAC, chat_history_conf=2)
    long_reply = "Once upon a time there was a small dragon who loved to read books in a cave by the sea."
    script = ({"user": "Tell me a story please", "agent": long_reply, "barge_in_after_chars": 20},
              {"user": "Stop, what about cats", "agent": "Cats like naps."})
    settings = delivery_settings(tmp_path, reference_manager, audio={**AUDIO_ON, "replies": True})
    summary = await simulate(settings, [SimulatedDevice(MAC, script)], time_scale=TIME_SCALE)
    assert summary.delivery == {"delivered": 4}
    rows = await reference_manager.rows(summary.session_ids[0])
    assert [r["chat_type"] for r in rows] == [1, 2, 1, 2] and all(r["audio_id"] for r in rows)
    cut_reply, full_reply = [wav_of(await reference_manager.audio(r["audio_id"])) for r in rows[1::2]]
    assert cut_reply[0] == full_reply[0] == (1, 2, 16_000)
    full_length = len(long_reply) * SECONDS_PER_CHAR * TIME_SCALE
    assert 0.1 < cut_reply[1] < full_length - 0.5, (cut_reply[1], full_length)
    assert abs(full_reply[1] - len("Cats like naps.") * SECONDS_PER_CHAR * TIME_SCALE) <= 0.3, full_reply[1]
