"""The durable spool: every captured turn on this host until delivered, and all its SQL."""

from voicelog.services._face import lazy_face

__all__, __getattr__, __dir__ = lazy_face(__name__, {
    "_errors": ("PERMANENT_ERRORS", "STORAGE_ERRORS", "TRANSIENT_ERRORS", "DuplicateTurn", "SessionErased",
                "SpoolError", "SpoolFull", "is_disk_full", "may_be_replaced"),
    "_delivery": ("Backlog", "DeliveryState"),
    "_clips": ("CLIPS_SKIPPED_FULL", "CLIPS_UNREADABLE", "ClipInfo", "ClipStore", "ClipUnreadable", "StoredClip"),
    "_memory": ("FeedRow", "PreloadCount", "RecentTurn", "SpoolMemory"),
    "_open": ("open_spool",),
    "_spool": ("SessionCounts", "Spool"),
    "_removal": ("EndedSession", "Erasure"),
    "recovery": ("QUARANTINE", "RecoveryReport", "finish_deferred_repairs", "pending_repairs"),
})
