"""The spool's tables; bump SCHEMA_VERSION when they change."""

SCHEMA_VERSION = 1

SCHEMA = (
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    """CREATE TABLE IF NOT EXISTS sessions (
        session_id TEXT PRIMARY KEY,
        mac TEXT NOT NULL,
        mac_valid INTEGER NOT NULL,
        mac_source TEXT NOT NULL,
        started_ms INTEGER NOT NULL,
        ended_ms INTEGER,
        end_reason TEXT,
        owner TEXT,
        agent_id TEXT,
        skipped INTEGER NOT NULL DEFAULT 0,
        last_wire_time INTEGER NOT NULL DEFAULT 0,
        flush_requested INTEGER NOT NULL DEFAULT 0,
        updated_ms INTEGER NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS turns (
        session_id TEXT NOT NULL,
        seq INTEGER NOT NULL,
        chat_type INTEGER NOT NULL,
        content TEXT NOT NULL,
        report_ms INTEGER NOT NULL,
        captured_ms INTEGER NOT NULL,
        interrupted INTEGER NOT NULL DEFAULT 0,
        status TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        last_error TEXT,
        next_attempt_ms INTEGER NOT NULL DEFAULT 0,
        wire_time INTEGER,
        parts_sent INTEGER NOT NULL DEFAULT 0,
        delivered_ms INTEGER,
        updated_ms INTEGER NOT NULL,
        UNIQUE (session_id, seq))""",
    "CREATE INDEX IF NOT EXISTS turns_by_status ON turns (status, session_id, seq)",
)
