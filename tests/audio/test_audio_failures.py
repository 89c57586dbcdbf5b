"""Audio never holds text back: a clip that fails, or is never finished, costs only the clip."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator

import pytest

from tests.audio.test_audio_bounds import tone
from tests.audio.test_audio_delivery import AUDIO_ON, MAC, SCRIPT, TIME_SCALE
from tests.kits.delivery import room_for
from tests.kits.settings import make_settings
from voicelog.agent.simulation.run import SimulatedDevice, simulate
from voicelog.agent.wiring import host_spool
from voicelog.services.capture import ChatHistoryService
from voicelog.services.domain import ChatType, resolve_identity
from voicelog.services.shipping import ClipAttacher
from voicelog.services.spool import CLIPS_UNREADABLE, ClipStore, DeliveryState


async def test_an_encoder_that_fails_costs_the_clips_and_nothing_else(tmp_path, monkeypatch):
    """Every encode raising: all turns are captured, no clip and no reservation is left, failures counted."""
    import voicelog.services.capture._clips as keeping

    def broken(pcm: bytes) -> bytes:
        raise RuntimeError("codec exploded")

    monkeypatch.setattr(keeping, "encode_clip", broken)
    settings = make_settings(tmp_path, audio=AUDIO_ON)
    summary = await simulate(settings, [SimulatedDevice(MAC, SCRIPT)], time_scale=TIME_SCALE, deliver=False)
    assert summary.user_turns == 3 and summary.agent_turns == 3 and summary.capture_errors == 0
    spool = host_spool(settings)
    try:
        assert ClipStore(spool).of_session(summary.session_ids[0]) == {}
        assert [t.content for t in spool.turns(summary.session_ids[0])][::2] == [t["user"] for t in SCRIPT]
    finally:
        spool.close()


@contextlib.contextmanager
def one_captured_turn(tmp_path) -> Iterator[tuple]:
    """Audio on, one child's turn captured: (settings, spool, service, turn, clip store); the spool closes after."""
    settings = make_settings(tmp_path, audio=AUDIO_ON)
    spool = host_spool(settings)
    try:
        service = ChatHistoryService(spool, resolve_identity(room_for(MAC), {}, MAC), settings.chat_history)
        yield settings, spool, service, service.add_message(ChatType.USER, "hello"), ClipStore(spool)
    finally:
        spool.close()


async def test_a_clip_never_finished_is_waited_for_briefly_then_the_turn_goes_without(tmp_path):
    """A job process that died mid-encode leaves a reservation: delivery waits its grace, then sends none."""
    with one_captured_turn(tmp_path) as (settings, spool, _, turn, store):
        assert store.reserve(turn.session_id, turn.seq, now_ms=0)  # long ago
        attacher = ClipAttacher(DeliveryState(spool), settings.audio, grace_ms=200)
        assert await attacher.audio_for(turn) is None
        assert attacher.unreadable == 1 and store.counter(CLIPS_UNREADABLE) == 1
        assert store.of_session(turn.session_id) == {}  # its place is given up
        assert store.fill(turn.session_id, turn.seq, b"late", 1.0, settings.audio.max_bytes) is None
        assert store.totals() == (0, 0)


async def test_a_clip_finished_during_the_grace_is_sent(tmp_path):
    """A clip still encoding when its turn is due is waited for and attached."""
    from voicelog.services.audio import encode_clip

    with one_captured_turn(tmp_path) as (settings, spool, service, turn, store):
        assert store.reserve(turn.session_id, turn.seq, now_ms=service._now())
        attacher = ClipAttacher(DeliveryState(spool), settings.audio)
        waiting = asyncio.ensure_future(attacher.audio_for(turn))
        await asyncio.sleep(0.2)
        assert not waiting.done()
        assert store.fill(turn.session_id, turn.seq, encode_clip(tone(1.0)), 1.0, settings.audio.max_bytes)
        audio = await asyncio.wait_for(waiting, 5)
        assert audio is not None and attacher.attached == 1


@pytest.mark.parametrize("bad", [b"", b"OggS" + b"\x00" * 10])
def test_decoding_refuses_what_is_not_a_clip(bad):
    from voicelog.services.audio import ClipError, decode_clip

    with pytest.raises(ClipError):
        decode_clip(bad)
