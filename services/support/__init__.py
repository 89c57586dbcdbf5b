"""What support staff use: the catalog of sessions, verify, replay and export."""

from voicelog.services._face import lazy_face

__all__, __getattr__, __dir__ = lazy_face(__name__, {
    "_clips": ("ClipProblem", "clip_problems", "clip_seconds", "export_clips"),
    "_catalog": ("Catalog", "SessionFilter", "SessionView", "status_counts"),
    "_export": ("CSV_FIELDS", "UnsafeOutput", "private_output", "session_json", "summary_json", "verify_json",
                "write_csv", "write_json"),
    "_replay": ("ProgressTracker", "ReplayObserver", "ReplaySummary", "TurnResult", "assign_mac",
                "prepare", "replay", "requeue"),
    "_replay_plan": ("PlannedSession", "ReplayError", "ReplayRequest", "import_backup", "imported_turn",
                     "plan_replay"),
    "_repairs": ("Repair", "acknowledge", "repairs"),
    "_verify": ("Finding", "VerifyReport", "rewrite_from_spool", "verify"),
})
