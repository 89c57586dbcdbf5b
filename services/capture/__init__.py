"""The per-session capture service: every turn committed to the spool before it returns."""

from voicelog.services._face import lazy_face

__all__, __getattr__, __dir__ = lazy_face(__name__, {
    "_service": ("ChatHistoryService",),
    "_clips": ("ClipKeeper", "ClipStats"),
    "_stats": ("CaptureStats",),
})
