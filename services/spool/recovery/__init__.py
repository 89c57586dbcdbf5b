"""Find a damaged spool or backup file, quarantine it, and rebuild from everything intact."""

from voicelog.services._face import lazy_face

__all__, __getattr__, __dir__ = lazy_face(__name__, {
    "_check": ("FULL_CHECK_MAX_BYTES", "is_corruption", "spool_problem"),
    "_deferred": ("finish_deferred_repairs", "pending_repairs"),
    "_quarantine": ("QUARANTINE", "REPAIR_PENDING", "RecoveryReport", "quarantine_damaged_backups",
                    "remove_stale_work"),
    "_rebuild": ("finish_interrupted_rebuild", "recover"),
})
