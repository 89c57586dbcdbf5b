"""Clips on disk as Ogg/Opus (PyAV, which livekit-agents already brings), and back to WAV for the Manager.

The Manager (and upstream xiaozhi-server) takes a turn's audio as a 16 kHz mono 16-bit PCM WAV:
32 KB per second, 43 KB once base64-encoded. Kept as Opus at 24 kbit/s a second of speech is
about 3 KB on the box, so ``audio.max_mb`` holds ten times more. Encoding and decoding are CPU
work of a few milliseconds per second of speech: callers run them off the event loop.
"""

from __future__ import annotations

import io
import time
import wave
from fractions import Fraction

CLIP_RATE = 16_000  # samples per second of every clip, in and out (what the Manager expects)
_BITRATE = 24_000
_SAMPLE_BYTES = 2  # signed 16-bit, mono


class ClipError(ValueError):
    """A stored clip cannot be decoded (damaged, truncated, or not a clip at all)."""


def pcm_seconds(pcm: bytes, rate: int = CLIP_RATE) -> float:
    """Duration of mono 16-bit PCM."""
    return len(pcm) / (_SAMPLE_BYTES * rate)


def encode_clip(pcm: bytes) -> bytes:
    """16 kHz mono s16 PCM -> Ogg/Opus bytes."""
    import av
    import numpy as np

    samples = np.frombuffer(pcm[: len(pcm) - len(pcm) % _SAMPLE_BYTES], dtype="<i2")
    out = io.BytesIO()
    with av.open(out, mode="w", format="ogg") as container:
        stream = container.add_stream("libopus", rate=CLIP_RATE, layout="mono")
        stream.codec_context.bit_rate = _BITRATE
        stream.codec_context.options = {"application": "voip"}
        stream.time_base = Fraction(1, CLIP_RATE)
        size = stream.codec_context.frame_size or CLIP_RATE // 50
        for start in range(0, len(samples), size):
            chunk = samples[start:start + size]
            if len(chunk) < size:  # the encoder takes whole frames: pad the last with silence
                chunk = np.concatenate([chunk, np.zeros(size - len(chunk), dtype="<i2")])
            frame = av.AudioFrame.from_ndarray(chunk.reshape(1, -1), format="s16", layout="mono")
            frame.sample_rate, frame.pts, frame.time_base = CLIP_RATE, start, Fraction(1, CLIP_RATE)
            container.mux(stream.encode(frame))
            # PyAV holds the GIL while libopus works: let the event loop's thread in after each
            # frame, so it waits at most one frame's encode (~0.2 ms), not a switch interval (5 ms).
            time.sleep(0)
        container.mux(stream.encode(None))
    return out.getvalue()


def decode_clip(data: bytes, *, max_seconds: float | None = None) -> bytes:
    """Ogg/Opus bytes -> 16 kHz mono s16 PCM; ``ClipError`` when they are not a readable clip.

    The encoder padded the last frame to a whole one; ``max_seconds`` trims that back.
    """
    import av

    try:
        pcm = bytearray()
        with av.open(io.BytesIO(data), mode="r", format="ogg") as container:
            if not container.streams.audio:
                raise ClipError("the clip holds no audio stream")
            resampler = av.AudioResampler(format="s16", layout="mono", rate=CLIP_RATE)
            for frame in container.decode(audio=0):
                for converted in resampler.resample(frame):
                    pcm += bytes(converted.planes[0])[: converted.samples * _SAMPLE_BYTES]
            for converted in resampler.resample(None):
                pcm += bytes(converted.planes[0])[: converted.samples * _SAMPLE_BYTES]
    except ClipError:
        raise
    except (av.FFmpegError, ValueError, IndexError, EOFError) as exc:
        raise ClipError(f"the clip cannot be decoded: {type(exc).__name__}: {exc}"[:300]) from None
    if not pcm:
        raise ClipError("the clip decodes to no audio")
    if max_seconds is not None:
        del pcm[int(max_seconds * CLIP_RATE) * _SAMPLE_BYTES:]
    return bytes(pcm)


def wav_bytes(pcm: bytes) -> bytes:
    """16 kHz mono s16 PCM as a WAV file (stdlib ``wave``), as upstream sends it."""
    out = io.BytesIO()
    with wave.open(out, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(_SAMPLE_BYTES)
        wav.setframerate(CLIP_RATE)
        wav.writeframes(pcm)
    return out.getvalue()


def wav_facts(data: bytes) -> tuple[int, int, int, float]:
    """(channels, sample width in bytes, rate, seconds) of a WAV file; ``wave.Error`` if it is not one."""
    with wave.open(io.BytesIO(data), "rb") as wav:
        return wav.getnchannels(), wav.getsampwidth(), wav.getframerate(), wav.getnframes() / wav.getframerate()


def clip_seconds(data: bytes) -> float:
    """Duration of a stored clip, by decoding it."""
    return pcm_seconds(decode_clip(data))
