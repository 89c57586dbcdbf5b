"""The vocabulary every layer shares: turns and sessions, device identity, text, time, locks."""

from voicelog.services._face import lazy_face

__all__, __getattr__, __dir__ = lazy_face(__name__, {
    "_clock": ("ReportClock", "wall_ms"),
    "_identity": ("DeviceIdentity", "MAC_PATTERN", "MAX_SESSION_ID_CHARS", "REWRITE_MARK", "SAFE_SESSION_ID",
                  "UNKNOWN_MAC", "mac_from_room_name", "normalise_mac", "resolve_identity",
                  "session_id_for_room"),
    "_locks": ("FileLock",),
    "_log_level": ("debug_enabled",),
    "_models": ("ChatType", "DONE", "FAILED", "RESENDABLE", "SessionRecord", "Turn", "TurnStatus",
                "UNDELIVERED", "WAITING"),
    "_ownership": ("ShipperAlreadyRunning", "ShipperLock", "owner_alive", "process_owner"),
    "_text": ("MAX_TURN_CHARS", "SecretMask", "clean_transcript", "is_cut", "join_segments"),
    "_turn_meta": ("METRIC_KEYS", "TurnMeta", "checked_turn_meta", "turn_meta_from_json",
                   "turn_meta_from_livekit"),
    "_waiting": ("first_of",),
})
