"""The child's voice as sound: the received-audio ring a turn's clip is cut from, and the clip codec."""

from voicelog.services._face import lazy_face

__all__, __getattr__, __dir__ = lazy_face(__name__, {
    "_ring": ("AudioRing",),
    "_codec": ("CLIP_RATE", "ClipError", "clip_seconds", "decode_clip", "encode_clip", "pcm_seconds",
               "wav_bytes", "wav_facts"),
})
