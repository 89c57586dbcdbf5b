"""The durable spool: every captured turn on this host until delivered, and all its SQL."""

from voicelog.services._face import lazy_face

__all__, __getattr__, __dir__ = lazy_face(__name__, {
    "_connection": ("SpoolError",),
    "_delivery": ("Backlog", "DeliveryState"),
    "_open": ("open_spool",),
    "_spool": ("DuplicateTurn", "EndedSession", "SessionCounts", "Spool", "SpoolFull"),
    "recovery": ("QUARANTINE", "RecoveryReport"),
})
