"""Privacy: retention (prune) and erasure on request (purge)."""

from voicelog.services._face import lazy_face

__all__, __getattr__, __dir__ = lazy_face(__name__, {
    "_purge": ("PurgeReport", "purge"),
    "_retention": ("DAY_MS", "PruneReport", "PrunedSession", "expiring_undelivered", "prune"),
})
