"""Clips stay bounded: in length per turn, in total per box, and the ring a session holds."""

from __future__ import annotations

import asyncio
import math

import numpy as np
import pytest

from tests.audio.test_audio_delivery import AUDIO_ON, SCRIPT, TIME_SCALE
from tests.kits.delivery import room_for
from tests.kits.settings import make_settings
from voicelog.agent.simulation.run import SimulatedDevice, simulate
from voicelog.agent.wiring import host_spool
from voicelog.services.audio import AudioRing, ClipError, decode_clip, encode_clip, pcm_seconds
from voicelog.services.capture import ChatHistoryService, ClipKeeper
from voicelog.services.domain import ChatType, resolve_identity
from voicelog.services.ops import Metrics, SpoolStats
from voicelog.services.spool import CLIPS_SKIPPED_FULL, ClipStore

RATE = 16_000


def tone(seconds: float, hz: float = 440.0) -> bytes:
    t = np.arange(int(seconds * RATE)) / RATE
    return (np.sin(2 * math.pi * hz * t) * 8000).astype("<i2").tobytes()


def test_a_clip_round_trips_through_opus_at_its_length():
    """Encoded and decoded, a clip keeps its duration to the sample, and is far smaller than WAV."""
    pcm = tone(2.5)
    clip = encode_clip(pcm)
    assert len(clip) < len(pcm) / 5
    assert pcm_seconds(decode_clip(clip, max_seconds=2.5)) == 2.5
    with pytest.raises(ClipError):
        decode_clip(b"not a clip at all" * 10)


def test_the_ring_cuts_by_wall_clock_and_forgets_the_oldest():
    """Chunks are placed by the time their last sample arrived; past the limit the oldest go."""
    ring = AudioRing(seconds=2.0)
    for k in range(1, 51):  # 50 chunks of 100 ms arriving at t = 0.1, 0.2, ..., 5.0
        ring.push(b"\x01\x00" * 1600, received_at=k * 0.1)
    assert ring.held_seconds == pytest.approx(2.0, abs=0.1)
    assert pcm_seconds(ring.cut(4.0, 4.5)) == pytest.approx(0.5, abs=0.001)
    assert ring.cut(0.0, 2.0) == b""  # long forgotten
    assert pcm_seconds(ring.cut(4.95, 9.0)) == pytest.approx(0.05, abs=0.001)


async def test_the_box_cap_holds_over_a_long_run_and_text_is_never_affected(tmp_path):
    """300 turns' clips into a 0.2 MB cap: the total never passes it, the rest are skipped and counted."""
    settings = make_settings(tmp_path, audio={"enabled": True, "max_mb": 0.2})
    spool = host_spool(settings)
    store = ClipStore(spool)
    kept = skipped = 0
    try:
        for n in range(10):
            mac = f"02:00:00:00:00:{n:02x}"
            service = ChatHistoryService(spool, resolve_identity(room_for(mac, n), {}, mac), settings.chat_history)
            keeper = ClipKeeper(spool, settings.audio, service.session_id)
            for _ in range(30):
                turn = service.add_message(ChatType.USER, "a long story about dragons")
                keeper.keep(turn.seq, tone(1.5))
                await asyncio.sleep(0)
            await keeper.drain(timeout=30)
            await service.cleanup()
            assert store.totals()[1] <= settings.audio.max_bytes
            kept, skipped = kept + keeper.stats.kept, skipped + keeper.stats.skipped_full
        count, size = store.totals()
        assert count == kept and 0 < size <= settings.audio.max_bytes
        assert skipped == 300 - kept and skipped > 200
        assert store.counter(CLIPS_SKIPPED_FULL) == skipped
        assert spool.status_counts()["pending"] == 300  # every turn's text, clip or not
    finally:
        spool.close()
    stats, metrics = SpoolStats(settings.chat_history.spool_file), Metrics()
    try:
        metrics.apply(stats.read())
    finally:
        stats.close()
    scraped = metrics.render().decode()
    assert f'voicelog_audio_clips_skipped_total{{reason="box_full"}} {float(skipped)}' in scraped
    assert f"voicelog_audio_clips {float(kept)}" in scraped and f"voicelog_audio_clip_bytes {float(size)}" in scraped


async def test_a_session_over_the_cap_keeps_all_its_text(tmp_path):
    """Real sessions against a tiny cap: clips stop when it is reached, every turn is still captured."""
    settings = make_settings(tmp_path, audio={**AUDIO_ON, "max_mb": 0.01})
    devices = [SimulatedDevice(f"02:00:00:00:01:{n:02x}", SCRIPT) for n in range(3)]
    summary = await simulate(settings, devices, time_scale=TIME_SCALE, deliver=False)
    assert summary.user_turns == 9 and summary.agent_turns == 9 and summary.capture_errors == 0
    spool = host_spool(settings)
    try:
        count, size = ClipStore(spool).totals()
        assert size <= settings.audio.max_bytes and count < 9
        assert ClipStore(spool).counter(CLIPS_SKIPPED_FULL) == 9 - count
    finally:
        spool.close()


async def test_a_turn_longer_than_max_seconds_keeps_its_first_max_seconds(tmp_path):
    """audio.max_seconds caps each clip."""
    settings = make_settings(tmp_path, audio={**AUDIO_ON, "max_seconds": 0.5, "margin_ms": 0})
    summary = await simulate(settings, [SimulatedDevice("02:00:00:00:02:01", SCRIPT[:1])],
                             time_scale=TIME_SCALE, deliver=False)
    spool = host_spool(settings)
    try:
        store = ClipStore(spool)
        clip = store.of_session(summary.session_ids[0])[1]
        assert clip.seconds == pytest.approx(0.5, abs=0.03)
        assert pcm_seconds(decode_clip(store.opened(store.stored(summary.session_ids[0], 1)),
                                       max_seconds=clip.seconds)) == pytest.approx(0.5, abs=0.03)
    finally:
        spool.close()


def test_the_ring_leaves_a_pause_out_and_keeps_jittery_frames_in_order():
    """A pause in the input is absent from a cut; frames arriving 30 ms early or late keep their place."""
    ring = AudioRing(seconds=10.0)
    sample = b"\x01\x00" * 320  # 20 ms
    for k in range(1, 51):  # 1 s of frames with +-30 ms of arrival jitter
        ring.push(sample, received_at=k * 0.02 + (0.03 if k % 3 == 0 else -0.01 if k % 3 == 1 else 0.0))
    for k in range(1, 26):  # then nothing for 2 s, then 0.5 s more
        ring.push(b"\x02\x00" * 320, received_at=3.0 + k * 0.02)
    assert pcm_seconds(ring.cut(0.0, 1.0)) == pytest.approx(1.0, abs=0.04)
    assert ring.cut(1.2, 2.9) == b""  # the pause
    later = ring.cut(2.9, 4.0)
    assert pcm_seconds(later) == pytest.approx(0.5, abs=0.001) and set(later[::2]) == {2}
