"""Audio per turn: what keeping the child's voice costs the voice loop, side by side with audio off.

Concurrent sessions on one event loop, each playing turns: 1.5 s of speech as 20 ms frames at
48 kHz (what a room delivers), then the end of the turn. With audio on each frame goes through
the tap (resample to 16 kHz, into the ring) and the turn's end cuts and reserves its clip, whose
Opus encode runs on the audio thread; with audio off neither happens. Measured on the loop:
the stall of each turn's end (the seal, plus the clip's cut and reservation when on), the stall
of each frame's tee, and the loop's lag (a 1 ms ticker's oversleep), which shows the encode
thread's share of the GIL. Rounds alternate off/on so both see the same machine. The encode and
decode costs per second of speech are timed directly.
"""

from __future__ import annotations

import asyncio
import gc
import math
import statistics
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

from bench.common import bench_settings, identity_for, ratio, summary
from voicelog.services.audio import decode_clip, encode_clip, wav_bytes
from voicelog.services.capture import ChatHistoryService, ClipKeeper
from voicelog.services.domain import ChatType
from voicelog.services.spool import ClipStore, open_spool

ROOM_RATE = 48_000
FRAME_S = 0.02
SPEECH_S = 1.5


def _frames(seconds: float) -> list[Any]:
    from livekit import rtc

    samples = int(ROOM_RATE * FRAME_S)
    t = np.arange(int(seconds * ROOM_RATE)) / ROOM_RATE
    pcm = (np.sin(2 * math.pi * 220 * t) * 6000).astype("<i2")
    return [rtc.AudioFrame(data=pcm[i:i + samples].tobytes(), sample_rate=ROOM_RATE, num_channels=1,
                           samples_per_channel=samples) for i in range(0, len(pcm) - samples + 1, samples)]


async def _round(audio: bool, sessions: int, turns: int, work: Path) -> dict[str, list[int]]:
    from voicelog.handlers.audio_tap import AudioTap

    settings = bench_settings(work, audio={"enabled": audio, "max_mb": 500})
    spool = open_spool(work / "spool.db")
    frames = _frames(SPEECH_S)
    seen: dict[str, list[int]] = {"turn_end": [], "frame": [], "lag": []}
    clock = time.perf_counter_ns
    done = asyncio.Event()

    async def ticker() -> None:
        while not done.is_set():
            started = clock()
            await asyncio.sleep(0.001)
            seen["lag"].append(max(0, clock() - started - 1_000_000))

    async def session(index: int) -> ClipKeeper | None:
        service = ChatHistoryService(spool, identity_for(index), settings.chat_history)
        now = [time.time()]
        keeper = ClipKeeper(spool, settings.audio, service.session_id) if audio else None
        tap = AudioTap(keeper, settings.audio, clock=lambda: now[0]) if keeper else None
        for _ in range(turns):
            turn = service.open_turn(ChatType.USER, "tell me a story about a dragon")
            started_at = now[0]
            for frame in frames:
                now[0] += FRAME_S
                if tap is not None:
                    begun = clock()
                    tap._push(frame)  # what the tapped stt_node does for each frame
                    seen["frame"].append(clock() - begun)
                await asyncio.sleep(FRAME_S / 10)  # other sessions' frames interleave
            message = SimpleNamespace(metrics={"started_speaking_at": started_at, "stopped_speaking_at": now[0]})
            begun = clock()
            if tap is not None:
                tap.turn_committed(turn.seq, message)
            service.update_turn(turn, "tell me a story about a dragon", seal=True)
            seen["turn_end"].append(clock() - begun)
            service.add_message(ChatType.AGENT, "once upon a time")
        await service.cleanup()
        return keeper

    gc.collect()
    ticking = asyncio.create_task(ticker())
    keepers = await asyncio.gather(*(session(i) for i in range(sessions)))
    for keeper in keepers:
        if keeper is not None:
            await keeper.drain(timeout=60)
    done.set()
    await ticking
    if audio:
        kept = sum(k.stats.kept for k in keepers if k is not None)
        assert kept == sessions * turns, f"only {kept} clips kept"
        seen["clip_bytes"] = [ClipStore(spool).totals()[1]]
    spool.close()
    return seen


def _codec_costs(reps: int) -> dict[str, Any]:
    t = np.arange(int(3.0 * 16_000)) / 16_000
    pcm = (np.sin(2 * math.pi * 220 * t) * 6000 + np.random.default_rng(1).normal(0, 300, len(t))).astype("<i2")
    pcm_bytes = pcm.tobytes()
    encode_clip(pcm_bytes)  # first call loads the codec
    encodes, decodes = [], []
    for _ in range(reps):
        started = time.perf_counter()
        clip = encode_clip(pcm_bytes)
        encodes.append(time.perf_counter() - started)
        started = time.perf_counter()
        wav_bytes(decode_clip(clip, max_seconds=3.0))
        decodes.append(time.perf_counter() - started)
    return {"encode_ms_per_speech_s": round(statistics.median(encodes) / 3.0 * 1000, 2),
            "decode_to_wav_ms_per_speech_s": round(statistics.median(decodes) / 3.0 * 1000, 2),
            "opus_bytes_per_speech_s": round(len(clip) / 3.0), "wav_bytes_per_speech_s": 32_044 // 1,
            "reps": reps}


def run(sizes: Any, work: Path) -> dict[str, Any]:
    """Alternating rounds with audio off and on; the codec's cost per second of speech."""
    sessions, turns, rounds = (20, 4, 2) if sizes.name == "quick" else (50, 6, 4)
    pooled: dict[str, dict[str, list[int]]] = {"off": {}, "on": {}}
    round_p99: dict[str, list[float]] = {"off": [], "on": []}
    for number in range(rounds):
        for mode in ("off", "on") if number % 2 == 0 else ("on", "off"):
            seen = asyncio.run(_round(mode == "on", sessions, turns, work / f"{mode}-{number}"))
            for key, values in seen.items():
                pooled[mode].setdefault(key, []).extend(values)
            round_p99[mode].append(summary(seen["turn_end"], scale=1e-3)["p99"])
    off, on = pooled["off"], pooled["on"]
    end_off, end_on = summary(off["turn_end"], scale=1e-3), summary(on["turn_end"], scale=1e-3)
    lag_off, lag_on = summary(off["lag"], scale=1e-3), summary(on["lag"], scale=1e-3)
    speech_s = sessions * turns * SPEECH_S
    return {"unit": "microseconds on the event loop", "sessions": sessions, "turns_per_session": turns,
            "rounds_per_mode": rounds, "speech_seconds_per_round": speech_s,
            "turn_end_us": {"off": end_off, "on": end_on}, "frame_tee_us": summary(on["frame"], scale=1e-3),
            "loop_lag_us": {"off": lag_off, "on": lag_on},
            "turn_end_p99_on_vs_off": ratio(end_on["p99"], end_off["p99"]),
            "median_round_p99_on_vs_off": ratio(statistics.median(round_p99["on"]),
                                                statistics.median(round_p99["off"])),
            "loop_lag_p99_on_vs_off": ratio(lag_on["p99"], lag_off["p99"]),
            "clip_bytes_per_speech_s": round(statistics.mean(on["clip_bytes"]) / speech_s),
            "codec": _codec_costs(10 if sizes.name == "quick" else 40)}
